// Package store is jobpixel's only access to ClickHouse: migrations; clients,
// campaigns and their tokens (clients.go); anonymised events and their
// insert window (events.go); reports (report.go) and partner
// shares (partners.go); forwarding instructions (instructions.go), the
// ledger and dead letters (ledger.go), write-ahead intents (intents.go) and
// audience membership (audiences.go); daily visitor salts (salts.go); and
// retention and erasure (retention.go).
//
// It speaks the native protocol through clickhouse-go v2 and only uses SQL
// that runs on ClickHouse 18.16 as well as on current releases.
package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/jobpixel/jobpixel/schemas"
)

// Config says where ClickHouse is.
type Config struct {
	Addr     string // host:port of the native protocol
	Database string
	User     string
	Password string
	// TLS, when set, connects with TLS (ClickHouse's secure native port);
	// nil connects in plain text.
	TLS *tls.Config
	// DialTimeout and ReadTimeout default to 5 s and 60 s.
	DialTimeout time.Duration
	ReadTimeout time.Duration
	// Lazy makes Open neither create the database nor ping: the first
	// statement connects. It is for a process that must start while
	// ClickHouse is down (ingest alone, serving its campaign snapshot).
	Lazy bool
	// Cluster, when set, names the server's cluster (remote_servers) the
	// schema lives on: the database and tables are created ON CLUSTER,
	// replicated and, for the tables that grow with traffic, sharded (see
	// shardedTables). Empty is a single server.
	Cluster string
}

// Store is a connection pool to one ClickHouse database. It is safe for
// concurrent use.
type Store struct {
	conn driver.Conn
	db   string
	cfg  Config // what Open was given (Cluster, and connections to other nodes)
}

// openConn opens a connection pool. Tests replace it (export_test.go) to
// record every statement the store sends.
var openConn = clickhouse.Open

// identifier is what a database or cluster name may be: both are written
// into SQL.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Open connects to ClickHouse, creating the database if needed. It does not
// apply migrations; call Migrate.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Database == "" {
		cfg.Database = "jobpixel"
	}
	if !identifier.MatchString(cfg.Database) {
		return nil, fmt.Errorf("store: invalid database name %q", cfg.Database)
	}
	if cfg.Cluster != "" && !identifier.MatchString(cfg.Cluster) {
		return nil, fmt.Errorf("store: invalid cluster name %q", cfg.Cluster)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 60 * time.Second
	}
	if cfg.Lazy {
		conn, err := dial(cfg, cfg.Addr, cfg.Database)
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", cfg.Addr, err)
		}
		return &Store{conn: conn, db: cfg.Database, cfg: cfg}, nil
	}
	boot, err := dial(cfg, cfg.Addr, "default")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Addr, err)
	}
	defer boot.Close()
	if err := createDatabase(ctx, boot, cfg); err != nil {
		return nil, err
	}
	conn, err := dial(cfg, cfg.Addr, cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: ping %s: %w", cfg.Addr, err)
	}
	return &Store{conn: conn, db: cfg.Database, cfg: cfg}, nil
}

// dial opens a connection pool to the server at addr, database db, with
// cfg's credentials, TLS and time-outs.
func dial(cfg Config, addr, db string) (driver.Conn, error) {
	var settings clickhouse.Settings
	if cfg.Cluster != "" {
		// An insert into a Distributed table returns once every shard has
		// its rows, not when they are queued on this node.
		settings = clickhouse.Settings{"insert_distributed_sync": 1}
	}
	return openConn(&clickhouse.Options{
		Settings:     settings,
		Addr:         []string{addr},
		Auth:         clickhouse.Auth{Database: db, Username: cfg.User, Password: cfg.Password},
		TLS:          cfg.TLS,
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.ReadTimeout,
		MaxOpenConns: 16,
		MaxIdleConns: 8,
		// The driver warns about every connection to an old server; our
		// own logs say what matters.
		Logger: slog.New(slog.DiscardHandler),
	})
}

// createDatabase creates cfg.Database; on a cluster ON CLUSTER, and only
// when this node lacks it (ON CLUSTER waits for every node, so a process
// restarting while one is down is not held up by a database that exists).
func createDatabase(ctx context.Context, conn driver.Conn, cfg Config) error {
	if cfg.Cluster == "" {
		if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+cfg.Database); err != nil {
			return fmt.Errorf("store: create database %s on %s: %w", cfg.Database, cfg.Addr, err)
		}
		return nil
	}
	var n []struct {
		Nodes uint64 `ch:"nodes"`
		DB    uint64 `ch:"db"`
	}
	if err := conn.Select(ctx, &n, `SELECT (SELECT count() FROM system.clusters WHERE cluster = ?) AS nodes,
		(SELECT count() FROM system.databases WHERE name = ?) AS db`, cfg.Cluster, cfg.Database); err != nil {
		return fmt.Errorf("store: cluster %s on %s: %w", cfg.Cluster, cfg.Addr, err)
	}
	if len(n) != 1 || n[0].Nodes == 0 {
		return fmt.Errorf("store: %s has no cluster %q in its remote_servers", cfg.Addr, cfg.Cluster)
	}
	if n[0].DB > 0 {
		return nil
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+cfg.Database+" ON CLUSTER "+cfg.Cluster); err != nil {
		return fmt.Errorf("store: create database %s on cluster %s: %w", cfg.Database, cfg.Cluster, err)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error { return s.conn.Close() }

// Ping checks that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Conn exposes the underlying connection for tests and tools.
func (s *Store) Conn() driver.Conn { return s.conn }

// Migrate applies every migration newer than the recorded schema version.
// Statements are idempotent, so concurrent or interrupted runs are safe. On
// a cluster each statement is created ON CLUSTER in its replicated form
// (clusterDDL), which waits for every node.
func (s *Store) Migrate(ctx context.Context) (applied []int, err error) {
	const ddl = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime
	) ENGINE = ReplacingMergeTree ORDER BY version`
	var exists []struct {
		N uint64 `ch:"n"`
	}
	if err := s.conn.Select(ctx, &exists, "SELECT count() AS n FROM system.tables WHERE database = ? AND name = 'schema_migrations'", s.db); err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	if len(exists) == 1 && exists[0].N == 0 {
		if err := s.ddl(ctx, ddl); err != nil {
			return nil, fmt.Errorf("store: migrate: %w", err)
		}
	}
	done := map[int]bool{}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("store: migrate: read versions: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: migrate: %w", err)
		}
		done[int(v)] = true
	}
	rows.Close()
	ms, err := schemas.Migrations()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := s.ddl(ctx, stmt); err != nil && !columnAdded(stmt, err) {
				return applied, fmt.Errorf("store: migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		err := s.insertOne(ctx, "INSERT INTO schema_migrations (version, name, applied_at)", uint32(m.Version), m.Name, time.Now().UTC())
		if err != nil {
			return applied, fmt.Errorf("store: record migration %d: %w", m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// columnAdded reports whether err is ClickHouse's "column already exists"
// (code 44) answering an ADD COLUMN statement: the statement of an earlier,
// interrupted run of its migration was applied (18.16 has no ADD COLUMN IF
// NOT EXISTS).
func columnAdded(stmt string, err error) bool {
	return columnExists(err) && addColumnSQL.MatchString(stmt)
}

// columnExists reports whether err is (or joins) ClickHouse's "column
// already exists" (code 44).
func columnExists(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == 44
}

// insertRows inserts n rows in one batch (plain INSERT … VALUES over the
// native protocol hangs on 18.16); row(i) returns the values of row i in
// the order of query's column list. n == 0 inserts nothing.
func (s *Store) insertRows(ctx context.Context, query string, n int, row func(i int) []any) error {
	if n == 0 {
		return nil
	}
	b, err := s.prepareBatch(ctx, query)
	if err != nil {
		return err
	}
	for i := range n {
		if err := b.Append(row(i)...); err != nil {
			_ = b.Abort()
			return fmt.Errorf("row %d: %w", i, err)
		}
	}
	return b.Send()
}

// insertOne inserts a single row.
func (s *Store) insertOne(ctx context.Context, query string, vals ...any) error {
	return s.insertRows(ctx, query, 1, func(int) []any { return vals })
}

// ErrNotFound is returned when a client, campaign or token does not exist
// (or is not visible to the caller).
var ErrNotFound = errors.New("not found")

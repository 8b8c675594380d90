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
}

// Store is a connection pool to one ClickHouse database. It is safe for
// concurrent use.
type Store struct {
	conn driver.Conn
	db   string
}

// openConn opens a connection pool. Tests replace it (export_test.go) to
// record every statement the store sends.
var openConn = clickhouse.Open

var dbName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Open connects to ClickHouse, creating the database if needed. It does not
// apply migrations; call Migrate.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Database == "" {
		cfg.Database = "jobpixel"
	}
	if !dbName.MatchString(cfg.Database) {
		return nil, fmt.Errorf("store: invalid database name %q", cfg.Database)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 60 * time.Second
	}
	open := func(db string) (driver.Conn, error) {
		return openConn(&clickhouse.Options{
			Addr:         []string{cfg.Addr},
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
	if cfg.Lazy {
		conn, err := open(cfg.Database)
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", cfg.Addr, err)
		}
		return &Store{conn: conn, db: cfg.Database}, nil
	}
	boot, err := open("default")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Addr, err)
	}
	defer boot.Close()
	if err := boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+cfg.Database); err != nil {
		return nil, fmt.Errorf("store: create database %s on %s: %w", cfg.Database, cfg.Addr, err)
	}
	conn, err := open(cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: ping %s: %w", cfg.Addr, err)
	}
	return &Store{conn: conn, db: cfg.Database}, nil
}

// Close closes the pool.
func (s *Store) Close() error { return s.conn.Close() }

// Ping checks that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Conn exposes the underlying connection for tests and tools.
func (s *Store) Conn() driver.Conn { return s.conn }

// Migrate applies every migration newer than the recorded schema version.
// Statements are idempotent, so concurrent or interrupted runs are safe.
func (s *Store) Migrate(ctx context.Context) (applied []int, err error) {
	const ddl = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime
	) ENGINE = ReplacingMergeTree ORDER BY version`
	if err := s.conn.Exec(ctx, ddl); err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
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
			if err := s.conn.Exec(ctx, stmt); err != nil {
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

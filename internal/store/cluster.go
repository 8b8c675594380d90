package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// On a cluster (Config.Cluster) every table is replicated; what differs is
// whether its rows are split across the shards:
//
//   - shardedTables hold visitor-derived data and the forwarding records,
//     the tables that grow with traffic. Each is a Replicated*MergeTree
//     named TABLE_local on every node (ZooKeeper path
//     /clickhouse/tables/{shard}/DB/TABLE, replica {replica}) and a
//     Distributed table under the single-server name over them, sharded by
//     shardingKey. Reads and inserts use the Distributed table, so the
//     store's SQL is the same as on a single server; inserts are
//     synchronous (insert_distributed_sync=1): an insert returns once every
//     shard holds its rows. Materialized views read and write the local
//     tables, so a shard's aggregates come from that shard's events.
//   - every other table (clients, campaigns, salts, instructions, partner
//     shares, the audit log, schema_migrations, and any table a later
//     migration adds unless it is listed here) is per-deployment control
//     state: one replica on every node of the cluster (ZooKeeper path
//     /clickhouse/tables/all/DB/TABLE, replica {shard}-{replica}), read and
//     written on the node the store is connected to.
var shardedTables = map[string]bool{
	"events": true, "conversions_daily": true, "bots_daily": true,
	"audience_facts": true, "audience_members": true, "forward_sent": true, "forward_dead_letters": true,
	"forward_ledger": true, "forward_intents": true,
}

// shardingKey places every row of a campaign — its events, their
// aggregates and its forwarding records — on one shard: a campaign's report
// is summed on one shard and merged with nothing, and its erasure deletes
// on that shard only. Every sharded table has a campaign_id column.
const shardingKey = "cityHash64(campaign_id)"

var (
	createTableSQL = regexp.MustCompile(`(?s)^CREATE TABLE IF NOT EXISTS (\w+) (\(.*\)) ENGINE = (\w+)(?:\(([^()]*)\))?(.*)$`)
	createViewSQL  = regexp.MustCompile(`(?s)^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS(\s.*?\bFROM )(\w+)\b(.*)$`)
	addColumnSQL   = regexp.MustCompile(`(?s)^ALTER TABLE (\w+) (ADD COLUMN .*)$`)
)

// clusterDDL rewrites one single-server migration statement into the
// statements that create it on cluster (see shardedTables). It knows the
// two forms the migrations use — CREATE TABLE IF NOT EXISTS t (…) ENGINE =
// …MergeTree… and CREATE MATERIALIZED VIEW IF NOT EXISTS v TO t AS SELECT
// … FROM t … — and refuses anything else rather than guess.
func clusterDDL(stmt, db, cluster string) ([]string, error) {
	if m := createTableSQL.FindStringSubmatch(stmt); m != nil {
		name, cols, engine, args, rest := m[1], m[2], m[3], m[4], m[5]
		if !strings.HasSuffix(engine, "MergeTree") {
			return nil, fmt.Errorf("table %s: engine %s has no replicated form", name, engine)
		}
		replicated := func(path, replica string) string {
			a := "'" + path + "', '" + replica + "'"
			if args != "" {
				a += ", " + args
			}
			return "Replicated" + engine + "(" + a + ")"
		}
		if !shardedTables[name] {
			return []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s %s ENGINE = %s%s",
				db, name, cluster, cols, replicated("/clickhouse/tables/all/"+db+"/"+name, "{shard}-{replica}"), rest)}, nil
		}
		return []string{
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s_local ON CLUSTER %s %s ENGINE = %s%s",
				db, name, cluster, cols, replicated("/clickhouse/tables/{shard}/"+db+"/"+name, "{replica}"), rest),
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s %s ENGINE = Distributed(%s, %s, %s_local, %s)",
				db, name, cluster, cols, cluster, db, name, shardingKey),
		}, nil
	}
	if m := createViewSQL.FindStringSubmatch(stmt); m != nil {
		name, target, selectFrom, source, rest := m[1], m[2], m[3], m[4], m[5]
		if !shardedTables[target] || !shardedTables[source] {
			return nil, fmt.Errorf("view %s: %s and %s must both be sharded tables", name, source, target)
		}
		return []string{fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s.%s ON CLUSTER %s TO %s.%s_local AS%s%s.%s_local%s",
			db, name, cluster, db, target, selectFrom, db, source, rest)}, nil
	}
	return nil, fmt.Errorf("statement has no cluster form (only CREATE TABLE IF NOT EXISTS and CREATE MATERIALIZED VIEW IF NOT EXISTS … TO are rewritten): %.60q", stmt)
}

// ddl runs a migration statement: as it is on a single server, rewritten by
// clusterDDL on a cluster, where an ALTER TABLE … ADD COLUMN is addColumn's.
func (s *Store) ddl(ctx context.Context, stmt string) error {
	if s.cfg.Cluster == "" {
		return s.conn.Exec(ctx, stmt)
	}
	if m := addColumnSQL.FindStringSubmatch(stmt); m != nil {
		return s.addColumn(ctx, m[1], m[2])
	}
	stmts, err := clusterDDL(stmt, s.db, s.cfg.Cluster)
	if err != nil {
		return err
	}
	for _, st := range stmts {
		if err := s.conn.Exec(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// deleteWhere deletes the rows of table that match where (an asynchronous
// mutation, durable once it returns). On a cluster, a sharded table's rows
// are deleted on one replica of every shard (see execOnEveryShard); any
// other table is replicated to every node, and a mutation on the connected
// node's replica reaches all.
func (s *Store) deleteWhere(ctx context.Context, table, where string, args ...any) error {
	if s.cfg.Cluster == "" || !shardedTables[table] {
		return s.conn.Exec(ctx, "ALTER TABLE "+table+" DELETE WHERE "+where, args...)
	}
	return s.execOnEveryShard(ctx, "ALTER TABLE "+table+"_local DELETE WHERE "+where, args...)
}

// addColumn runs "ALTER TABLE table ADD COLUMN …" (add) on the cluster,
// not ON CLUSTER (18.16 refuses it for the Distributed tables and its DDL
// worker races on ALTERs of replicated ones, see execOnEveryShard). A
// sharded table's column is added to its local table on one replica of
// every shard (replicated from there), then to the Distributed table on
// every node, which needs every node up; a control table's on the
// connected node, replicated to all. A step that finds the column already
// there (an interrupted earlier run) counts as done.
func (s *Store) addColumn(ctx context.Context, table, add string) error {
	done := func(err error) error {
		if columnExists(err) {
			return nil
		}
		return err
	}
	if !shardedTables[table] {
		return done(s.conn.Exec(ctx, "ALTER TABLE "+table+" "+add))
	}
	if err := done(s.execOnEveryShard(ctx, "ALTER TABLE "+table+"_local "+add)); err != nil {
		return err
	}
	nodes, err := s.clusterNodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		addr, err := n.addr()
		if err == nil {
			err = s.execOn(ctx, addr, "ALTER TABLE "+table+" "+add)
		}
		if err := done(err); err != nil {
			return fmt.Errorf("node %s:%d: %w", n.Host, n.Port, err)
		}
	}
	return nil
}

// clusterNode is one server of the cluster, as the connected node's
// system.clusters (its remote_servers) lists it.
type clusterNode struct {
	Shard uint32 `ch:"shard_num"`
	Host  string `ch:"host_address"`
	Port  uint16 `ch:"port"`
}

// addr is the node's native-protocol address.
func (n clusterNode) addr() (string, error) {
	a, err := netip.ParseAddr(n.Host)
	if err != nil {
		return "", err
	}
	return netip.AddrPortFrom(a, n.Port).String(), nil
}

// execOn runs query on the node at addr, on a connection of its own with
// the store's database, credentials and TLS.
func (s *Store) execOn(ctx context.Context, addr, query string, args ...any) error {
	c, err := dial(s.cfg, addr, s.db)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Exec(ctx, query, args...)
}

// clusterNodes lists the servers of the store's cluster, by shard.
func (s *Store) clusterNodes(ctx context.Context) ([]clusterNode, error) {
	var nodes []clusterNode
	if err := s.conn.Select(ctx, &nodes, `SELECT shard_num, host_address, port FROM system.clusters
		WHERE cluster = ? ORDER BY shard_num, replica_num`, s.cfg.Cluster); err != nil {
		return nil, fmt.Errorf("nodes of cluster %s: %w", s.cfg.Cluster, err)
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("no cluster %s in the server's remote_servers", s.cfg.Cluster)
	}
	return nodes, nil
}

// execOnEveryShard runs query on one replica of every shard: the first of
// the shard's replicas (on a connection of its own, with the store's
// database, credentials and TLS) on which it succeeds. A mutation of a
// replicated table made there reaches the shard's other replicas through
// ZooKeeper — one that is down when it returns — so a shard needs only one
// replica up. (Not ALTER … ON CLUSTER: that waits for every node, and
// 18.16's DDL worker races on ALTERs of replicated tables, leaving the task
// unfinished: seen here as a "Node exists" error and an erasure that hung.)
func (s *Store) execOnEveryShard(ctx context.Context, query string, args ...any) error {
	nodes, err := s.clusterNodes(ctx)
	if err != nil {
		return err
	}
	var shards []uint32
	byShard := map[uint32][]clusterNode{}
	for _, n := range nodes {
		if byShard[n.Shard] == nil {
			shards = append(shards, n.Shard)
		}
		byShard[n.Shard] = append(byShard[n.Shard], n)
	}
	for _, shard := range shards {
		var errs []error
		for _, n := range byShard[shard] {
			addr, err := n.addr()
			if err != nil {
				return fmt.Errorf("node of cluster %s: %w", s.cfg.Cluster, err)
			}
			err = s.execOn(ctx, addr, query, args...)
			if err == nil {
				break
			}
			errs = append(errs, fmt.Errorf("node %s: %w", addr, err))
		}
		if len(errs) == len(byShard[shard]) {
			return fmt.Errorf("shard %d: no replica took it: %w", shard, errors.Join(errs...))
		}
	}
	return nil
}

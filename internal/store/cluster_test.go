package store

import (
	"strings"
	"testing"

	"github.com/jobpixel/jobpixel/schemas"
)

// TestClusterDDL checks that every migration statement has a cluster form:
// sharded tables as a local Replicated table and a Distributed table over
// it, control tables replicated to every node, views on local tables.
func TestClusterDDL(t *testing.T) {
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		for _, stmt := range m.Statements {
			if addColumnSQL.MatchString(stmt) {
				continue // addColumn's, not rewritten (TestCluster runs it)
			}
			out, err := clusterDDL(stmt, "db", "c")
			if err != nil {
				t.Fatalf("%04d_%s: %v", m.Version, m.Name, err)
			}
			for _, o := range out {
				if !strings.Contains(o, " ON CLUSTER c ") {
					t.Errorf("not ON CLUSTER: %s", o)
				}
			}
			if m := createTableSQL.FindStringSubmatch(stmt); m != nil {
				seen[m[1]] = true
			}
		}
	}
	for table := range shardedTables {
		if !seen[table] {
			t.Errorf("sharded table %s is in no migration", table)
		}
	}

	got, err := clusterDDL("CREATE TABLE IF NOT EXISTS events (\n    campaign_id String\n) ENGINE = MergeTree\nORDER BY campaign_id", "db", "c")
	want := []string{
		"CREATE TABLE IF NOT EXISTS db.events_local ON CLUSTER c (\n    campaign_id String\n) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/events', '{replica}')\nORDER BY campaign_id",
		"CREATE TABLE IF NOT EXISTS db.events ON CLUSTER c (\n    campaign_id String\n) ENGINE = Distributed(c, db, events_local, cityHash64(campaign_id))",
	}
	if err != nil || strings.Join(got, "\n;\n") != strings.Join(want, "\n;\n") {
		t.Errorf("sharded table:\n%s\nwant\n%s (%v)", strings.Join(got, "\n;\n"), strings.Join(want, "\n;\n"), err)
	}
	got, err = clusterDDL("CREATE TABLE IF NOT EXISTS clients (k String, version UInt64) ENGINE = ReplacingMergeTree(version)\nORDER BY k", "db", "c")
	want = []string{"CREATE TABLE IF NOT EXISTS db.clients ON CLUSTER c (k String, version UInt64) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/db/clients', '{shard}-{replica}', version)\nORDER BY k"}
	if err != nil || len(got) != 1 || got[0] != want[0] {
		t.Errorf("control table:\n%q\nwant\n%q (%v)", got, want, err)
	}
	got, err = clusterDDL("CREATE MATERIALIZED VIEW IF NOT EXISTS bots_daily_mv TO bots_daily AS\nSELECT campaign_id, count() AS hits\nFROM events\nWHERE bot = 1\nGROUP BY campaign_id", "db", "c")
	want = []string{"CREATE MATERIALIZED VIEW IF NOT EXISTS db.bots_daily_mv ON CLUSTER c TO db.bots_daily_local AS\nSELECT campaign_id, count() AS hits\nFROM db.events_local\nWHERE bot = 1\nGROUP BY campaign_id"}
	if err != nil || len(got) != 1 || got[0] != want[0] {
		t.Errorf("view:\n%q\nwant\n%q (%v)", got, want, err)
	}
	for _, bad := range []string{
		"ALTER TABLE events ADD COLUMN x UInt8",
		"CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = Memory",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS v TO clients AS SELECT * FROM events",
	} {
		if _, err := clusterDDL(bad, "db", "c"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

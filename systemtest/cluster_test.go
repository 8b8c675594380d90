package systemtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/app"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
)

// clusterNode is one server of the test cluster, as system.clusters names it.
type clusterNode struct {
	Shard   uint32 `ch:"shard_num"`
	Replica uint32 `ch:"replica_num"`
	Host    string `ch:"host_address"`
	Port    uint16 `ch:"port"`
}

func (n clusterNode) addr(t *testing.T) string {
	a, err := netip.ParseAddr(n.Host)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(a, n.Port).String()
}

// onNode runs query (with {db} for the database) on one node through
// remote() and returns its single count.
func onNode(t *testing.T, st *store.Store, n clusterNode, db, query string) uint64 {
	t.Helper()
	q := strings.ReplaceAll(query, "{t}", fmt.Sprintf("remote('%s', %s.", n.addr(t), db))
	var rows []struct {
		N uint64 `ch:"n"`
	}
	if err := st.Conn().Select(context.Background(), &rows, q); err != nil || len(rows) != 1 {
		t.Fatalf("%s on node %d.%d: %v", q, n.Shard, n.Replica, err)
	}
	return rows[0].N
}

// TestCluster runs ingest, pipeline and api against the 2 shards × 2
// replicas cluster with -clickhouse.cluster, after `jobpixel migrate
// -clickhouse.cluster`: every hit is stored exactly once across the shards
// while a replica is stopped and restarted mid-load, the restarted replica
// catches up with everything, reports equal the accepted hits, and erasure
// and retention delete on every node, also on a replica that was down
// while they ran.
func TestCluster(t *testing.T) {
	awayFromMidnight(t, 3*time.Minute)
	c := testenv.ClusterEnv(t)
	ctx := context.Background()

	// The migrate command, as an operator runs it.
	db := "test_cluster_" + fmt.Sprint(time.Now().UnixNano()%1e9)
	st, err := store.Open(ctx, store.Config{Addr: c.Addr, Database: db, Cluster: c.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Conn().Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+c.Name)
		st.Close()
	})
	args := []string{"-clickhouse.addr", c.Addr, "-clickhouse.database", db, "-clickhouse.cluster", c.Name, "-log.level", "warn"}
	if err := app.Migrate(ctx, args, io.Discard); err != nil {
		t.Fatal(err)
	}
	var nodes []clusterNode
	if err := st.Conn().Select(ctx, &nodes, "SELECT shard_num, replica_num, host_address, port FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", c.Name); err != nil || len(nodes) != 4 {
		t.Fatalf("cluster nodes: %v %v", nodes, err)
	}
	// The schema on every node: traffic tables sharded, control state on
	// every node.
	for _, n := range nodes {
		for table, engine := range map[string]string{"events_local": "ReplicatedMergeTree", "events": "Distributed",
			"conversions_daily_local": "ReplicatedAggregatingMergeTree", "conversions_daily_mv": "MaterializedView",
			"clients": "ReplicatedReplacingMergeTree", "salts": "ReplicatedMergeTree", "forward_sent": "Distributed"} {
			got := onNode(t, st, n, "system", fmt.Sprintf("SELECT count() AS n FROM {t}tables) WHERE database = '%s' AND name = '%s' AND engine = '%s'", db, table, engine))
			if got != 1 {
				t.Errorf("node %d.%d: no %s table %s", n.Shard, n.Replica, engine, table)
			}
		}
	}

	client, token, err := st.CreateClient(ctx, "Cluster Jobs")
	if err != nil {
		t.Fatal(err)
	}
	// Ids that land on both shards: cityHash64(id) % 2 is 0 (shard 1) for
	// cmp_cluster_6, _8 and _11, 1 (shard 2) for _5, _7, _9 and _10.
	var camps []string
	for i := 5; i <= 10; i++ {
		cmp, err := st.CreateCampaign(ctx, client.ID, "c", store.CampaignOptions{ID: fmt.Sprintf("cmp_cluster_%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		camps = append(camps, cmp.ID)
	}
	ended, _, _ := st.CreateClient(ctx, "Ended Jobs")
	endedCamp, err := st.CreateCampaign(ctx, ended.ID, "e", store.CampaignOptions{ID: "cmp_cluster_11"})
	if err != nil {
		t.Fatal(err)
	}
	camps = append(camps, endedCamp.ID)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a := startAppOn(t, c.Addr, db, func(cfg *app.Config) { cfg.ClickHouseCluster = c.Name }, log)
	const chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
	sent := map[string]int{}
	total := 0
	send := func(n int) {
		t.Helper()
		for i := range n {
			camp := camps[total%len(camps)]
			q := url.Values{"c": {camp}, "e": {"page_view"}, "v": {"job-1"}}
			req, _ := http.NewRequest("GET", "http://"+a.IngestAddr()+"/p.gif?"+q.Encode(), nil)
			req.Header.Set("User-Agent", chrome)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i%250))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if r := resp.Header.Get("X-Jobpixel-Reject"); r != "" {
				t.Fatalf("hit %d rejected: %s", total, r)
			}
			sent[camp]++
			total++
		}
	}
	stored := func() uint64 {
		t.Helper()
		var n []struct {
			N uint64 `ch:"n"`
		}
		if err := st.Conn().Select(ctx, &n, "SELECT count() AS n FROM events"); err != nil {
			t.Fatal(err)
		}
		return n[0].N
	}
	waitStored := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); stored() < uint64(want); {
			if time.Now().After(deadline) {
				t.Fatalf("%d events stored, want %d", stored(), want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Load, then shard 2's first replica goes away mid-load and comes back.
	// While it is down, what only it held (inserted on it and not yet
	// fetched by its sibling) is out of sight; every hit sent meanwhile is
	// stored on the replicas that are up.
	send(700)
	waitStored(350)
	c.StopNode(t, 3)
	visible := stored()
	send(700)
	waitStored(int(visible) + 700)
	c.StartNode(t, 3)
	send(700)
	waitStored(total)

	// The restarted replica catches up with what was inserted while it was
	// down (events and the aggregates its sibling's views wrote); until it
	// has, a Distributed read may take it and miss rows.
	local := func(n clusterNode) uint64 {
		return onNode(t, st, n, db, "SELECT count() AS n FROM {t}events_local)")
	}
	localViews := func(n clusterNode) uint64 {
		return onNode(t, st, n, db, "SELECT sumMerge(page_views) AS n FROM {t}conversions_daily_local)")
	}
	for deadline := time.Now().Add(60 * time.Second); local(nodes[2]) != local(nodes[3]) || localViews(nodes[2]) != localViews(nodes[3]); {
		if time.Now().After(deadline) {
			t.Fatalf("restarted replica holds %d events (%d in its aggregates), its sibling %d (%d)",
				local(nodes[2]), localViews(nodes[2]), local(nodes[3]), localViews(nodes[3]))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Exactly once across the shards.
	time.Sleep(time.Second) // a straggler or a double count would show now
	var dup []struct {
		N   uint64 `ch:"n"`
		IDs uint64 `ch:"ids"`
	}
	if err := st.Conn().Select(ctx, &dup, "SELECT count() AS n, uniqExact(event_id) AS ids FROM events"); err != nil {
		t.Fatal(err)
	}
	if dup[0].N != uint64(total) || dup[0].IDs != uint64(total) {
		t.Fatalf("stored %d rows with %d event ids, want %d hits once each", dup[0].N, dup[0].IDs, total)
	}
	// Each shard holds its campaigns, and its replicas the same rows.
	s1, s2 := local(nodes[0]), local(nodes[2])
	if s1 != local(nodes[1]) || s1 == 0 || s2 == 0 || s1+s2 != uint64(total) {
		t.Fatalf("events per node %d %d %d %d, want two non-empty shards of %d in all", s1, local(nodes[1]), s2, local(nodes[3]), total)
	}
	// Sharded by campaign: each campaign on one shard only.
	c1 := onNode(t, st, nodes[0], db, "SELECT uniqExact(campaign_id) AS n FROM {t}events_local)")
	c2 := onNode(t, st, nodes[2], db, "SELECT uniqExact(campaign_id) AS n FROM {t}events_local)")
	if c1 == 0 || c2 == 0 || c1+c2 != uint64(len(camps)) {
		t.Errorf("shards hold %d and %d of %d campaigns: not sharded by campaign", c1, c2, len(camps))
	}

	// Reports equal the accepted hits.
	for _, camp := range camps[:6] {
		code, r := getReport(t, a, token, camp)
		if code != 200 || r.Totals.PageViews != uint64(sent[camp]) {
			t.Errorf("report of %s: %d, %d page views, want %d", camp, code, r.Totals.PageViews, sent[camp])
		}
	}

	// Erasure of one campaign (on shard 2) and a retention purge while
	// the erased campaign's first replica is down: the other replica takes
	// the deletions, and the one that was down applies them on return.
	erased := camps[0]
	c.StopNode(t, 3)
	if code, b := rawCall(t, a, "DELETE", "/api/v1/campaigns/"+erased+"/data", token, ""); code != 202 {
		t.Fatalf("erase: %d %s", code, b)
	}
	// Retention of the ended client, on every node.
	if err := st.EndClient(ctx, "operator:test", ended.ID); err != nil {
		t.Fatal(err)
	}
	res, err := st.EnforceRetention(ctx, time.Now().Add(62*24*time.Hour))
	if err != nil || len(res.PurgedVisitorData) != 1 || res.PurgedVisitorData[0] != ended.ID {
		t.Fatalf("retention: %+v %v", res, err)
	}
	c.StartNode(t, 3)
	// Mutations are asynchronous: wait until no node holds a row of
	// either campaign (18.16's system.mutations can stay behind on the
	// restarted replica, so the rows are what counts).
	left := func(n clusterNode) (rows uint64) {
		for _, table := range []string{"events_local", "conversions_daily_local", "bots_daily_local"} {
			rows += onNode(t, st, n, db, fmt.Sprintf("SELECT count() AS n FROM {t}%s) WHERE campaign_id IN ('%s', '%s')", table, erased, endedCamp.ID))
		}
		return rows
	}
	for _, n := range nodes {
		for deadline := time.Now().Add(60 * time.Second); left(n) != 0; {
			if time.Now().After(deadline) {
				t.Fatalf("node %d.%d: %d rows of the erased and the purged campaign left", n.Shard, n.Replica, left(n))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	kept := uint64(total - sent[erased] - sent[endedCamp.ID])
	if got := stored(); got != kept {
		t.Errorf("%d events after erasure and retention, want %d", got, kept)
	}
	for _, camp := range camps[1:6] {
		if _, r := getReport(t, a, token, camp); r.Totals.PageViews != uint64(sent[camp]) {
			t.Errorf("report of %s after erasing another campaign: %d page views, want %d", camp, r.Totals.PageViews, sent[camp])
		}
	}
}

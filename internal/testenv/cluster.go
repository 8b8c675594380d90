package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jobpixel/jobpixel/internal/store"
)

// Cluster is the replicated ClickHouse cluster of the tests: ZooKeeper and
// four ClickHouse 18.16 servers (2 shards × 2 replicas) run by
// scripts/cluster.sh.
type Cluster struct {
	Name string // the cluster's name in remote_servers: "jobpixel"
	Addr string // native address of node 1, where the test's stores connect
	Dir  string // the cluster's directory (scripts/cluster.sh DIR)
}

var (
	clusterOnce sync.Once
	clusterErr  error
)

// ClusterEnv returns the test cluster: the one `make test` started
// ($JOBPIXEL_TEST_CLUSTER, node 1's native address, with its directory in
// $JOBPIXEL_TEST_CLUSTER_DIR), or one started under .data/cluster with
// ports from base 19000 (node 1 on 19101). A cluster that cannot be started
// fails the test under CI and skips it otherwise.
func ClusterEnv(t testing.TB) Cluster {
	t.Helper()
	root := Root(t)
	c := Cluster{Name: "jobpixel", Addr: os.Getenv("JOBPIXEL_TEST_CLUSTER"), Dir: os.Getenv("JOBPIXEL_TEST_CLUSTER_DIR")}
	if c.Dir == "" {
		c.Dir = filepath.Join(root, ".data/cluster")
	}
	if c.Addr != "" {
		return c
	}
	clusterOnce.Do(func() {
		out, err := exec.Command("bash", filepath.Join(root, "scripts/cluster.sh"), "start", c.Dir, "19000").CombinedOutput()
		if err != nil {
			clusterErr = fmt.Errorf("start the ClickHouse cluster: %v: %s", err, out)
		}
	})
	if clusterErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(clusterErr)
		}
		t.Skip(clusterErr)
	}
	c.Addr = "127.0.0.1:19101"
	return c
}

// Store opens a fresh database on the cluster, migrated ON CLUSTER, and
// drops it on every node when the test ends.
func (c Cluster) Store(t testing.TB) *store.Store {
	t.Helper()
	return freshStore(t, store.Config{Addr: c.Addr, Cluster: c.Name})
}

// Database returns the name of a fresh, migrated database on the cluster
// for tests that open their own connections; it is dropped at the end.
func (c Cluster) Database(t testing.TB) string {
	t.Helper()
	return databaseOf(t, c.Store(t))
}

// StopNode stops server n (1-4; nodes 1 and 2 are shard 1, 3 and 4 shard
// 2) until StartNode, or the end of the test: the cluster outlives it.
func (c Cluster) StopNode(t testing.TB, n int) {
	t.Helper()
	c.script(t, "stop-node", n)
	t.Cleanup(func() { c.script(t, "start-node", n) })
}

// StartNode starts server n again (with its data, as it was); on a running
// server it does nothing.
func (c Cluster) StartNode(t testing.TB, n int) { c.script(t, "start-node", n) }

func (c Cluster) script(t testing.TB, cmd string, n int) {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(Root(t), "scripts/cluster.sh"), cmd, c.Dir, fmt.Sprint(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster.sh %s %d: %v: %s", cmd, n, err, out)
	}
}

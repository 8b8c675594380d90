// Package testenv gives tests the real components they run against: a
// ClickHouse server (the one `make test` started, or one this package
// starts through scripts/clickhouse.sh) with a fresh database per test, and
// an in-process Kafka-protocol broker.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/jobpixel/jobpixel/internal/store"
)

// Root returns the repository root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found")
		}
		dir = parent
	}
}

var startOnce sync.Once
var startErr error

// ClickHouseAddr returns the native address of the test ClickHouse server:
// $JOBPIXEL_TEST_CLICKHOUSE, or a server started under .data/clickhouse on
// port 19000 (what `make test` does too).
func ClickHouseAddr(t testing.TB) string {
	t.Helper()
	if a := os.Getenv("JOBPIXEL_TEST_CLICKHOUSE"); a != "" {
		return a
	}
	startOnce.Do(func() {
		root := Root(t)
		cmd := exec.Command("bash", filepath.Join(root, "scripts/clickhouse.sh"), "start", filepath.Join(root, ".data/clickhouse"), "19000", "18123")
		out, err := cmd.CombinedOutput()
		if err != nil {
			startErr = fmt.Errorf("start clickhouse: %v: %s", err, out)
		}
	})
	if startErr != nil {
		t.Fatal(startErr)
	}
	return "127.0.0.1:19000"
}

// Store opens a fresh, migrated database on the test server and drops it
// when the test ends.
func Store(t testing.TB) *store.Store {
	t.Helper()
	return freshStore(t, store.Config{Addr: ClickHouseAddr(t)})
}

// freshStore opens cfg with a fresh database, migrates it and drops it
// (ON CLUSTER cfg.Cluster, if set) when the test ends.
func freshStore(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg.Database = "test_" + hex.EncodeToString(b[:])
	st, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	drop := "DROP DATABASE IF EXISTS " + cfg.Database
	if cfg.Cluster != "" {
		drop += " ON CLUSTER " + cfg.Cluster
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = st.Conn().Exec(ctx, drop)
		st.Close()
	})
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// Database returns the name of a fresh database for tests that open their
// own connections (e.g. through the app); it is dropped at the end.
func Database(t testing.TB) string {
	t.Helper()
	return databaseOf(t, Store(t))
}

func databaseOf(t testing.TB, st *store.Store) string {
	t.Helper()
	var rows []struct {
		DB string `ch:"db"`
	}
	if err := st.Conn().Select(context.Background(), &rows, "SELECT currentDatabase() AS db"); err != nil || len(rows) != 1 {
		t.Fatalf("current database: %v", err)
	}
	return rows[0].DB
}

// Broker starts an in-process Kafka-protocol broker with topic seeded, in
// plain text without authentication.
func Broker(t testing.TB, topic string, partitions int32) string {
	t.Helper()
	return BrokerWith(t, topic, partitions, BrokerOptions{})
}

// BrokerOptions secure a test broker the way a managed Kafka is. The zero
// value is plain text without authentication.
type BrokerOptions struct {
	// Certs, when set, makes the broker speak only TLS, with Certs.Cert;
	// clients trust it with Certs.CA.
	Certs *Certs
	// SASLMechanism ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), when set,
	// makes the broker require SASL, with User and Password its one
	// (super)user.
	SASLMechanism  string
	User, Password string
}

// BrokerWith starts an in-process Kafka-protocol broker with topic seeded,
// secured as o says, and returns its address; it stops when the test ends.
func BrokerWith(t testing.TB, topic string, partitions int32, o BrokerOptions) string {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DefaultNumPartitions(int(partitions)),
		kfake.SeedTopics(partitions, topic), kfake.AllowAutoTopicCreation()}
	if o.Certs != nil {
		cert, err := tls.LoadX509KeyPair(o.Certs.Cert, o.Certs.Key)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}
	if o.SASLMechanism != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(o.SASLMechanism, o.User, o.Password))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// DownAddr returns a loopback address nothing listens on (a broker that is
// down: connections are refused).
func DownAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

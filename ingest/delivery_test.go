package ingest_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/ingest"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// kafkaStub is a Kafka writer that can be down or slow. It records every
// acknowledged hit by event id.
type kafkaStub struct {
	down  atomic.Bool
	delay atomic.Int64 // ns per write

	mu    sync.Mutex
	count map[[16]byte]int
	order [][16]byte
}

func newKafkaStub() *kafkaStub { return &kafkaStub{count: map[[16]byte]int{}} }

var errRefused = errors.New("dial tcp 127.0.0.1:9092: connect: connection refused")

func (k *kafkaStub) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if d := time.Duration(k.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if k.down.Load() {
		return errRefused
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, m := range msgs {
		var h schemas.Hit
		if err := h.Decode(m.Value); err != nil {
			return fmt.Errorf("stub: undecodable message: %w", err)
		}
		k.count[h.ID]++
		k.order = append(k.order, h.ID)
	}
	return nil
}

func (k *kafkaStub) probe(context.Context) error {
	if k.down.Load() {
		return errRefused
	}
	return nil
}

// stats returns how many distinct hits arrived and how many twice or more.
func (k *kafkaStub) stats() (distinct, dups int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, n := range k.count {
		if n > 1 {
			dups++
		}
	}
	return len(k.count), dups
}

type stubCampaigns struct{}

func (stubCampaigns) Campaigns(context.Context) ([]store.Campaign, error) {
	return []store.Campaign{{ID: "cmp_d", ClientID: "cl_d", Consentless: store.ConsentlessCount}}, nil
}

type stubSalt struct{}

func (stubSalt) Current(time.Time) *[32]byte { return &[32]byte{9} }

type testIngest struct {
	srv  *ingest.Server
	reg  *prometheus.Registry
	base string
	stop func(time.Duration) error
}

func startIngest(t *testing.T, k *kafkaStub, cfg ingest.Config) *testIngest {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	camps := ingest.NewRegistry(stubCampaigns{}, log)
	if err := camps.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if cfg.Linger == 0 {
		cfg.Linger = time.Millisecond
	}
	srv, err := ingest.New(cfg, ingest.Deps{Writer: k, Campaigns: camps, Salts: stubSalt{}, Log: log, Metrics: reg, KafkaProbe: k.probe})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	go srv.Serve(ln)
	ti := &testIngest{srv: srv, reg: reg, base: "http://" + ln.Addr().String()}
	var once sync.Once
	var stopErr error
	ti.stop = func(d time.Duration) error {
		once.Do(func() {
			client.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			stopErr = srv.Shutdown(ctx)
		})
		return stopErr
	}
	t.Cleanup(func() { ti.stop(5 * time.Second) })
	return ti
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}

// pixel sends one hit and returns the reject reason ("" when accepted).
func (ti *testIngest) pixel(t testing.TB, i int) string {
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/p.gif?c=cmp_d&e=page_view&eid=e%d", ti.base, i), nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pixel status %d", resp.StatusCode)
	}
	return resp.Header.Get(ingest.RejectHeader)
}

// send sends n hits from a few goroutines and returns how many were accepted
// and the reject reasons of the others.
func (ti *testIngest) send(t testing.TB, from, n int) (accepted int, rejected map[string]int) {
	var mu sync.Mutex
	rejected = map[string]int{}
	var wg sync.WaitGroup
	var next atomic.Int64
	next.Store(int64(from))
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= from+n {
					return
				}
				r := ti.pixel(t, i)
				mu.Lock()
				if r == "" {
					accepted++
				} else {
					rejected[r]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return accepted, rejected
}

func (ti *testIngest) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := ti.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// readyz is what the ops listener's /readyz answers for this server.
func (ti *testIngest) readyz(t testing.TB) (int, string) {
	if ok, why := ti.srv.Readiness(); !ok {
		return 503, "not ready: " + why
	}
	return 200, "ready"
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeliverySpoolsWhileKafkaDown: with Kafka down every hit is accepted
// and spooled, ingest is not ready, and when Kafka returns the spool is
// replayed in order, each hit exactly once.
func TestDeliverySpoolsWhileKafkaDown(t *testing.T) {
	k := newKafkaStub()
	k.down.Store(true)
	ti := startIngest(t, k, ingest.Config{SpoolDir: t.TempDir(), Producers: 1, QueueSize: 1000})
	const n = 3000
	// One sender: accept order is event-id order.
	for i := 0; i < n; i++ {
		if r := ti.pixel(t, i); r != "" {
			t.Fatalf("hit %d rejected with Kafka down: %s", i, r)
		}
	}
	waitFor(t, 10*time.Second, "all hits spooled", func() bool { return ti.metric(t, "jobpixel_ingest_spooled_total") == n })
	if code, body := ti.readyz(t); code != 503 || !strings.Contains(body, "kafka") {
		t.Errorf("readyz with Kafka down: %d %q", code, body)
	}
	if ti.metric(t, "jobpixel_ingest_spool_pending_bytes") == 0 || ti.metric(t, "jobpixel_ingest_kafka_up") != 0 {
		t.Error("spool gauges do not show the outage")
	}
	k.down.Store(false)
	waitFor(t, 30*time.Second, "replay", func() bool { d, _ := k.stats(); return d == n })
	waitFor(t, 5*time.Second, "ready again", func() bool { c, _ := ti.readyz(t); return c == 200 })
	if _, dups := k.stats(); dups != 0 {
		t.Errorf("%d hits written twice", dups)
	}
	k.mu.Lock()
	for i := 1; i < len(k.order); i++ {
		a, b := binary.LittleEndian.Uint64(k.order[i-1][8:]), binary.LittleEndian.Uint64(k.order[i][8:])
		if b <= a {
			t.Fatalf("replay out of order at %d: id %d after %d", i, b, a)
		}
	}
	k.mu.Unlock()
	if got := ti.metric(t, "jobpixel_ingest_replayed_total"); got != n {
		t.Errorf("replayed_total = %v, want %d", got, n)
	}
	if ti.metric(t, "jobpixel_ingest_spool_pending_bytes") != 0 || ti.metric(t, "jobpixel_ingest_spool_bytes") != 0 {
		t.Error("spool not empty after replay")
	}
}

// TestDeliveryShutdownKeepsSpool: a shutdown with Kafka down puts the queue
// into the spool; the next process replays it.
func TestDeliveryShutdownKeepsSpool(t *testing.T) {
	dir := t.TempDir()
	k := newKafkaStub()
	k.down.Store(true)
	ti := startIngest(t, k, ingest.Config{SpoolDir: dir, QueueSize: 10000})
	acc, rej := ti.send(t, 0, 2000)
	if acc != 2000 {
		t.Fatalf("accepted %d of 2000 (%v)", acc, rej)
	}
	if err := ti.stop(5 * time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if ti.metric(t, "jobpixel_ingest_dropped_total", "cause", "shutdown") != 0 {
		t.Fatal("hits dropped at shutdown")
	}
	k2 := newKafkaStub()
	startIngest(t, k2, ingest.Config{SpoolDir: dir})
	waitFor(t, 30*time.Second, "replay after restart", func() bool { d, _ := k2.stats(); return d == 2000 })
	time.Sleep(200 * time.Millisecond)
	if d, dups := k2.stats(); d != 2000 || dups != 0 {
		t.Fatalf("after restart: %d distinct, %d duplicated; want 2000, 0", d, dups)
	}
}

// TestDeliveryShutdownFlushesToKafka: with Kafka up, a shutdown delivers
// everything queued.
func TestDeliveryShutdownFlushesToKafka(t *testing.T) {
	k := newKafkaStub()
	k.delay.Store(int64(20 * time.Millisecond))
	ti := startIngest(t, k, ingest.Config{SpoolDir: t.TempDir(), QueueSize: 10000, BatchSize: 100, Producers: 1})
	acc, _ := ti.send(t, 0, 3000)
	if err := ti.stop(10 * time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d, dups := k.stats(); d != acc || dups != 0 {
		t.Fatalf("Kafka got %d distinct (%d twice), want %d", d, dups, acc)
	}
}

// TestDeliverySpoolFull: only a full spool sheds hits, and it says so.
func TestDeliverySpoolFull(t *testing.T) {
	k := newKafkaStub()
	k.down.Store(true)
	ti := startIngest(t, k, ingest.Config{SpoolDir: t.TempDir(), SpoolMaxBytes: 256 << 10, QueueSize: 200})
	// A client faster than the spool's appends (a loaded disk) sees
	// queue_full first: keep sending, as clients retry, until the spool is
	// full and says so.
	acc, rej, sent := 0, map[string]int{}, 0
	waitFor(t, 60*time.Second, "a hit shed as spool_full", func() bool {
		a, r := ti.send(t, sent, 500)
		sent += 500
		acc += a
		for k, v := range r {
			rej[k] += v
		}
		return rej["spool_full"] > 0
	})
	if acc == 0 {
		t.Fatalf("accepted %d, rejected %v: want some hits accepted (spooled)", acc, rej)
	}
	if got := ti.metric(t, "jobpixel_ingest_rejected_total", "reason", "spool_full"); int(got) != rej["spool_full"] {
		t.Errorf("rejected_total{spool_full} = %v, clients saw %d", got, rej["spool_full"])
	}
	// POST /e answers 503 with the reason.
	resp, err := client.Post(ti.base+"/e", "text/plain", strings.NewReader(`{"c":"cmp_d","events":[{"e":"page_view"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get(ingest.RejectHeader) != "spool_full" {
		t.Errorf("POST /e with a full spool: %d %q", resp.StatusCode, resp.Header.Get(ingest.RejectHeader))
	}
	k.down.Store(false)
	waitFor(t, 30*time.Second, "accepted hits delivered", func() bool { d, _ := k.stats(); return d >= acc })
	time.Sleep(300 * time.Millisecond)
	if d, dups := k.stats(); d != acc || dups != 0 {
		t.Fatalf("Kafka got %d distinct (%d twice), want exactly the %d accepted", d, dups, acc)
	}
}

// TestDeliverySlowKafkaSpills: producers stuck in slow writes do not make
// hits bounce: the queue's excess goes to the spool.
func TestDeliverySlowKafkaSpills(t *testing.T) {
	k := newKafkaStub()
	k.delay.Store(int64(3 * time.Second))
	ti := startIngest(t, k, ingest.Config{SpoolDir: t.TempDir(), QueueSize: 4000, SpoolHighWater: 500, BatchSize: 50, Producers: 2})
	acc, rej := ti.send(t, 0, 10000)
	if acc != 10000 {
		t.Fatalf("accepted %d, rejected %v with a slow Kafka", acc, rej)
	}
	if ti.metric(t, "jobpixel_ingest_spooled_total") == 0 {
		t.Fatal("nothing spooled")
	}
	k.delay.Store(0)
	waitFor(t, 30*time.Second, "delivery", func() bool { d, _ := k.stats(); return d == 10000 })
	if _, dups := k.stats(); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}

// TestSlowLoris: a client trickling its request is cut off after
// ReadTimeout and does not hold up others.
func TestSlowLoris(t *testing.T) {
	k := newKafkaStub()
	// Long enough that a normal request held up by the slow client (waiting
	// for its cut-off) stands out from one that is merely slow on a loaded
	// machine.
	const readTimeout = 2 * time.Second
	ti := startIngest(t, k, ingest.Config{ReadTimeout: readTimeout})
	conn, err := net.Dial("tcp", strings.TrimPrefix(ti.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		// Read until the server gives up on us.
		r := bufio.NewReader(conn)
		for {
			if _, err := r.ReadByte(); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	go func() {
		msg := "GET /p.gif?c=cmp_d&e=page_view HTTP/1.1\r\nHost: x\r\nUser-Agent: slow"
		for i := 0; i < len(msg); i++ {
			if _, err := conn.Write([]byte{msg[i]}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	// Others are served at once meanwhile.
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		if r := ti.pixel(t, i); r != "" {
			t.Fatalf("hit rejected: %s", r)
		}
		if d := time.Since(t0); d > readTimeout/2 {
			t.Errorf("a normal request took %v while a slow client was connected", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case d := <-closed:
		if d < readTimeout-100*time.Millisecond || d > readTimeout+3*time.Second {
			t.Errorf("slow client cut off after %v, want about the %v ReadTimeout", d, readTimeout)
		}
	case <-time.After(readTimeout + 8*time.Second):
		t.Fatalf("slow client still connected after %v", readTimeout+8*time.Second)
	}
}

// TestDeliveryShutdownDrainsSpool: with Kafka up (slow) at shutdown, the
// spool's backlog is replayed before the process ends, within the deadline.
func TestDeliveryShutdownDrainsSpool(t *testing.T) {
	k := newKafkaStub()
	k.delay.Store(int64(time.Second))
	ti := startIngest(t, k, ingest.Config{SpoolDir: t.TempDir(), QueueSize: 2000, SpoolHighWater: 200, BatchSize: 50, Producers: 1})
	acc, rej := ti.send(t, 0, 5000)
	if acc != 5000 {
		t.Fatalf("accepted %d, rejected %v", acc, rej)
	}
	if ti.metric(t, "jobpixel_ingest_spool_pending_bytes") == 0 {
		t.Fatal("nothing waiting in the spool at shutdown")
	}
	start := time.Now()
	if err := ti.stop(15 * time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d, dups := k.stats(); d != 5000 || dups != 0 {
		t.Fatalf("after shutdown Kafka has %d distinct (%d twice), want 5000", d, dups)
	}
	if p := ti.metric(t, "jobpixel_ingest_spool_pending_bytes"); p != 0 {
		t.Fatalf("spool keeps %v bytes after a shutdown with Kafka up", p)
	}
	t.Logf("shutdown with a spool backlog took %v", time.Since(start).Round(time.Millisecond))
}

// TestDeliveryWithoutSpool: with no spool configured, failed writes are
// retried in memory, and readiness comes back with Kafka.
func TestDeliveryWithoutSpool(t *testing.T) {
	k := newKafkaStub()
	k.down.Store(true)
	ti := startIngest(t, k, ingest.Config{QueueSize: 1000})
	if acc, rej := ti.send(t, 0, 300); acc != 300 {
		t.Fatalf("accepted %d, rejected %v", acc, rej)
	}
	waitFor(t, 5*time.Second, "not ready", func() bool { c, _ := ti.readyz(t); return c == 503 })
	k.down.Store(false)
	waitFor(t, 30*time.Second, "delivery", func() bool { d, _ := k.stats(); return d == 300 })
	waitFor(t, 5*time.Second, "ready again", func() bool { c, _ := ti.readyz(t); return c == 200 })
	if _, dups := k.stats(); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}

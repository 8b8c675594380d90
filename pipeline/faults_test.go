package pipeline_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
	"github.com/jobpixel/jobpixel/pipeline"
	"github.com/jobpixel/jobpixel/schemas"
)

// memSink is an in-memory Sink whose inserts can fail in the ways
// ClickHouse does: refused (nothing stored), or ambiguous (stored, but the
// client saw an error, e.g. a read timeout after the server committed).
type memSink struct {
	mu        sync.Mutex
	rows      []store.Event
	down      bool // refuse every call
	ambiguous int  // the next n inserts store and then fail
	inserts   int
	maxRows   int
}

var errConn = errors.New("read tcp 127.0.0.1:9000: i/o timeout")

func (s *memSink) InsertEvents(_ context.Context, rows []store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errConn
	}
	s.inserts++
	s.maxRows = max(s.maxRows, len(rows))
	s.rows = append(s.rows, rows...)
	if s.ambiguous > 0 {
		s.ambiguous--
		return errConn
	}
	return nil
}

// Window does what store.Window does, over the rows in memory.
func (s *memSink) Window(_ context.Context, partition int, from int64, idWindow int64) (store.StoredWindow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return store.StoredWindow{}, errConn
	}
	w := store.StoredWindow{Max: -1, Offsets: map[int64]struct{}{}}
	for _, r := range s.rows {
		if int(r.KafkaPartition) == partition {
			w.Max = max(w.Max, r.KafkaOffset)
		}
	}
	for _, r := range s.rows {
		if int(r.KafkaPartition) != partition {
			continue
		}
		if r.KafkaOffset >= from {
			w.Offsets[r.KafkaOffset] = struct{}{}
		}
		if r.KafkaOffset >= w.Max-idWindow {
			w.IDs = append(w.IDs, r.ID)
		}
	}
	return w, nil
}

func (s *memSink) stats() (rows, distinct int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[[16]byte]bool{}
	for _, r := range s.rows {
		seen[r.ID] = true
	}
	return len(s.rows), len(seen)
}

// produce writes n hits with distinct ids, from id first on.
func produce(t *testing.T, broker string, first, n int) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: "hits", Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond}
	defer w.Close()
	var msgs []kafka.Message
	for i := first; i < first+n; i++ {
		h := schemas.Hit{Event: schemas.EventPageView, ReceivedMs: time.Now().UnixMilli(),
			Campaign: []byte("cmp"), Client: []byte("cl"), URL: []byte("https://jobs.example.com/")}
		binary.LittleEndian.PutUint64(h.ID[8:], uint64(i))
		msgs = append(msgs, kafka.Message{Key: h.ID[:], Value: h.Append(nil)})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func runPipeline(t *testing.T, broker string, sink pipeline.Sink) (stop func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	p, err := pipeline.New(pipeline.Config{Brokers: []string{broker}, Topic: "hits", Group: "g",
		BatchSize: 100, FlushInterval: 50 * time.Millisecond}, sink, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func waitRows(t *testing.T, s *memSink, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if _, distinct := s.stats(); distinct >= n {
			return
		}
		if time.Now().After(deadline) {
			rows, distinct := s.stats()
			t.Fatalf("after %v: %d rows, %d distinct, want %d", d, rows, distinct, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAmbiguousInsert: an insert that was applied although the client got
// an error is not applied twice by the retry.
func TestAmbiguousInsert(t *testing.T) {
	broker := testenv.Broker(t, "hits", 2)
	sink := &memSink{ambiguous: 3}
	produce(t, broker, 0, 1000)
	stop := runPipeline(t, broker, sink)
	defer stop()
	waitRows(t, sink, 1000, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	if rows, distinct := sink.stats(); rows != 1000 || distinct != 1000 {
		t.Fatalf("%d rows for %d hits: failed-but-applied inserts were repeated", rows, distinct)
	}
}

// TestSinkOutage: while the sink is down the pipeline holds at most one
// batch per partition, retries, and resumes by itself; nothing is lost or
// doubled.
func TestSinkOutage(t *testing.T) {
	broker := testenv.Broker(t, "hits", 2)
	sink := &memSink{}
	stop := runPipeline(t, broker, sink)
	defer stop()
	produce(t, broker, 0, 500)
	waitRows(t, sink, 500, 30*time.Second)
	sink.mu.Lock()
	sink.down = true
	sink.mu.Unlock()
	produce(t, broker, 500, 5000) // 50 batches wait in Kafka
	time.Sleep(3 * time.Second)
	sink.mu.Lock()
	sink.down = false
	sink.mu.Unlock()
	waitRows(t, sink, 5500, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	rows, distinct := sink.stats()
	if rows != 5500 || distinct != 5500 {
		t.Fatalf("%d rows, %d distinct, want 5500", rows, distinct)
	}
	if sink.maxRows > 100 {
		t.Fatalf("an insert held %d rows, more than the batch size 100", sink.maxRows)
	}
}

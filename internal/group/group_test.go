package group

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/internal/testenv"
)

func produce(t *testing.T, broker, topic string, from, n int) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.RoundRobin{}, BatchTimeout: 10 * time.Millisecond}
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: fmt.Appendf(nil, "m%d", from+i)}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// member runs one member until it has seen want messages, committing each
// message unless commit says no, and returns the values seen and how often
// the singleton ran.
func member(t *testing.T, broker, topic string, want int, commit func(value string) bool) (seen []string, singletons int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var runs atomic.Int32
	err := Run(ctx, Config{
		Brokers: []string{broker}, Topic: topic, Group: "g",
		Consume: func(ctx context.Context, p *Partition) {
			for {
				msg, err := p.Fetch(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					continue
				}
				if commit(string(msg.Value)) {
					if err := p.Commit(); err != nil {
						t.Errorf("commit: %v", err)
					}
				}
				mu.Lock()
				seen = append(seen, string(msg.Value))
				if len(seen) == want {
					cancel()
				}
				mu.Unlock()
			}
		},
		Singleton: func(ctx context.Context) {
			runs.Add(1)
			<-ctx.Done()
		},
		Log:    slog.New(slog.DiscardHandler),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "errors"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatalf("saw %d messages in 30 s, want %d", len(seen), want)
	}
	return seen, runs.Load()
}

// TestResumeFromCommit: a member consumes every partition, runs the
// singleton once, and the next member starts after the last commit, so
// what was fetched but not committed is delivered again and nothing else.
func TestResumeFromCommit(t *testing.T) {
	broker := testenv.Broker(t, "hits", 2)
	produce(t, broker, "hits", 0, 10)
	seen, runs := member(t, broker, "hits", 10, func(v string) bool { return v != "m8" && v != "m9" })
	if len(seen) != 10 || runs != 1 {
		t.Fatalf("first member saw %v and ran the singleton %d times, want 10 messages and 1 run", seen, runs)
	}
	// m8 and m9 were the last of their partitions and not committed.
	produce(t, broker, "hits", 10, 2)
	seen, _ = member(t, broker, "hits", 4, func(string) bool { return true })
	got := map[string]bool{}
	for _, v := range seen {
		got[v] = true
	}
	for _, v := range []string{"m8", "m9", "m10", "m11"} {
		if !got[v] {
			t.Errorf("second member saw %v, missing %s", seen, v)
		}
	}
	if len(seen) != 4 {
		t.Errorf("second member saw %v, want only the 2 uncommitted and the 2 new messages", seen)
	}
}

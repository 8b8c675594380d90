package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	const ms = time.Millisecond
	f := func(name string, e Exp, want ...time.Duration) {
		t.Helper()
		for attempt, w := range want {
			if got := e.Delay(attempt); got != w {
				t.Errorf("%s: Delay(%d) = %v, want %v", name, attempt, got, w)
			}
		}
	}
	// The pipeline's and the relay's ClickHouse and hold retries:
	// 200 ms << min(attempt, 5), at most 5 s.
	f("pipeline", Exp{Base: 200 * ms, Max: 5 * time.Second},
		200*ms, 400*ms, 800*ms, 1600*ms, 3200*ms, 5*time.Second, 5*time.Second)
	// The ingest producers' Kafka retries: 100 ms << min(attempt, 6), at most 5 s.
	f("producer", Exp{Base: 100 * ms, Max: 5 * time.Second},
		100*ms, 200*ms, 400*ms, 800*ms, 1600*ms, 3200*ms, 5*time.Second, 5*time.Second)
	// Doublings caps the growth below Max: the audience reconciler's
	// interval << min(n, 10), at most an hour.
	f("doublings", Exp{Base: ms, Max: time.Hour, Doublings: 10},
		ms, 2*ms, 4*ms, 8*ms, 16*ms, 32*ms, 64*ms, 128*ms, 256*ms, 512*ms, 1024*ms, 1024*ms, 1024*ms)
	f("doublings over max", Exp{Base: 10 * time.Second, Max: time.Hour, Doublings: 10},
		10*time.Second, 20*time.Second, 40*time.Second, 80*time.Second, 160*time.Second, 320*time.Second,
		640*time.Second, 1280*time.Second, 2560*time.Second, time.Hour, time.Hour)
	f("base over max", Exp{Base: 2 * time.Second, Max: time.Second}, time.Second, time.Second)
	f("zero", Exp{}, 0, 0, 0)

	e := Exp{Base: ms, Max: time.Hour}
	if got := e.Delay(-3); got != ms {
		t.Errorf("Delay(-3) = %v, want %v (as attempt 0)", got, ms)
	}
	if got := e.Delay(1 << 40); got != time.Hour {
		t.Errorf("Delay(1<<40) = %v, want %v (no overflow)", got, time.Hour)
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep(1ms) = false with a live context")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep(1h) = true with an ended context")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Sleep with an ended context took %v", d)
	}
}

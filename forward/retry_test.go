package forward

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a manual clock: sleep advances now without waiting.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func newClock() *clock { return &clock{now: time.Date(2026, 10, 14, 12, 0, 0, 0, time.UTC)} }

func (c *clock) policy(attempts int) RetryPolicy {
	return RetryPolicy{MaxAttempts: attempts, Sleep: c.Sleep, Now: c.Now,
		Jitter: func(time.Duration) time.Duration { return 0 }}
}

// script returns an op failing with errs in turn, then succeeding.
func script(errs ...error) (op func(context.Context) error, calls *int) {
	n := 0
	return func(context.Context) error {
		n++
		if n <= len(errs) {
			return errs[n-1]
		}
		return nil
	}, &n
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	c := newClock()
	throttled := &Error{Kind: Throttled, Status: 429, RetryAfter: 7 * time.Second}
	op, calls := script(throttled, throttled)
	attempts, err := c.policy(5).Do(context.Background(), op)
	if err != nil || attempts != 3 || *calls != 3 {
		t.Fatalf("attempts=%d calls=%d err=%v", attempts, *calls, err)
	}
	if want := []time.Duration{7 * time.Second, 7 * time.Second}; !slices.Equal(c.sleeps, want) {
		t.Errorf("sleeps = %v, want %v", c.sleeps, want)
	}
}

func TestRetryExponentialBackoff(t *testing.T) {
	c := newClock()
	p := c.policy(5)
	p.InitialBackoff = 100 * time.Millisecond
	p.MaxBackoff = 300 * time.Millisecond
	e := &Error{Kind: Retryable, Status: 503}
	op, _ := script(e, e, e, e)
	if _, err := p.Do(context.Background(), op); err != nil {
		t.Fatal(err)
	}
	// Zero jitter: each wait is b/2 with b = 100, 200, 300 (capped), 300 ms.
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond}
	if !slices.Equal(c.sleeps, want) {
		t.Errorf("sleeps = %v, want %v", c.sleeps, want)
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	p := RetryPolicy{InitialBackoff: time.Second, MaxBackoff: 8 * time.Second}
	for attempt, b := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 8 * time.Second} {
		for range 200 {
			if d := p.Backoff(attempt); d < b/2 || d >= b {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v)", attempt, d, b/2, b)
			}
		}
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	c := newClock()
	e := &Error{Kind: Retryable, Status: 503}
	op, calls := script(e, e, e, e, e, e)
	attempts, err := c.policy(3).Do(context.Background(), op)
	if attempts != 3 || *calls != 3 {
		t.Fatalf("attempts=%d calls=%d", attempts, *calls)
	}
	if !errors.Is(err, Retryable) || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Errorf("err = %v", err)
	}
	if len(c.sleeps) != 2 {
		t.Errorf("sleeps = %v, want 2", c.sleeps)
	}
}

func TestRetryGivesUpWhenRetryAfterExceedsBudget(t *testing.T) {
	c := newClock()
	p := c.policy(10)
	p.MaxElapsed = time.Minute
	e := &Error{Kind: Throttled, Status: 429, RetryAfter: 2 * time.Minute}
	op, calls := script(e, e)
	attempts, err := p.Do(context.Background(), op)
	if attempts != 1 || *calls != 1 || len(c.sleeps) != 0 {
		t.Fatalf("attempts=%d calls=%d sleeps=%v", attempts, *calls, c.sleeps)
	}
	if Classify(err) != Throttled || RetryAfterOf(err) != 2*time.Minute {
		t.Errorf("err = %v (kind %v, retry after %v)", err, Classify(err), RetryAfterOf(err))
	}
}

func TestRetryStopsAtElapsedBudget(t *testing.T) {
	c := newClock()
	p := c.policy(100)
	p.MaxElapsed = 10 * time.Second
	e := &Error{Kind: Throttled, RetryAfter: 3 * time.Second}
	op, calls := script(e, e, e, e, e, e, e, e)
	_, err := p.Do(context.Background(), op)
	// Waits of 3s fit three times into 10s (9s); the fourth would end at 12s.
	if *calls != 4 || len(c.sleeps) != 3 || Classify(err) != Throttled {
		t.Errorf("calls=%d sleeps=%v err=%v", *calls, c.sleeps, err)
	}
}

func TestRetryPermanentNotRetried(t *testing.T) {
	c := newClock()
	op, calls := script(&Error{Kind: Permanent, Status: 400}, nil)
	attempts, err := c.policy(5).Do(context.Background(), op)
	if attempts != 1 || *calls != 1 || Classify(err) != Permanent || len(c.sleeps) != 0 {
		t.Errorf("attempts=%d calls=%d err=%v sleeps=%v", attempts, *calls, err, c.sleeps)
	}
}

func TestRetryContextCancelled(t *testing.T) {
	c := newClock()
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	attempts, err := c.policy(5).Do(ctx, func(context.Context) error {
		calls++
		cancel()
		return &Error{Kind: Retryable, Status: 503}
	})
	if calls != 1 || attempts != 1 {
		t.Errorf("calls=%d attempts=%d", calls, attempts)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, Retryable) {
		t.Errorf("err = %v, want canceled wrapping the last error", err)
	}
}

func TestRetryRealSleepRespectsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	p := RetryPolicy{MaxAttempts: 3, MaxElapsed: 2 * time.Hour}
	start := time.Now()
	_, err := p.Do(ctx, func(context.Context) error { return &Error{Kind: Throttled, RetryAfter: time.Hour} })
	if time.Since(start) > 5*time.Second || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("took %v, err=%v", time.Since(start), err)
	}
}

// Package fakeclock is a manual clock for tests of retrying code: Sleep
// advances Now instantly and records what was asked for.
package fakeclock

import (
	"context"
	"sync"
	"time"

	"github.com/jobpixel/jobpixel/forward"
)

// Clock is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

// New returns a Clock reading t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (time passing between calls, e.g.
// towards a token's expiry), without recording a sleep.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sleep records d and advances the clock by it, without waiting. It
// returns ctx.Err() if ctx is already done.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

// Sleeps returns the durations slept so far.
func (c *Clock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// Policy returns a RetryPolicy that sleeps on c with zero jitter, so a
// computed backoff is always exactly b/2 (see forward.RetryPolicy), and the
// given attempt limit.
func (c *Clock) Policy(maxAttempts int) forward.RetryPolicy {
	return forward.RetryPolicy{
		MaxAttempts: maxAttempts,
		Sleep:       c.Sleep,
		Now:         c.Now,
		Jitter:      func(d time.Duration) time.Duration { return 0 },
	}
}

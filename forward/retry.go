package forward

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jobpixel/jobpixel/internal/backoff"
)

// RetryPolicy decides how often and how long a failed request is retried.
// The zero value is usable and means the defaults documented on each field.
//
// Only Retryable and Throttled errors (see Classify) are retried. The wait
// before attempt n+1 is the error's RetryAfter when the platform gave one,
// otherwise an exponential backoff with "equal jitter": a random duration in
// [b/2, b) where b = min(MaxBackoff, InitialBackoff·2^(n-1)).
type RetryPolicy struct {
	// MaxAttempts is the maximum number of attempts, the first included.
	// 0 means 5; 1 disables retries.
	MaxAttempts int
	// MaxElapsed bounds the time from the first attempt: a retry whose wait
	// would end later than MaxElapsed after the first attempt started is not
	// made, and the last error is returned instead. 0 means 1 minute.
	MaxElapsed time.Duration
	// InitialBackoff is the backoff base before the second attempt.
	// 0 means 500ms.
	InitialBackoff time.Duration
	// MaxBackoff caps a computed backoff (not a platform's RetryAfter).
	// 0 means 30s.
	MaxBackoff time.Duration

	// Sleep waits for d or until ctx is done, returning ctx.Err() then.
	// nil means a real timer. Tests inject Sleep together with Now.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Jitter returns a uniformly random duration in [0, d) for d > 0.
	// nil means math/rand/v2.
	Jitter func(d time.Duration) time.Duration
}

func (p RetryPolicy) maxAttempts() int {
	if p.MaxAttempts <= 0 {
		return 5
	}
	return p.MaxAttempts
}

func (p RetryPolicy) maxElapsed() time.Duration {
	if p.MaxElapsed <= 0 {
		return time.Minute
	}
	return p.MaxElapsed
}

func (p RetryPolicy) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p RetryPolicy) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	if !backoff.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

// Backoff returns the jittered backoff before attempt+1, for attempt >= 1,
// ignoring any RetryAfter.
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	initial, maxB := p.InitialBackoff, p.MaxBackoff
	if initial <= 0 {
		initial = 500 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	b := backoff.Exp{Base: initial, Max: maxB}.Delay(attempt - 1)
	half := b / 2
	if b-half <= 0 {
		return b
	}
	jitter := p.Jitter
	if jitter == nil {
		jitter = func(d time.Duration) time.Duration { return rand.N(d) }
	}
	return half + jitter(b-half)
}

// Do calls op until it succeeds, returns an error that is not Retryable or
// Throttled, ctx is done, or the policy's attempt/elapsed limits are
// reached. It returns the number of attempts made and the final error (nil
// on success). A give-up error wraps the last op error, so Classify still
// reports its Kind: the items are not bad, only not delivered yet.
//
// op receives ctx unchanged; per-attempt time-outs are op's business.
func (p RetryPolicy) Do(ctx context.Context, op func(ctx context.Context) error) (attempts int, err error) {
	start := p.now()
	maxAttempts, budget := p.maxAttempts(), p.maxElapsed()
	for attempt := 1; ; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			if err == nil {
				return attempt - 1, cerr
			}
			return attempt - 1, fmt.Errorf("%w; last attempt: %w", cerr, err)
		}
		err = op(ctx)
		if err == nil {
			return attempt, nil
		}
		kind := Classify(err)
		if kind != Retryable && kind != Throttled {
			return attempt, err
		}
		if ctx.Err() != nil {
			continue // reported at the top of the loop
		}
		if attempt >= maxAttempts {
			return attempt, fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		wait := RetryAfterOf(err)
		if wait <= 0 {
			wait = p.Backoff(attempt)
		}
		if elapsed := p.now().Sub(start); elapsed+wait > budget {
			return attempt, fmt.Errorf("giving up after %d attempts: waiting %v more would exceed the %v retry budget: %w",
				attempt, wait, budget, err)
		}
		if serr := p.sleep(ctx, wait); serr != nil {
			return attempt, fmt.Errorf("%w; last attempt: %w", serr, err)
		}
	}
}

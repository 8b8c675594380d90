// Package backoff says how long a retry waits, and waits it.
//
// Every loop of jobpixel that retries after a failure (Kafka joins, fetches
// and writes, ClickHouse reads and inserts, platform requests, audience
// reconciliation) takes its delays from an Exp and waits them with Sleep.
package backoff

import (
	"context"
	"time"
)

// Exp is an exponential backoff: Base after the first failure, doubled
// after each further one, never more than Max. Doublings, when positive,
// is how often Base is doubled at most; zero means as often as Max allows.
// The zero Exp waits not at all.
type Exp struct {
	Base, Max time.Duration
	Doublings int
}

// Delay returns the wait after failure number attempt, counted from 0:
// min(Max, Base·2^attempt), with attempt capped at Doublings when that is
// positive. A negative attempt counts as 0. Doubling stops once Max is
// reached, so it cannot overflow for a Max under 146 years.
func (e Exp) Delay(attempt int) time.Duration {
	d := e.Base
	for i := 0; i < attempt && (e.Doublings <= 0 || i < e.Doublings) && d < e.Max; i++ {
		d *= 2
	}
	return min(d, e.Max)
}

// Sleep waits d or until ctx ends, whichever comes first, and reports
// whether the whole d passed (false: ctx ended first).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

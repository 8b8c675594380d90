package pipeline

import (
	"context"

	"github.com/jobpixel/jobpixel/internal/backoff"
)

// dropStored removes from st.rows the rows ClickHouse already holds. It is
// called after a failed insert, before retrying it: an insert can fail on
// the client (read timeout, connection reset) and still be applied on the
// server, and plain MergeTree never deduplicates a repeated insert. It
// retries the lookup until it succeeds and returns false only when runCtx
// ends first.
func (p *Pipeline) dropStored(runCtx context.Context, st *partition) bool {
	if len(st.rows) == 0 {
		return true
	}
	from := st.rows[0].KafkaOffset
	for _, r := range st.rows {
		from = min(from, r.KafkaOffset)
	}
	for attempt := 0; ; attempt++ {
		w, err := p.sink.Window(runCtx, st.ID, from, 0)
		if err == nil {
			kept := st.rows[:0]
			for _, r := range st.rows {
				stored := r.KafkaOffset <= w.Max
				if w.Offsets != nil {
					_, stored = w.Offsets[r.KafkaOffset]
				}
				if !stored {
					kept = append(kept, r)
				}
			}
			if n := len(st.rows) - len(kept); n > 0 {
				p.m.inserted.Add(float64(n))
				p.m.skipped.WithLabelValues("stored_by_failed_insert").Add(float64(n))
				p.log.Warn("a failed insert was applied; retrying only the rest", "partition", st.ID, "stored", n, "left", len(kept))
			}
			clear(st.rows[len(kept):])
			st.rows = kept
			return true
		}
		if runCtx.Err() != nil {
			return false
		}
		p.m.insertErrors.Inc()
		p.log.Warn("checking what a failed insert stored failed, retrying", "partition", st.ID, "err", err)
		backoff.Sleep(runCtx, retryBackoff.Delay(attempt))
	}
}

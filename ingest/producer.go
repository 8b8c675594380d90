package ingest

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// Writer is what the producers need from Kafka; *kafka.Writer satisfies it.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// producer drains the queue into Kafka in batches. A batch is retried until
// Kafka acknowledges it; records return to the pool only then.
type producer struct {
	q       *queue
	w       Writer
	batch   int
	linger  time.Duration
	log     *slog.Logger
	m       *metrics
	backoff func(attempt int) time.Duration
}

// run consumes the queue until it is closed and empty, or until ctx is done
// and the pending batch could not be written before the deadline.
func (p *producer) run(ctx context.Context, stop <-chan struct{}) {
	recs := make([]*record, 0, p.batch)
	msgs := make([]kafka.Message, 0, p.batch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		recs = recs[:0]
		// Block for the first record, then linger for more.
		select {
		case r := <-p.q.ch:
			recs = append(recs, r)
		case <-stop:
			// Drain what is left without waiting.
			for {
				select {
				case r := <-p.q.ch:
					recs = append(recs, r)
					if len(recs) == p.batch {
						p.flush(ctx, recs, msgs)
						recs = recs[:0]
					}
					continue
				default:
				}
				break
			}
			if len(recs) > 0 {
				p.flush(ctx, recs, msgs)
			}
			return
		}
		timer.Reset(p.linger)
	fill:
		for len(recs) < p.batch {
			select {
			case r := <-p.q.ch:
				recs = append(recs, r)
			case <-timer.C:
				break fill
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		p.flush(ctx, recs, msgs)
	}
}

// flush writes recs to Kafka, retrying with backoff until it succeeds or ctx
// ends. Records are released after success; on final failure they are
// counted as dropped.
func (p *producer) flush(ctx context.Context, recs []*record, msgs []kafka.Message) {
	msgs = msgs[:0]
	for _, r := range recs {
		msgs = append(msgs, kafka.Message{Key: r.key[:], Value: r.buf})
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		err := p.w.WriteMessages(ctx, msgs...)
		if err == nil {
			p.m.produced.Add(float64(len(recs)))
			p.m.produceLatency.Observe(time.Since(start).Seconds())
			break
		}
		p.m.produceErrors.Inc()
		if ctx.Err() != nil {
			p.log.Error("kafka unavailable at shutdown: hits lost", "hits", len(recs), "err", err)
			p.m.dropped.WithLabelValues("kafka_shutdown").Add(float64(len(recs)))
			break
		}
		var we kafka.WriteErrors
		if errors.As(err, &we) {
			// Keep only the messages that failed.
			kept := msgs[:0]
			for i, e := range we {
				if e != nil {
					kept = append(kept, msgs[i])
				}
			}
			p.m.produced.Add(float64(len(msgs) - len(kept)))
			msgs = kept
		}
		d := p.backoff(attempt)
		p.log.Warn("kafka write failed, retrying", "messages", len(msgs), "attempt", attempt+1, "in", d, "err", err)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	for _, r := range recs {
		putRecord(r)
	}
}

func expBackoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 6)
	return min(d, 5*time.Second)
}

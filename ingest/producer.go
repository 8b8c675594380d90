package ingest

import (
	"context"
	"errors"
	"log/slog"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/ingest/spool"
	"github.com/jobpixel/jobpixel/internal/backoff"
)

// producer drains the queue into Kafka (or the spool) in batches.
type producer struct {
	d       *delivery
	batch   int
	linger  time.Duration
	log     *slog.Logger
	backoff func(attempt int) time.Duration
	// preferSpool makes deliver try the spool first (the spiller).
	preferSpool bool

	recs    []*record
	msgs    []kafka.Message
	payload [][]byte
	buf     []byte
}

func (d *delivery) newProducer(preferSpool bool) *producer {
	return &producer{d: d, batch: d.batch, linger: d.linger, log: d.log,
		backoff: expBackoff, preferSpool: preferSpool,
		recs: make([]*record, 0, d.batch), msgs: make([]kafka.Message, 0, d.batch)}
}

// run consumes the queue until stop is closed and the queue is empty.
func (p *producer) run(stop <-chan struct{}) {
	q := p.d.q
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		recs := p.recs[:0]
		// Block for the first record, then linger for more.
		select {
		case r := <-q.ch:
			recs = append(recs, r)
		case <-stop:
			// Drain what is left without waiting.
			for {
				select {
				case r := <-q.ch:
					recs = append(recs, r)
					if len(recs) == p.batch {
						p.deliver(recs)
						recs = recs[:0]
					}
					continue
				default:
				}
				break
			}
			if len(recs) > 0 {
				p.deliver(recs)
			}
			return
		}
		timer.Reset(p.linger)
	fill:
		for len(recs) < p.batch {
			select {
			case r := <-q.ch:
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
		p.deliver(recs)
	}
}

// deliver hands recs to Kafka or the spool, retrying with backoff while
// neither takes them. It gives up only when the producers are cancelled
// (shutdown deadline), counting what it drops. Records return to the pool.
func (p *producer) deliver(recs []*record) {
	d := p.d
	recycle := true
	defer func() {
		if recycle {
			for _, r := range recs {
				putRecord(r)
			}
		}
	}()
	pending := recs
	for attempt := 0; ; attempt++ {
		if p.preferSpool || d.spooling() {
			if p.toSpool(pending) {
				return
			}
			// The spool is full or failing: Kafka is the way left.
		}
		ctx := d.kafkaCtx
		var err error
		pending, err = p.write(ctx, pending)
		if err == nil {
			if d.kafkaDown.Load() {
				d.setKafkaDown(false, nil)
			}
			return
		}
		if ctx.Err() != nil {
			// kafka-go may still send (and read) these buffers.
			recycle = false
		} else {
			d.setKafkaDown(true, err)
		}
		if d.sp != nil && p.toSpool(pending) {
			return
		}
		if d.ctx.Err() != nil || (ctx.Err() != nil && d.sp == nil) {
			p.log.Error("kafka and spool unavailable at shutdown: hits lost", "hits", len(pending), "err", err)
			d.m.dropped.WithLabelValues("shutdown").Add(float64(len(pending)))
			return
		}
		wait := p.backoff(attempt)
		p.log.Warn("kafka write failed, retrying", "messages", len(pending), "attempt", attempt+1, "in", wait, "err", err)
		backoff.Sleep(d.ctx, wait)
	}
}

// write sends recs to Kafka once (the Writer retries internally) and returns
// the records that were not acknowledged.
func (p *producer) write(ctx context.Context, recs []*record) ([]*record, error) {
	if ctx.Err() != nil {
		return recs, ctx.Err()
	}
	msgs := p.msgs[:0]
	for _, r := range recs {
		msgs = append(msgs, kafka.Message{Key: r.key[:], Value: r.buf})
	}
	start := time.Now()
	err := p.d.w.WriteMessages(ctx, msgs...)
	clear(msgs) // drop references for the GC
	if err == nil {
		p.d.m.produced.Add(float64(len(recs)))
		p.d.m.produceLatency.Observe(time.Since(start).Seconds())
		return nil, nil
	}
	p.d.m.produceErrors.Inc()
	var we kafka.WriteErrors
	if errors.As(err, &we) && len(we) == len(recs) {
		kept := make([]*record, 0, len(recs))
		for i, e := range we {
			if e != nil {
				kept = append(kept, recs[i])
			}
		}
		p.d.m.produced.Add(float64(len(recs) - len(kept)))
		if len(kept) == 0 {
			return nil, nil
		}
		return kept, err
	}
	return recs, err
}

// toSpool appends recs to the spool and reports whether it took them.
func (p *producer) toSpool(recs []*record) bool {
	d := p.d
	if d.sp == nil || len(recs) == 0 {
		return len(recs) == 0
	}
	p.buf = p.buf[:0]
	for _, r := range recs {
		p.buf = append(p.buf, r.key[:]...)
		p.buf = append(p.buf, r.buf...)
	}
	p.payload = p.payload[:0]
	off := 0
	for _, r := range recs {
		n := keyLen + len(r.buf)
		p.payload = append(p.payload, p.buf[off:off+n])
		off += n
	}
	err := d.sp.Append(p.payload...)
	if cap(p.buf) > 8<<20 {
		p.buf = nil
	}
	switch {
	case err == nil:
		d.m.spooled.Add(float64(len(recs)))
		d.setSpoolFull(false)
		d.nudge()
		return true
	case errors.Is(err, spool.ErrFull), errors.Is(err, syscall.ENOSPC):
		d.setSpoolFull(true)
	default:
		d.m.spoolErrors.Inc()
		p.log.Error("spool append failed", "hits", len(recs), "err", err)
	}
	return false
}

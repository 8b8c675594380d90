package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/ingest/spool"
	"github.com/jobpixel/jobpixel/internal/backoff"
)

// Writer is what the producers need from Kafka; *kafka.Writer satisfies it.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Delivery: how an accepted hit reaches Kafka.
//
// The in-memory queue is the fast path: producer goroutines take batches
// from it and write them to Kafka. The disk spool (when configured) is the
// slow path, used
//
//   - for the records of a Kafka write that failed,
//   - for every batch while Kafka is down or the spool is not empty (so the
//     spool is replayed in order and producers never wait on a dead broker),
//   - by the spiller, for the records above the queue's high-water mark when
//     Kafka is slow (producers blocked in writes).
//
// One replayer drains the spool, oldest first, into Kafka; a batch leaves the
// spool (Commit) only after Kafka acknowledged all of it, so a crash replays
// it (duplicates the pipeline's event-id window absorbs, never losses). The
// replayer also decides that Kafka is back. Only when the spool is full too
// are hits shed: the queue fills and accept answers queue_full/spool_full.
//
// Shutdown: the producers drain the queue, writing to Kafka until shortly
// before the deadline and to the spool after that or when Kafka fails; the
// replayer stops without committing an unacknowledged batch; the spool is
// closed (fsynced) and replayed by the next process.
type delivery struct {
	sp        *spool.Spool // nil: no spool, failed writes are retried in memory
	highWater int          // queue depth above which the spiller spools

	kafkaDown atomic.Bool
	spoolFull atomic.Bool
	draining  atomic.Bool   // readyz answers 503
	wake      chan struct{} // nudges the replayer

	kafkaCtx     context.Context // Kafka writes; cancelled shortly before the shutdown deadline
	kafkaCancel  context.CancelFunc
	spillCancel  context.CancelFunc
	replayCancel context.CancelFunc
	finishing    atomic.Bool // shutdown: the replayer stops once the spool is empty or Kafka fails
	spillDone    sync.WaitGroup
	replayDone   sync.WaitGroup
}

// Spool record layout: the 16-byte partition key, then the encoded hit.
const keyLen = 16

// startDelivery starts the producers, the spiller and the replayer.
func (s *Server) startDelivery() {
	s.prodCtx, s.prodCancel = context.WithCancel(context.Background())
	s.dl.kafkaCtx, s.dl.kafkaCancel = context.WithCancel(s.prodCtx)
	s.dl.wake = make(chan struct{}, 1)
	for i := 0; i < s.cfg.Producers; i++ {
		p := s.newProducer(false)
		s.producersDone.Add(1)
		go func() {
			defer s.producersDone.Done()
			p.run(s.stopProducers)
		}()
	}
	if s.dl.sp == nil {
		return
	}
	s.q.high = s.dl.highWater
	spillCtx, spillCancel := context.WithCancel(context.Background())
	s.dl.spillCancel = spillCancel
	s.dl.spillDone.Add(1)
	go func() {
		defer s.dl.spillDone.Done()
		s.spill(spillCtx)
	}()
	// The replayer's writes end with the Kafka deadline of a shutdown.
	replayCtx, replayCancel := context.WithCancel(s.dl.kafkaCtx)
	s.dl.replayCancel = replayCancel
	s.dl.replayDone.Add(1)
	go func() {
		defer s.dl.replayDone.Done()
		s.replay(replayCtx)
	}()
}

// stopDelivery flushes the queue to Kafka or the spool within ctx's
// deadline and closes the spool. The HTTP server has stopped already.
func (s *Server) stopDelivery(ctx context.Context) error {
	if s.prodCtx == nil { // never started
		if s.dl.sp != nil {
			return s.dl.sp.Close()
		}
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		// Leave time to spool what Kafka does not take.
		reserve := min(2*time.Second, time.Until(dl)/4)
		if s.dl.sp == nil {
			reserve = 0
		}
		stopKafka := time.AfterFunc(time.Until(dl)-reserve, s.dl.kafkaCancel)
		defer stopKafka.Stop()
	}
	close(s.stopProducers)
	if s.dl.spillCancel != nil {
		// The producers drain the queue; the spiller is not needed.
		s.dl.spillCancel()
		s.dl.spillDone.Wait()
	}
	done := make(chan struct{})
	go func() { s.producersDone.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.prodCancel() // producers give up what they hold and count it
		<-done
		err = errors.New("ingest: shutdown: the queue was not flushed in time")
	}
	// A request that raced the stop may have queued a hit after the
	// producers left.
	if s.q.len() > 0 {
		p := s.newProducer(false)
		for s.q.len() > 0 {
			recs := p.recs[:0]
			for len(recs) < p.batch && s.q.len() > 0 {
				recs = append(recs, <-s.q.ch)
			}
			p.deliver(recs)
		}
	}
	if s.dl.replayCancel != nil {
		// With Kafka up, the replayer empties the spool while the deadline
		// allows (so a replica that never returns leaves nothing behind);
		// with Kafka down it stops at once and the spool waits for the
		// next start.
		s.dl.finishing.Store(true)
		if s.dl.kafkaDown.Load() {
			s.dl.replayCancel()
		}
		s.nudge()
		s.dl.replayDone.Wait()
		s.dl.replayCancel()
	}
	s.prodCancel()
	if s.dl.sp != nil {
		if cerr := s.dl.sp.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if p := s.dl.sp.Pending(); p > 0 {
			s.deps.Log.Info("spool keeps hits for the next start", "bytes", p)
		}
	}
	return err
}

// spooling reports whether new batches go to the spool rather than Kafka.
func (d *delivery) spooling() bool {
	return d.sp != nil && (d.kafkaDown.Load() || !d.sp.Empty())
}

// readiness says whether the load balancer should send hits here, and why not.
func (s *Server) readiness() (bool, string) {
	switch {
	case s.dl.draining.Load() || !s.ready.Load():
		return false, "shutting down"
	case s.dl.kafkaDown.Load() && s.dl.sp != nil:
		return false, "kafka unavailable; hits go to the spool"
	case s.dl.kafkaDown.Load():
		return false, "kafka unavailable"
	case s.dl.sp != nil && !s.dl.sp.Empty():
		return false, "replaying the spool"
	}
	return true, ""
}

// shedReason is the reject reason when the queue has no room.
func (s *Server) shedReason() string {
	if s.dl.spoolFull.Load() {
		return reasonSpoolFull
	}
	return reasonQueueFull
}

func (s *Server) setKafkaDown(down bool, err error) {
	if s.dl.kafkaDown.Swap(down) == down {
		return
	}
	if down {
		s.m.kafkaUp.Set(0)
		if s.dl.sp != nil {
			s.deps.Log.Warn("kafka unavailable: spooling hits to disk", "err", err)
		}
		s.nudge()
	} else {
		s.m.kafkaUp.Set(1)
		s.deps.Log.Info("kafka available again")
	}
}

func (s *Server) setSpoolFull(full bool) {
	if s.dl.spoolFull.Swap(full) == full {
		return
	}
	if full {
		s.deps.Log.Error("spool full: hits are shed once the queue is full", "bytes", s.dl.sp.Bytes(), "max", s.dl.sp.MaxBytes())
	} else {
		s.deps.Log.Info("spool has room again")
	}
}

func (s *Server) nudge() {
	select {
	case s.dl.wake <- struct{}{}:
	default:
	}
}

// producer drains the queue into Kafka (or the spool) in batches.
type producer struct {
	s       *Server
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

func (s *Server) newProducer(preferSpool bool) *producer {
	return &producer{s: s, batch: s.cfg.BatchSize, linger: s.cfg.Linger, log: s.deps.Log,
		backoff: expBackoff, preferSpool: preferSpool,
		recs: make([]*record, 0, s.cfg.BatchSize), msgs: make([]kafka.Message, 0, s.cfg.BatchSize)}
}

// run consumes the queue until stop is closed and the queue is empty.
func (p *producer) run(stop <-chan struct{}) {
	q := p.s.q
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
	s := p.s
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
		if p.preferSpool || s.dl.spooling() {
			if p.toSpool(pending) {
				return
			}
			// The spool is full or failing: Kafka is the way left.
		}
		ctx := s.dl.kafkaCtx
		var err error
		pending, err = p.write(ctx, pending)
		if err == nil {
			if s.dl.kafkaDown.Load() {
				s.setKafkaDown(false, nil)
			}
			return
		}
		if ctx.Err() != nil {
			// kafka-go may still send (and read) these buffers.
			recycle = false
		} else {
			s.setKafkaDown(true, err)
		}
		if s.dl.sp != nil && p.toSpool(pending) {
			return
		}
		if s.prodCtx.Err() != nil || (ctx.Err() != nil && s.dl.sp == nil) {
			p.log.Error("kafka and spool unavailable at shutdown: hits lost", "hits", len(pending), "err", err)
			s.m.dropped.WithLabelValues("shutdown").Add(float64(len(pending)))
			return
		}
		d := p.backoff(attempt)
		p.log.Warn("kafka write failed, retrying", "messages", len(pending), "attempt", attempt+1, "in", d, "err", err)
		backoff.Sleep(s.prodCtx, d)
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
	err := p.s.deps.Writer.WriteMessages(ctx, msgs...)
	clear(msgs) // drop references for the GC
	if err == nil {
		p.s.m.produced.Add(float64(len(recs)))
		p.s.m.produceLatency.Observe(time.Since(start).Seconds())
		return nil, nil
	}
	p.s.m.produceErrors.Inc()
	var we kafka.WriteErrors
	if errors.As(err, &we) && len(we) == len(recs) {
		kept := make([]*record, 0, len(recs))
		for i, e := range we {
			if e != nil {
				kept = append(kept, recs[i])
			}
		}
		p.s.m.produced.Add(float64(len(recs) - len(kept)))
		if len(kept) == 0 {
			return nil, nil
		}
		return kept, err
	}
	return recs, err
}

// toSpool appends recs to the spool and reports whether it took them.
func (p *producer) toSpool(recs []*record) bool {
	s := p.s
	if s.dl.sp == nil || len(recs) == 0 {
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
	err := s.dl.sp.Append(p.payload...)
	if cap(p.buf) > 8<<20 {
		p.buf = nil
	}
	switch {
	case err == nil:
		s.m.spooled.Add(float64(len(recs)))
		s.setSpoolFull(false)
		s.nudge()
		return true
	case errors.Is(err, spool.ErrFull), errors.Is(err, syscall.ENOSPC):
		s.setSpoolFull(true)
	default:
		s.m.spoolErrors.Inc()
		p.log.Error("spool append failed", "hits", len(recs), "err", err)
	}
	return false
}

// spill keeps the queue under its high-water mark while the producers are
// stuck in Kafka writes, moving the excess to the spool.
func (s *Server) spill(ctx context.Context) {
	p := s.newProducer(true)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	low := s.dl.highWater / 2
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.q.over:
		case <-t.C:
		}
		if s.q.len() <= s.dl.highWater {
			continue
		}
		for s.q.len() > low && ctx.Err() == nil {
			recs := p.recs[:0]
		take:
			for len(recs) < p.batch {
				select {
				case r := <-s.q.ch:
					recs = append(recs, r)
				default:
					break take
				}
			}
			if len(recs) == 0 {
				break
			}
			p.deliver(recs)
		}
	}
}

// replay drains the spool into Kafka, oldest first, until ctx ends. While
// the spool is empty and Kafka is marked down it probes Kafka.
func (s *Server) replay(ctx context.Context) {
	sp := s.dl.sp
	var msgs []kafka.Message
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for attempt := 0; ctx.Err() == nil; {
		if sp.Empty() && s.dl.finishing.Load() {
			return
		}
		if sp.Empty() {
			if s.dl.kafkaDown.Load() && s.deps.KafkaProbe != nil {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := s.deps.KafkaProbe(pctx)
				cancel()
				if err == nil {
					s.setKafkaDown(false, nil)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-s.dl.wake:
			case <-idle.C: // probe again
			}
			continue
		}
		b, err := sp.Peek(5000, 4<<20)
		if err != nil {
			s.m.spoolErrors.Inc()
			s.deps.Log.Error("reading the spool failed", "err", err)
			backoff.Sleep(ctx, expBackoff(attempt))
			attempt++
			continue
		}
		msgs = msgs[:0]
		for _, r := range b.Records {
			if len(r) <= keyLen {
				s.m.spoolCorrupt.Inc()
				s.deps.Log.Error("dropping a spooled record too short to be a hit", "bytes", len(r))
				continue
			}
			msgs = append(msgs, kafka.Message{Key: r[:keyLen], Value: r[keyLen:]})
		}
		start := time.Now()
		for len(msgs) > 0 {
			err := s.deps.Writer.WriteMessages(ctx, msgs...)
			if err == nil {
				s.m.produced.Add(float64(len(msgs)))
				s.m.replayed.Add(float64(len(msgs)))
				s.m.produceLatency.Observe(time.Since(start).Seconds())
				break
			}
			s.m.produceErrors.Inc()
			if ctx.Err() != nil {
				return // not committed: replayed by the next process
			}
			var we kafka.WriteErrors
			if errors.As(err, &we) && len(we) == len(msgs) {
				kept, rejected := msgs[:0], 0
				for i, e := range we {
					switch {
					case e == nil:
					case permanent(e):
						rejected++ // retrying cannot help; do not block the spool
					default:
						kept = append(kept, msgs[i])
					}
				}
				if rejected > 0 {
					s.deps.Log.Error("kafka rejected spooled hits for good: dropped", "hits", rejected, "err", err)
					s.m.dropped.WithLabelValues("kafka_rejected").Add(float64(rejected))
				}
				s.m.produced.Add(float64(len(msgs) - len(kept) - rejected))
				s.m.replayed.Add(float64(len(msgs) - len(kept) - rejected))
				msgs = kept
				if len(msgs) == 0 {
					break
				}
			}
			s.setKafkaDown(true, err)
			if s.dl.finishing.Load() {
				return // shutting down: the spool keeps the batch
			}
			d := expBackoff(attempt)
			attempt++
			s.deps.Log.Warn("replaying the spool to kafka failed, retrying", "messages", len(msgs), "in", d, "err", err)
			backoff.Sleep(ctx, d)
			if ctx.Err() != nil {
				return
			}
		}
		attempt = 0
		if err := sp.Commit(b); err != nil {
			s.m.spoolErrors.Inc()
			s.deps.Log.Error("committing the spool position failed (hits will be replayed again)", "err", err)
		}
		s.setKafkaDown(false, nil)
		s.setSpoolFull(false)
	}
}

// permanent reports whether Kafka refused a message for what it is (too
// large, corrupt), so that no retry can succeed. Errors about the cluster
// (leaders, topics, authorization) are not: they heal or need an operator.
func permanent(err error) bool {
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.InvalidMessage) ||
		errors.Is(err, kafka.InvalidMessageSize)
}

// expBackoff is the wait after failed attempt number attempt (from 0) of a
// Kafka write, a spool read or a replay: 100 ms, doubled up to 5 s.
var expBackoff = backoff.Exp{Base: 100 * time.Millisecond, Max: 5 * time.Second}.Delay

// openSpool creates the delivery metrics and opens the spool, if any.
func (s *Server) openSpool(reg prometheus.Registerer) error {
	m := &s.m.deliveryMetrics
	m.spooled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobpixel_ingest_spooled_total", Help: "Hits written to the disk spool (Kafka down or slow).",
	})
	m.replayed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobpixel_ingest_replayed_total", Help: "Spooled hits acknowledged by Kafka.",
	})
	m.spoolErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobpixel_ingest_spool_errors_total", Help: "Spool I/O errors (appends, reads, position writes).",
	})
	m.spoolCorrupt = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobpixel_ingest_spool_corrupt_total", Help: "Damaged spool regions (torn tails, checksum errors) skipped.",
	})
	m.kafkaUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "jobpixel_ingest_kafka_up", Help: "1 while Kafka takes writes, 0 while hits are spooled because it does not.",
	})
	m.kafkaUp.Set(1)
	s.dl.highWater = s.cfg.SpoolHighWater
	if reg != nil {
		reg.MustRegister(m.spooled, m.replayed, m.spoolErrors, m.spoolCorrupt, m.kafkaUp)
	}
	if s.cfg.SpoolDir == "" {
		return nil
	}
	corruptBytes := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobpixel_ingest_spool_corrupt_bytes_total", Help: "Bytes of damaged spool data skipped (hits lost).",
	})
	sp, err := spool.Open(spool.Options{Dir: s.cfg.SpoolDir, MaxBytes: s.cfg.SpoolMaxBytes, Log: s.deps.Log,
		OnCorrupt: func(c spool.Corruption) {
			m.spoolCorrupt.Inc()
			corruptBytes.Add(float64(c.Bytes))
		}})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	s.dl.sp = sp
	if reg != nil {
		reg.MustRegister(corruptBytes,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "jobpixel_ingest_spool_bytes", Help: "Bytes of the disk spool's files.",
			}, func() float64 { return float64(sp.Bytes()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "jobpixel_ingest_spool_pending_bytes", Help: "Bytes of spooled hits not yet acknowledged by Kafka.",
			}, func() float64 { return float64(sp.Pending()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "jobpixel_ingest_spool_max_bytes", Help: "Capacity of the disk spool.",
			}, func() float64 { return float64(sp.MaxBytes()) }))
	}
	return nil
}

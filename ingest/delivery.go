package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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

// delivery is how an accepted hit reaches Kafka. The Server uses it through
// start, offer (with room and shedReason for the answer), health and stop;
// everything behind those calls is delivery's own.
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
// are hits shed: the queue fills and offer fails, answered with
// queue_full/spool_full.
//
// Shutdown (stop): the producers drain the queue, writing to Kafka until
// shortly before the deadline and to the spool after that or when Kafka
// fails; the replayer stops without committing an unacknowledged batch; the
// spool is closed (fsynced) and replayed by the next process.
type delivery struct {
	w         Writer
	probe     func(ctx context.Context) error // may be nil
	log       *slog.Logger
	m         *deliveryMetrics
	producers int
	batch     int
	linger    time.Duration

	q         *queue
	sp        *spool.Spool // nil: no spool, failed writes are retried in memory
	highWater int          // queue depth above which the spiller spools

	kafkaDown atomic.Bool
	spoolFull atomic.Bool
	wake      chan struct{} // nudges the replayer

	ctx           context.Context // the producers'; cancelled when stop's deadline passes
	cancel        context.CancelFunc
	kafkaCtx      context.Context // Kafka writes; cancelled shortly before the shutdown deadline
	kafkaCancel   context.CancelFunc
	stopProducers chan struct{}
	producersDone sync.WaitGroup
	spillCancel   context.CancelFunc
	replayCancel  context.CancelFunc
	finishing     atomic.Bool // shutdown: the replayer stops once the spool is empty or Kafka fails
	spillDone     sync.WaitGroup
	replayDone    sync.WaitGroup
}

// Spool record layout: the 16-byte partition key, then the encoded hit.
const keyLen = 16

// newDelivery creates the queue, the delivery metrics (registered on reg
// when it is not nil) and opens the spool, if cfg names one. Nothing runs
// before start.
func newDelivery(cfg *Config, deps *Deps, reg prometheus.Registerer) (*delivery, error) {
	d := &delivery{
		w: deps.Writer, probe: deps.KafkaProbe, log: deps.Log,
		producers: cfg.Producers, batch: cfg.BatchSize, linger: cfg.Linger,
		q: newQueue(cfg.QueueSize), highWater: cfg.SpoolHighWater,
		wake: make(chan struct{}, 1), stopProducers: make(chan struct{}),
	}
	d.m = newDeliveryMetrics(reg, func() float64 { return float64(d.q.len()) })
	if cfg.SpoolDir == "" {
		return d, nil
	}
	corruptBytes := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "jobpixel_ingest_spool_corrupt_bytes_total", Help: "Bytes of damaged spool data skipped (hits lost).",
	})
	sp, err := spool.Open(spool.Options{Dir: cfg.SpoolDir, MaxBytes: cfg.SpoolMaxBytes, Log: deps.Log,
		OnCorrupt: func(c spool.Corruption) {
			d.m.spoolCorrupt.Inc()
			corruptBytes.Add(float64(c.Bytes))
		}})
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	d.sp = sp
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
	return d, nil
}

// offer enqueues r without blocking and reports whether it was taken; on
// false the caller still owns r. It does not allocate.
func (d *delivery) offer(r *record) bool { return d.q.offer(r) }

// room returns how many records offer would take right now.
func (d *delivery) room() int { return d.q.free() }

// start runs the producers, the spiller and the replayer.
func (d *delivery) start() {
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.kafkaCtx, d.kafkaCancel = context.WithCancel(d.ctx)
	for i := 0; i < d.producers; i++ {
		p := d.newProducer(false)
		d.producersDone.Add(1)
		go func() {
			defer d.producersDone.Done()
			p.run(d.stopProducers)
		}()
	}
	if d.sp == nil {
		return
	}
	d.q.high = d.highWater
	spillCtx, spillCancel := context.WithCancel(context.Background())
	d.spillCancel = spillCancel
	d.spillDone.Add(1)
	go func() {
		defer d.spillDone.Done()
		d.spill(spillCtx)
	}()
	// The replayer's writes end with the Kafka deadline of a shutdown.
	replayCtx, replayCancel := context.WithCancel(d.kafkaCtx)
	d.replayCancel = replayCancel
	d.replayDone.Add(1)
	go func() {
		defer d.replayDone.Done()
		d.replay(replayCtx)
	}()
}

// stop flushes the queue to Kafka or the spool within ctx's deadline and
// closes the spool. Nobody may offer once it is called (the HTTP server has
// stopped); a record that raced the stop is still delivered.
func (d *delivery) stop(ctx context.Context) error {
	if d.ctx == nil { // never started
		if d.sp != nil {
			return d.sp.Close()
		}
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		// Leave time to spool what Kafka does not take.
		reserve := min(2*time.Second, time.Until(dl)/4)
		if d.sp == nil {
			reserve = 0
		}
		stopKafka := time.AfterFunc(time.Until(dl)-reserve, d.kafkaCancel)
		defer stopKafka.Stop()
	}
	close(d.stopProducers)
	if d.spillCancel != nil {
		// The producers drain the queue; the spiller is not needed.
		d.spillCancel()
		d.spillDone.Wait()
	}
	done := make(chan struct{})
	go func() { d.producersDone.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		d.cancel() // producers give up what they hold and count it
		<-done
		err = errors.New("ingest: shutdown: the queue was not flushed in time")
	}
	// A request that raced the stop may have queued a hit after the
	// producers left.
	if d.q.len() > 0 {
		p := d.newProducer(false)
		for d.q.len() > 0 {
			recs := p.recs[:0]
			for len(recs) < p.batch && d.q.len() > 0 {
				recs = append(recs, <-d.q.ch)
			}
			p.deliver(recs)
		}
	}
	if d.replayCancel != nil {
		// With Kafka up, the replayer empties the spool while the deadline
		// allows (so a replica that never returns leaves nothing behind);
		// with Kafka down it stops at once and the spool waits for the
		// next start.
		d.finishing.Store(true)
		if d.kafkaDown.Load() {
			d.replayCancel()
		}
		d.nudge()
		d.replayDone.Wait()
		d.replayCancel()
	}
	d.cancel()
	if d.sp != nil {
		if cerr := d.sp.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if p := d.sp.Pending(); p > 0 {
			d.log.Info("spool keeps hits for the next start", "bytes", p)
		}
	}
	return err
}

// spooling reports whether new batches go to the spool rather than Kafka.
func (d *delivery) spooling() bool {
	return d.sp != nil && (d.kafkaDown.Load() || !d.sp.Empty())
}

// health says whether hits reach Kafka on the fast path, and why not.
func (d *delivery) health() (bool, string) {
	switch {
	case d.kafkaDown.Load() && d.sp != nil:
		return false, "kafka unavailable; hits go to the spool"
	case d.kafkaDown.Load():
		return false, "kafka unavailable"
	case d.sp != nil && !d.sp.Empty():
		return false, "replaying the spool"
	}
	return true, ""
}

// shedReason is the reject reason when offer fails.
func (d *delivery) shedReason() string {
	if d.spoolFull.Load() {
		return reasonSpoolFull
	}
	return reasonQueueFull
}

func (d *delivery) setKafkaDown(down bool, err error) {
	if d.kafkaDown.Swap(down) == down {
		return
	}
	if down {
		d.m.kafkaUp.Set(0)
		if d.sp != nil {
			d.log.Warn("kafka unavailable: spooling hits to disk", "err", err)
		}
		d.nudge()
	} else {
		d.m.kafkaUp.Set(1)
		d.log.Info("kafka available again")
	}
}

func (d *delivery) setSpoolFull(full bool) {
	if d.spoolFull.Swap(full) == full {
		return
	}
	if full {
		d.log.Error("spool full: hits are shed once the queue is full", "bytes", d.sp.Bytes(), "max", d.sp.MaxBytes())
	} else {
		d.log.Info("spool has room again")
	}
}

func (d *delivery) nudge() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// spill keeps the queue under its high-water mark while the producers are
// stuck in Kafka writes, moving the excess to the spool.
func (d *delivery) spill(ctx context.Context) {
	p := d.newProducer(true)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	low := d.highWater / 2
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.q.over:
		case <-t.C:
		}
		if d.q.len() <= d.highWater {
			continue
		}
		for d.q.len() > low && ctx.Err() == nil {
			recs := p.recs[:0]
		take:
			for len(recs) < p.batch {
				select {
				case r := <-d.q.ch:
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
func (d *delivery) replay(ctx context.Context) {
	sp := d.sp
	var msgs []kafka.Message
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for attempt := 0; ctx.Err() == nil; {
		if sp.Empty() {
			if d.finishing.Load() {
				return
			}
			d.idle(ctx, idle.C)
			continue
		}
		b, err := sp.Peek(5000, 4<<20)
		if err != nil {
			d.m.spoolErrors.Inc()
			d.log.Error("reading the spool failed", "err", err)
			backoff.Sleep(ctx, expBackoff(attempt))
			attempt++
			continue
		}
		attempt = 0
		msgs = msgs[:0]
		for _, r := range b.Records {
			if len(r) <= keyLen {
				d.m.spoolCorrupt.Inc()
				d.log.Error("dropping a spooled record too short to be a hit", "bytes", len(r))
				continue
			}
			msgs = append(msgs, kafka.Message{Key: r[:keyLen], Value: r[keyLen:]})
		}
		if !d.replayBatch(ctx, msgs) {
			return // not committed: replayed by the next process
		}
		if err := sp.Commit(b); err != nil {
			d.m.spoolErrors.Inc()
			d.log.Error("committing the spool position failed (hits will be replayed again)", "err", err)
		}
		d.setKafkaDown(false, nil)
		d.setSpoolFull(false)
	}
}

// idle waits, with the spool empty, for a nudge or the next tick; while
// Kafka is marked down it probes Kafka first, marking it up if it answers.
func (d *delivery) idle(ctx context.Context, tick <-chan time.Time) {
	if d.kafkaDown.Load() && d.probe != nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := d.probe(pctx)
		cancel()
		if err == nil {
			d.setKafkaDown(false, nil)
		}
	}
	select {
	case <-ctx.Done():
	case <-d.wake:
	case <-tick: // probe again
	}
}

// replayBatch writes one spooled batch to Kafka, retrying with backoff
// what Kafka did not acknowledge, and reports whether all of it is done
// with (acknowledged, or refused for good and counted as dropped). It
// returns false, leaving the batch in the spool, when ctx ends or a
// shutdown finds Kafka failing.
func (d *delivery) replayBatch(ctx context.Context, msgs []kafka.Message) bool {
	start := time.Now()
	for attempt := 0; len(msgs) > 0; attempt++ {
		err := d.w.WriteMessages(ctx, msgs...)
		if err == nil {
			d.m.produced.Add(float64(len(msgs)))
			d.m.replayed.Add(float64(len(msgs)))
			d.m.produceLatency.Observe(time.Since(start).Seconds())
			return true
		}
		d.m.produceErrors.Inc()
		if ctx.Err() != nil {
			return false
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
				d.log.Error("kafka rejected spooled hits for good: dropped", "hits", rejected, "err", err)
				d.m.dropped.WithLabelValues("kafka_rejected").Add(float64(rejected))
			}
			d.m.produced.Add(float64(len(msgs) - len(kept) - rejected))
			d.m.replayed.Add(float64(len(msgs) - len(kept) - rejected))
			msgs = kept
			if len(msgs) == 0 {
				return true
			}
		}
		d.setKafkaDown(true, err)
		if d.finishing.Load() {
			return false // shutting down: the spool keeps the batch
		}
		wait := expBackoff(attempt)
		d.log.Warn("replaying the spool to kafka failed, retrying", "messages", len(msgs), "in", wait, "err", err)
		backoff.Sleep(ctx, wait)
		if ctx.Err() != nil {
			return false
		}
	}
	return true
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

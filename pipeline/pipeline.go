// Package pipeline consumes hits from Kafka, anonymises them and writes them
// to ClickHouse exactly once.
//
// Exactly once: every stored row records its Kafka partition and offset.
// When a partition is assigned, the pipeline loads which offsets at or after
// the committed offset are already stored (a crash between insert and commit
// leaves such a window) and skips them, and loads the event ids of the most
// recent rows so a message the producer wrote twice is stored once. Offsets
// are committed only after the insert succeeded. Inserts hold the rows of a
// single Kafka partition, so each insert is one atomic block.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// Config configures a pipeline replica.
type Config struct {
	Brokers []string
	Topic   string
	Group   string
	// BatchSize is the most rows per insert (default 50,000); FlushInterval
	// the longest a row waits for its insert (default 500 ms).
	BatchSize     int
	FlushInterval time.Duration
	// IPv4Bits and IPv6Bits are the prefix lengths kept (default 24 and 48;
	// never more).
	IPv4Bits, IPv6Bits int
	// DedupWindow is how many recent event ids per partition are remembered
	// to drop messages the producer wrote twice (default 200,000).
	DedupWindow int
}

// Sink is where rows go; *store.Store implements it.
type Sink interface {
	InsertEvents(ctx context.Context, rows []store.Event) error
	Window(ctx context.Context, partition int, from int64, idWindow int64) (store.StoredWindow, error)
}

// Pipeline is one consumer-group member.
type Pipeline struct {
	cfg  Config
	sink Sink
	log  *slog.Logger
	m    *metrics
}

// New validates cfg and returns a pipeline.
func New(cfg Config, sink Sink, log *slog.Logger, reg prometheus.Registerer) (*Pipeline, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("pipeline: brokers, topic and group are required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50_000
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 500 * time.Millisecond
	}
	if cfg.IPv4Bits == 0 {
		cfg.IPv4Bits = 24
	}
	if cfg.IPv6Bits == 0 {
		cfg.IPv6Bits = 48
	}
	if cfg.IPv4Bits > 24 || cfg.IPv6Bits > 48 || cfg.IPv4Bits < 0 || cfg.IPv6Bits < 0 {
		return nil, fmt.Errorf("pipeline: IP truncation /%d (v4) /%d (v6) is weaker than the minimum /24 and /48", cfg.IPv4Bits, cfg.IPv6Bits)
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = 200_000
	}
	return &Pipeline{cfg: cfg, sink: sink, log: log, m: newMetrics(reg)}, nil
}

// Run consumes until ctx ends. Pending rows are inserted and committed
// before it returns.
func (p *Pipeline) Run(ctx context.Context) error {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                p.cfg.Group,
		Brokers:           p.cfg.Brokers,
		Topics:            []string{p.cfg.Topic},
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  time.Second,
	})
	if err != nil {
		return fmt.Errorf("pipeline: consumer group: %w", err)
	}
	defer group.Close()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.m.kafkaErrors.Inc()
			p.log.Warn("joining consumer group failed, retrying", "err", err)
			select {
			case <-time.After(time.Second):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		assigned := gen.Assignments[p.cfg.Topic]
		p.log.Info("consumer group generation", "generation", gen.ID, "partitions", len(assigned))
		var wg sync.WaitGroup
		for _, a := range assigned {
			wg.Add(1)
			gen.Start(func(genCtx context.Context) {
				defer wg.Done()
				p.consume(ctx, genCtx, gen, a.ID, a.Offset)
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// partition is the state of one assigned partition.
type partition struct {
	id      int
	window  store.StoredWindow
	seen    *idSet
	rows    []store.Event
	last    int64 // highest offset taken into rows or skipped
	pending bool  // last moved since the previous commit
}

func (p *Pipeline) consume(ctx, genCtx context.Context, gen *kafka.Generation, id int, committed int64) {
	// Stop on shutdown or on the end of the generation, whichever is first.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-genCtx.Done():
			cancel()
		case <-runCtx.Done():
		}
	}()
	st := &partition{id: id, seen: newIDSet(p.cfg.DedupWindow), last: -1}
	from := committed
	if from < 0 {
		from = 0
	}
	// Learn what is already stored; retry until ClickHouse answers.
	for attempt := 0; ; attempt++ {
		w, err := p.sink.Window(runCtx, id, from, int64(p.cfg.DedupWindow))
		if err == nil {
			st.window = w
			break
		}
		if runCtx.Err() != nil {
			return
		}
		p.m.insertErrors.Inc()
		p.log.Warn("reading stored offsets failed, retrying", "partition", id, "err", err)
		sleep(runCtx, backoff(attempt))
	}
	for _, eid := range st.window.IDs {
		st.seen.add(eid)
	}
	for _, ce := range st.window.ClientEvents {
		st.seen.add(clientKey([]byte(ce.Campaign), []byte(ce.EventID)))
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   p.cfg.Brokers,
		Topic:     p.cfg.Topic,
		Partition: id,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   100 * time.Millisecond,
		// Stay well inside the flush interval.
		ReadBatchTimeout: 2 * time.Second,
	})
	defer r.Close()
	start := committed
	if start < 0 {
		start = kafka.FirstOffset
	}
	if err := r.SetOffset(start); err != nil {
		p.log.Error("set offset", "partition", id, "offset", start, "err", err)
		return
	}
	p.log.Info("consuming partition", "partition", id, "from", start, "stored_max", st.window.Max, "stored_window", len(st.window.Offsets))
	lag := p.m.lag.WithLabelValues(strconv.Itoa(id))
	for {
		// One deadline per flush window (not per message): a row waits at
		// most FlushInterval for its insert.
		fetchCtx, fcancel := context.WithTimeout(runCtx, p.cfg.FlushInterval)
		for len(st.rows) < p.cfg.BatchSize {
			msg, err := r.FetchMessage(fetchCtx)
			if err != nil {
				if fetchCtx.Err() != nil {
					break // window over, or shutdown
				}
				p.m.kafkaErrors.Inc()
				p.log.Warn("kafka fetch failed", "partition", id, "err", err)
				sleep(fetchCtx, 500*time.Millisecond)
				continue
			}
			p.take(st, &msg)
		}
		fcancel()
		// Flush on a full batch, at the end of the window and on shutdown.
		if st.pending || len(st.rows) > 0 {
			if !p.flush(ctx, runCtx, gen, st) {
				return
			}
		}
		if runCtx.Err() != nil {
			return
		}
		lag.Set(float64(r.Lag()))
	}
}

// take turns one message into a row, unless it is already stored.
func (p *Pipeline) take(st *partition, msg *kafka.Message) {
	p.m.consumed.Inc()
	st.last = msg.Offset
	st.pending = true
	if st.window.Offsets != nil {
		if _, ok := st.window.Offsets[msg.Offset]; ok {
			p.m.skipped.WithLabelValues("stored_offset").Inc()
			return
		}
	} else if msg.Offset <= st.window.Max {
		p.m.skipped.WithLabelValues("stored_offset").Inc()
		return
	}
	var h schemas.Hit
	if err := h.Decode(msg.Value); err != nil {
		p.m.skipped.WithLabelValues("undecodable").Inc()
		p.log.Error("dropping undecodable message", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return
	}
	if st.seen.has(h.ID) {
		p.m.skipped.WithLabelValues("duplicate_id").Inc()
		return
	}
	if len(h.ClientEventID) > 0 {
		// A page that sent the same event twice (a retried beacon, a
		// retried batch): the same visitor lands on the same partition.
		k := clientKey(h.Campaign, h.ClientEventID)
		if st.seen.has(k) {
			p.m.skipped.WithLabelValues("duplicate_client_event_id").Inc()
			return
		}
		st.seen.add(k)
	}
	st.seen.add(h.ID)
	st.rows = append(st.rows, p.row(&h, msg))
}

// row anonymises a hit into its stored form.
func (p *Pipeline) row(h *schemas.Hit, msg *kafka.Message) store.Event {
	ip := netip.AddrFrom16(h.IP).Unmap()
	ip = anonymize.IP(ip, p.cfg.IPv4Bits, p.cfg.IPv6Bits)
	return store.Event{
		Received:       time.UnixMilli(h.ReceivedMs).UTC(),
		ID:             h.ID,
		ClientEventID:  string(h.ClientEventID),
		ClientID:       string(h.Client),
		CampaignID:     string(h.Campaign),
		Event:          h.Event.String(),
		Vacancy:        string(h.Vacancy),
		URL:            string(h.URL),
		Referrer:       string(h.Referrer),
		Source:         Source(h.UTMSource, h.URL, h.Referrer),
		UTMSource:      string(h.UTMSource),
		UTMMedium:      string(h.UTMMedium),
		UTMCampaign:    string(h.UTMCampaign),
		Visitor:        h.Visitor,
		IP:             ip.As16(),
		Country:        h.Country,
		Region:         string(h.Region),
		Browser:        h.Browser,
		OS:             h.OS,
		Device:         h.Device,
		Bot:            h.Flags&schemas.FlagBot != 0,
		Consent:        h.Consent,
		KafkaPartition: int32(msg.Partition),
		KafkaOffset:    msg.Offset,
	}
}

// flush inserts the pending rows (retrying with backoff while ClickHouse is
// unavailable) and then commits. It returns false if the partition must
// stop: shutdown or lost generation.
func (p *Pipeline) flush(ctx, runCtx context.Context, gen *kafka.Generation, st *partition) bool {
	if len(st.rows) > 0 {
		for attempt := 0; ; attempt++ {
			// On shutdown, give the last insert a bounded grace period.
			insCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			start := time.Now()
			err := p.sink.InsertEvents(insCtx, st.rows)
			cancel()
			if err == nil {
				p.m.inserted.Add(float64(len(st.rows)))
				p.m.insertLatency.Observe(time.Since(start).Seconds())
				break
			}
			p.m.insertErrors.Inc()
			p.log.Warn("insert failed; holding the partition and retrying", "partition", st.id, "rows", len(st.rows), "attempt", attempt+1, "err", err)
			if runCtx.Err() != nil {
				// Not committed: redelivered to the next owner, whose
				// stored window covers what the failed insert may have
				// stored.
				return false
			}
			sleep(runCtx, backoff(attempt))
			// Retry only what is not stored: a failed insert may have been
			// applied.
			if !p.dropStored(runCtx, st) {
				return false
			}
			if len(st.rows) == 0 {
				break
			}
		}
		st.rows = st.rows[:0] // their ids were added to st.seen by take
	}
	if st.pending {
		err := gen.CommitOffsets(map[string]map[int]int64{p.cfg.Topic: {st.id: st.last + 1}})
		if err != nil {
			// Stored but not committed: the stored window covers it.
			p.m.kafkaErrors.Inc()
			p.log.Warn("commit failed", "partition", st.id, "offset", st.last+1, "err", err)
			return runCtx.Err() == nil
		}
		st.pending = false
	}
	return true
}

func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 5)
	return min(d, 5*time.Second)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

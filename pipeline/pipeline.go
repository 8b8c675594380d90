// Package pipeline consumes hits from Kafka, anonymises them and writes them
// to ClickHouse exactly once.
//
// Exactly once: every stored row records its Kafka partition and offset.
// When a partition is assigned, the pipeline loads which offsets at or after
// the committed offset are already stored (a crash between insert and commit
// leaves such a window) and skips them, and loads the event ids of the most
// recent rows so a message the producer wrote twice is stored once. Offsets
// are committed only after the insert succeeded. Inserts hold the rows of a
// single Kafka partition, so each insert is one atomic block. The group
// membership (generations, a goroutine per partition, commits) is
// internal/group's.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/internal/backoff"
	"github.com/jobpixel/jobpixel/internal/group"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// Config configures a pipeline replica.
type Config struct {
	Brokers []string
	Topic   string
	Group   string
	// Dialer connects to the brokers (see group.Config.Dialer); nil dials
	// in plain text.
	Dialer *kafka.Dialer
	// BatchSize is the most rows per insert (default 50,000); FlushInterval
	// the longest a row waits for its insert (default 500 ms).
	BatchSize     int
	FlushInterval time.Duration
	// Truncation is applied to every stored address (the zero value keeps
	// /24 and /48, the most it can).
	Truncation anonymize.Truncator
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
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = 200_000
	}
	return &Pipeline{cfg: cfg, sink: sink, log: log, m: newMetrics(reg)}, nil
}

// Run consumes until ctx ends. Pending rows are inserted and committed
// before it returns.
func (p *Pipeline) Run(ctx context.Context) error {
	err := group.Run(ctx, group.Config{
		Brokers: p.cfg.Brokers, Topic: p.cfg.Topic, Group: p.cfg.Group, Dialer: p.cfg.Dialer,
		Consume: p.consume, Log: p.log, Errors: p.m.kafkaErrors,
	})
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	return nil
}

// partition is the state of one assigned partition.
type partition struct {
	*group.Partition
	window store.StoredWindow
	seen   *idSet
	rows   []store.Event
}

// consume stores the messages of one partition until ctx ends (the end of
// the generation or shutdown), one insert per flush window or full batch,
// each committed once it is stored.
func (p *Pipeline) consume(ctx context.Context, part *group.Partition) {
	st := &partition{Partition: part, seen: newIDSet(p.cfg.DedupWindow)}
	if !p.loadWindow(ctx, st) {
		return
	}
	p.log.Info("consuming partition", "partition", st.ID, "committed", st.Committed, "stored_max", st.window.Max, "stored_window", len(st.window.Offsets))
	lag := p.m.lag.WithLabelValues(strconv.Itoa(st.ID))
	for {
		// One deadline per flush window (not per message): a row waits at
		// most FlushInterval for its insert.
		fetchCtx, fcancel := context.WithTimeout(ctx, p.cfg.FlushInterval)
		for len(st.rows) < p.cfg.BatchSize {
			msg, err := st.Fetch(fetchCtx)
			if err != nil {
				if fetchCtx.Err() != nil {
					break // window over, or shutdown
				}
				continue // counted, logged and backed off by Fetch
			}
			p.take(st, &msg)
		}
		fcancel()
		// Flush on a full batch, at the end of the window and on shutdown.
		if st.Pending() || len(st.rows) > 0 {
			if !p.flush(ctx, st) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		lag.Set(float64(st.Lag()))
	}
}

// loadWindow learns what is already stored at or after the committed
// offset, retrying until ClickHouse answers; false means ctx ended first.
func (p *Pipeline) loadWindow(ctx context.Context, st *partition) bool {
	from := max(st.Committed, 0)
	for attempt := 0; ; attempt++ {
		w, err := p.sink.Window(ctx, st.ID, from, int64(p.cfg.DedupWindow))
		if err == nil {
			st.window = w
			break
		}
		if ctx.Err() != nil {
			return false
		}
		p.m.insertErrors.Inc()
		p.log.Warn("reading stored offsets failed, retrying", "partition", st.ID, "err", err)
		backoff.Sleep(ctx, retryBackoff.Delay(attempt))
	}
	for _, eid := range st.window.IDs {
		st.seen.add(eid)
	}
	for _, ce := range st.window.ClientEvents {
		st.seen.add(schemas.ClientEventKey([]byte(ce.Campaign), []byte(ce.EventID)))
	}
	return true
}

// take turns one message into a row, unless it is already stored.
func (p *Pipeline) take(st *partition, msg *kafka.Message) {
	p.m.consumed.Inc()
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
		k := schemas.ClientEventKey(h.Campaign, h.ClientEventID)
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
	ip = p.cfg.Truncation.IP(ip)
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
		Channel:        Channel(h),
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
func (p *Pipeline) flush(ctx context.Context, st *partition) bool {
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
			p.log.Warn("insert failed; holding the partition and retrying", "partition", st.ID, "rows", len(st.rows), "attempt", attempt+1, "err", err)
			if ctx.Err() != nil {
				// Not committed: redelivered to the next owner, whose
				// stored window covers what the failed insert may have
				// stored.
				return false
			}
			backoff.Sleep(ctx, retryBackoff.Delay(attempt))
			// Retry only what is not stored: a failed insert may have been
			// applied.
			if !p.dropStored(ctx, st) {
				return false
			}
			if len(st.rows) == 0 {
				break
			}
		}
		st.rows = st.rows[:0] // their ids were added to st.seen by take
	}
	if err := st.Commit(); err != nil {
		// Stored but not committed: the stored window covers it.
		return ctx.Err() == nil
	}
	return true
}

// retryBackoff is the wait between ClickHouse attempts.
var retryBackoff = backoff.Exp{Base: 200 * time.Millisecond, Max: 5 * time.Second}

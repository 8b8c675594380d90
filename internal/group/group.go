// Package group runs one member of a Kafka consumer group over one topic:
// it joins the group (kafka-go's ConsumerGroup), follows its generations,
// runs one goroutine per assigned partition with a reader at the group's
// committed offset, ends them when the generation ends, and backs off
// between failed joins and failed fetches.
//
// What a partition's messages become is the caller's (Config.Consume), and
// so is the moment of the commit: Partition.Commit commits everything
// fetched so far, so a caller calls it only once its sink holds (or has
// deliberately skipped) every message Fetch returned. Whatever is not
// committed when a generation ends is consumed again by the partition's
// next owner, so consumers must be idempotent.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/internal/backoff"
)

// Waits after a failed join and after a failed fetch.
const (
	joinBackoff  = time.Second
	fetchBackoff = 500 * time.Millisecond
)

// Config configures a member.
type Config struct {
	Brokers []string
	Topic   string
	Group   string
	// Dialer connects to the brokers, for the group's coordination and
	// every partition's reader (TLS and SASL: kafkaconn.Conn.Dialer); nil
	// is kafka-go's default, plain text without authentication.
	Dialer *kafka.Dialer

	// Consume is called, in a goroutine of its own, for each partition
	// assigned to the member in a generation. ctx ends when the generation
	// ends or Run's context ends, whichever is first; Consume returns then.
	// On shutdown the member stays in the group until every Consume has
	// returned, so a last flush may still commit; once the generation has
	// ended, a commit fails and the partition's next owner consumes the
	// uncommitted messages again. It must not keep p.
	Consume func(ctx context.Context, p *Partition)
	// Singleton, if set, runs beside the partitions in the member that is
	// assigned partition 0, with a context like Consume's: so one member of
	// the group runs it at a time, give or take a rebalance.
	Singleton func(ctx context.Context)

	// Log receives the member's warnings; Errors counts failed joins,
	// fetches and commits. Both are required.
	Log    *slog.Logger
	Errors prometheus.Counter
}

// Run joins the group and consumes until ctx ends; it returns nil then,
// once every Consume and Singleton call has returned. It returns an error
// only if the group cannot be set up (a bad configuration).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Consume == nil || cfg.Log == nil || cfg.Errors == nil {
		return errors.New("consumer group: Consume, Log and Errors are required")
	}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                cfg.Group,
		Brokers:           cfg.Brokers,
		Topics:            []string{cfg.Topic},
		Dialer:            cfg.Dialer,
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  time.Second,
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	defer group.Close()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			cfg.Errors.Inc()
			cfg.Log.Warn("joining consumer group failed, retrying", "err", err)
			backoff.Sleep(ctx, joinBackoff)
			continue
		}
		cfg.generation(ctx, gen)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// generation runs the partitions of gen (and the singleton, if this member
// owns partition 0) until they have all returned.
func (cfg *Config) generation(ctx context.Context, gen *kafka.Generation) {
	assigned := gen.Assignments[cfg.Topic]
	cfg.Log.Info("consumer group generation", "generation", gen.ID, "partitions", len(assigned))
	var wg sync.WaitGroup
	for _, a := range assigned {
		wg.Add(1)
		gen.Start(func(genCtx context.Context) {
			defer wg.Done()
			runCtx, cancel := bound(ctx, genCtx)
			defer cancel()
			cfg.partition(runCtx, gen, a.ID, a.Offset)
		})
		if a.ID == 0 && cfg.Singleton != nil {
			wg.Add(1)
			gen.Start(func(genCtx context.Context) {
				defer wg.Done()
				runCtx, cancel := bound(ctx, genCtx)
				defer cancel()
				cfg.Singleton(runCtx)
			})
		}
	}
	wg.Wait()
}

// bound returns a context of ctx that also ends when genCtx ends.
func bound(ctx, genCtx context.Context) (context.Context, context.CancelFunc) {
	runCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(genCtx, cancel)
	return runCtx, func() { stop(); cancel() }
}

// partition opens a reader of partition id at the committed offset and
// hands it to Consume.
func (cfg *Config) partition(ctx context.Context, gen *kafka.Generation, id int, committed int64) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   cfg.Brokers,
		Topic:     cfg.Topic,
		Partition: id,
		Dialer:    cfg.Dialer,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   100 * time.Millisecond,
		// Stay well inside the callers' flush intervals.
		ReadBatchTimeout: 2 * time.Second,
	})
	defer r.Close()
	start := committed
	if start < 0 {
		start = kafka.FirstOffset
	}
	if err := r.SetOffset(start); err != nil {
		cfg.Log.Error("set offset", "partition", id, "offset", start, "err", err)
		return
	}
	cfg.Consume(ctx, &Partition{ID: id, Committed: committed, cfg: cfg, gen: gen, r: r, last: -1})
}

// Partition is one partition assigned to the member in one generation.
// Its methods are for the Consume call it was given to, one goroutine.
type Partition struct {
	// ID is the partition number.
	ID int
	// Committed is the group's committed offset when the partition was
	// assigned (the next offset to consume); negative when the group has
	// none, and then the reader starts at the first offset.
	Committed int64

	cfg     *Config
	gen     *kafka.Generation
	r       *kafka.Reader
	last    int64 // highest offset fetched
	pending bool  // last moved since the previous commit
}

// Fetch returns the next message. It returns an error only once ctx has
// ended or after a failed fetch; a failed fetch is counted, logged and
// backed off (500 ms, or until ctx ends) before Fetch returns it, so a
// caller may simply call Fetch again.
func (p *Partition) Fetch(ctx context.Context) (kafka.Message, error) {
	msg, err := p.r.FetchMessage(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.cfg.Errors.Inc()
			p.cfg.Log.Warn("kafka fetch failed", "partition", p.ID, "err", err)
			backoff.Sleep(ctx, fetchBackoff)
		}
		return msg, fmt.Errorf("fetch partition %d: %w", p.ID, err)
	}
	p.last, p.pending = msg.Offset, true
	return msg, nil
}

// Pending reports whether messages were fetched since the last commit.
func (p *Partition) Pending() bool { return p.pending }

// Commit commits the offset after the last message fetched, if any was
// fetched since the previous commit. Call it only once the sink holds (or
// has deliberately skipped) every message Fetch returned. A failed commit
// is counted and logged, and stays pending: the next Commit tries again,
// and until one succeeds the uncommitted messages may be redelivered.
func (p *Partition) Commit() error {
	if !p.pending {
		return nil
	}
	err := p.gen.CommitOffsets(map[string]map[int]int64{p.cfg.Topic: {p.ID: p.last + 1}})
	if err != nil {
		p.cfg.Errors.Inc()
		p.cfg.Log.Warn("commit failed", "partition", p.ID, "offset", p.last+1, "err", err)
		return fmt.Errorf("commit partition %d at offset %d: %w", p.ID, p.last+1, err)
	}
	p.pending = false
	return nil
}

// Lag returns how many messages of the partition are not yet fetched, as
// the reader last saw it.
func (p *Partition) Lag() int64 { return p.r.Lag() }

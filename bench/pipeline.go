package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/pipeline"
	"github.com/jobpixel/jobpixel/schemas"
)

// The pipeline benchmark preloads N hits into a topic, then runs, in a
// child process pinned to the server CPUs, either the real pipeline
// (pipeline.New + Run with a fresh consumer group) or the raw baseline
// (kafka-go partition readers + the same clickhouse-go insert of the same
// rows, nothing else), until ClickHouse holds all N rows.

const (
	variantReal = "pipeline"
	variantRaw  = "raw-baseline"
)

type workerResult struct {
	Variant string  `json:"variant"`
	N       int64   `json:"n"`
	Rows    int64   `json:"rows"` // rows the worker saw inserted
	Skipped float64 `json:"skipped"`
	// Seconds from the first message received to the last row inserted;
	// Total also includes connecting and joining the consumer group.
	Seconds      float64 `json:"seconds"`
	TotalSeconds float64 `json:"total_seconds"`
	Rate         float64 `json:"events_per_s"`
	TotalRate    float64 `json:"events_per_s_total"`
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	GCCycles     uint32  `json:"gc_cycles"`
	TotalAllocMB float64 `json:"total_alloc_mb"`
}

type pipelineRun struct {
	Variant string       `json:"variant"`
	Rep     int          `json:"rep"`
	Worker  workerResult `json:"worker"`
	Usage   usage        `json:"usage"`
	Stored  uint64       `json:"stored_rows"`
	Sum     uint64       `json:"checksum"`
}

type pipelineResult struct {
	N            int64         `json:"n"`
	MessageBytes float64       `json:"avg_message_bytes"`
	PreloadRate  float64       `json:"preload_msgs_per_s"`
	Runs         []pipelineRun `json:"runs"`
	Figures      []figure      `json:"figures"`
	RowsMatch    bool          `json:"rows_match"`
	RowsNote     string        `json:"rows_note"`
	Profiles     []profileInfo `json:"profiles,omitempty"`
}

func (e *env) pipeline(ctx context.Context) error {
	r := &pipelineResult{N: int64(e.o.PipelineN)}
	e.res.Pipeline = r
	const topic = "bench.pipeline"
	broker, baddr, err := e.startBroker("pipeline-broker", topic)
	if err != nil {
		return err
	}
	defer broker.kill()
	baseMs := time.Now().UTC().Add(-2 * time.Hour).UnixMilli()
	if err := e.preload(ctx, baddr, topic, baseMs, r); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	ends, err := topicEnd(ctx, baddr, topic)
	if err != nil {
		return err
	}
	if got := sumOffsets(ends); got != r.N {
		return fmt.Errorf("preload: topic holds %d messages, want %d", got, r.N)
	}
	run := func(variant string, rep int, profile string) (pipelineRun, error) {
		if err := truncateEvents(ctx, e.st); err != nil {
			return pipelineRun{}, err
		}
		argv := []string{e.o.Self, "pipeline-worker", "-variant", variant, "-brokers", baddr, "-topic", topic,
			"-group", fmt.Sprintf("bench-%s-%d-%s", e.stamp, rep, variant), "-clickhouse", e.o.ClickHouse,
			"-database", benchDB, "-n", strconv.FormatInt(r.N, 10), "-base-ms", strconv.FormatInt(baseMs, 10),
			"-client", e.clientID, "-campaigns", strings.Join(e.campaigns, ",")}
		if profile != "" {
			argv = append(argv, "-cpuprofile", profile)
		}
		c, err := startChild(fmt.Sprintf("pipeline-%s-%d", variant, rep), e.o.ServerCPU, e.runDir, argv)
		if err != nil {
			return pipelineRun{}, err
		}
		w := openWindow(map[string]int{"worker": c.pid(), "broker": broker.pid()})
		line, err := c.waitLine("RESULT ", time.Duration(r.N/5000+120)*time.Second)
		u := w.close()
		_ = c.wait(30 * time.Second)
		if err != nil {
			return pipelineRun{}, err
		}
		pr := pipelineRun{Variant: variant, Rep: rep, Usage: u}
		if err := json.Unmarshal([]byte(line), &pr.Worker); err != nil {
			return pr, err
		}
		// What ClickHouse holds, to compare the two variants row for row.
		err = e.st.Conn().QueryRow(ctx, `SELECT count(), sum(cityHash64(event_id, client_id, campaign_id, toString(event),
			vacancy, url, referrer, source, utm_source, utm_medium, utm_campaign, visitor, ip, country, region,
			toString(received), toString(date), browser, os, device, bot, consent, kafka_partition, kafka_offset)) FROM events`).Scan(&pr.Stored, &pr.Sum)
		if err != nil {
			return pr, fmt.Errorf("checksum: %w", err)
		}
		e.log.Info("pipeline", "variant", variant, "rep", rep, "events_per_s", int(pr.Worker.Rate),
			"incl_startup", int(pr.Worker.TotalRate), "stored", pr.Stored, "worker_cpu", round3(u.CPU["worker"]),
			"broker_cpu", round3(u.CPU["broker"]), "foreign_cpu", round3(u.ForeignCPU))
		return pr, nil
	}
	for rep := 0; rep < e.o.Reps; rep++ {
		order := []string{variantReal, variantRaw}
		if rep%2 == 1 {
			order = []string{variantRaw, variantReal}
		}
		for _, v := range order {
			pr, err := run(v, rep, "")
			if err != nil {
				return fmt.Errorf("%s rep %d: %w", v, rep, err)
			}
			r.Runs = append(r.Runs, pr)
		}
	}
	// Both variants must have stored the very same rows.
	r.RowsMatch = true
	var ref *pipelineRun
	for i := range r.Runs {
		pr := &r.Runs[i]
		if pr.Stored != uint64(r.N) {
			r.RowsMatch = false
			r.RowsNote += fmt.Sprintf("%s rep %d stored %d rows, want %d. ", pr.Variant, pr.Rep, pr.Stored, r.N)
		}
		if ref == nil {
			ref = pr
		} else if pr.Sum != ref.Sum {
			r.RowsMatch = false
			r.RowsNote += fmt.Sprintf("%s rep %d: row checksum differs from %s rep %d. ", pr.Variant, pr.Rep, ref.Variant, ref.Rep)
		}
	}
	if r.RowsMatch {
		r.RowsNote = fmt.Sprintf("every run stored exactly %d rows, and both variants stored identical rows (checksum over all columns)", r.N)
	}
	for _, v := range []string{variantReal, variantRaw} {
		var x []pipelineRun
		for _, pr := range r.Runs {
			if pr.Variant == v {
				x = append(x, pr)
			}
		}
		r.Figures = append(r.Figures,
			newFigure(v+" events/s", "events/s", pick(x, func(p pipelineRun) float64 { return p.Worker.Rate })),
			newFigure(v+" events/s incl. start-up", "events/s", pick(x, func(p pipelineRun) float64 { return p.Worker.TotalRate })),
			newFigure(v+" worker CPU", "cores", pick(x, func(p pipelineRun) float64 { return p.Usage.CPU["worker"] })),
			newFigure(v+" worker CPU starvation", "share", pick(x, func(p pipelineRun) float64 { return p.Usage.Starvation["worker"] })),
			newFigure(v+" worker peak RSS", "MB", pick(x, func(p pipelineRun) float64 { return p.Worker.PeakRSSMB })),
			newFigure(v+" worker allocated", "MB", pick(x, func(p pipelineRun) float64 { return p.Worker.TotalAllocMB })),
			newFigure(v+" broker CPU", "cores", pick(x, func(p pipelineRun) float64 { return p.Usage.CPU["broker"] })),
			newFigure(v+" foreign CPU (incl. ClickHouse)", "cores", pick(x, func(p pipelineRun) float64 { return p.Usage.ForeignCPU })),
		)
	}
	if pipelineMissed(r) {
		path := filepath.Join(e.o.Out, e.stamp+"-pipeline.cpu.prof")
		if _, err := run(variantReal, e.o.Reps, path); err != nil {
			e.log.Warn("profiled pipeline run failed", "err", err)
		} else if top, err := e.pprofTop(path, ""); err == nil {
			r.Profiles = append(r.Profiles, profileInfo{Name: "pipeline CPU (whole run, one extra repetition)",
				Why: "a pipeline target was missed", File: path, Top: top})
		} else {
			e.log.Warn("pprof", "err", err)
		}
	}
	return nil
}

func pipelineMissed(r *pipelineResult) bool {
	for _, t := range pipelineTargetChecks(r) {
		if !t.Met {
			return true
		}
	}
	return false
}

// preload writes N hits with kafka-go, keyed by visitor hash as ingest does
// (Hash balancer, lz4, acks=all).
func (e *env) preload(ctx context.Context, broker, topic string, baseMs int64, r *pipelineResult) error {
	g := newHitGen(e.campaigns, e.clientID, baseMs)
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.Hash{}, BatchSize: 5000,
		BatchTimeout: 10 * time.Millisecond, RequiredAcks: kafka.RequireAll, Compression: kafka.Lz4,
		MaxAttempts: 10, WriteTimeout: 30 * time.Second}
	defer w.Close()
	start := time.Now()
	const chunk = 30_000
	var bytes int64
	var mu sync.Mutex
	nChunks := int((r.N + chunk - 1) / chunk)
	err := parallel(4, nChunks, func(c int) error {
		lo := int64(c) * chunk
		hi := min(lo+chunk, r.N)
		msgs := make([]kafka.Message, 0, hi-lo)
		// Values and keys live in two slabs; a reallocating append leaves
		// the earlier slices on the old array, which is never written again.
		buf := make([]byte, 0, (hi-lo)*300)
		keys := make([]byte, 0, (hi-lo)*16)
		var h schemas.Hit
		var n int64
		for i := lo; i < hi; i++ {
			g.fill(uint64(i), &h)
			s := len(buf)
			buf = h.Append(buf)
			v := buf[s:len(buf):len(buf)]
			keys = append(keys, h.Visitor[:]...)
			n += int64(len(v))
			msgs = append(msgs, kafka.Message{Key: keys[len(keys)-16 : len(keys) : len(keys)], Value: v})
		}
		mu.Lock()
		bytes += n
		mu.Unlock()
		return w.WriteMessages(ctx, msgs...)
	})
	if err != nil {
		return err
	}
	r.PreloadRate = float64(r.N) / time.Since(start).Seconds()
	r.MessageBytes = float64(bytes) / float64(r.N)
	e.log.Info("preloaded", "messages", r.N, "msgs_per_s", int(r.PreloadRate), "avg_bytes", int(r.MessageBytes))
	return nil
}

// pipelineWorkerMain is the child that runs one variant to completion and
// prints a RESULT line.
func pipelineWorkerMain(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("pipeline-worker", flag.ContinueOnError)
	variant := fs.String("variant", variantReal, variantReal+" or "+variantRaw)
	brokers := fs.String("brokers", "", "Kafka brokers")
	topic := fs.String("topic", "", "topic")
	group := fs.String("group", "", "consumer group (pipeline)")
	chAddr := fs.String("clickhouse", "127.0.0.1:19000", "ClickHouse")
	db := fs.String("database", benchDB, "database")
	n := fs.Int64("n", 0, "rows to wait for")
	baseMs := fs.Int64("base-ms", 0, "hit generator base time")
	client := fs.String("client", "", "client id of the generated hits")
	camps := fs.String("campaigns", "", "campaigns of the generated hits")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := store.Open(ctx, store.Config{Addr: *chAddr, Database: *db})
	if err != nil {
		return err
	}
	defer st.Close()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var res workerResult
	switch *variant {
	case variantReal:
		res, err = runRealPipeline(ctx, log, st, strings.Split(*brokers, ","), *topic, *group, *n)
	case variantRaw:
		g := newHitGen(strings.Split(*camps, ","), *client, *baseMs)
		res, err = runRawBaseline(ctx, st, g, *brokers, *topic, *n)
	default:
		err = fmt.Errorf("unknown variant %q", *variant)
	}
	if err != nil {
		return err
	}
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	res.Variant, res.N = *variant, *n
	res.GCCycles = ms1.NumGC - ms0.NumGC
	res.TotalAllocMB = float64(ms1.TotalAlloc-ms0.TotalAlloc) / (1 << 20)
	if ps, err := readProc(os.Getpid()); err == nil {
		res.PeakRSSMB = float64(ps.HWMKB) / 1024
	}
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
	return nil
}

// gatherCounters sums the counters of reg by metric name.
func gatherCounters(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				out[mf.GetName()] += c.GetValue()
			}
		}
	}
	return out
}

func runRealPipeline(ctx context.Context, log *slog.Logger, st *store.Store, brokers []string, topic, group string, n int64) (workerResult, error) {
	var res workerResult
	reg := prometheus.NewRegistry()
	p, err := pipeline.New(pipeline.Config{Brokers: brokers, Topic: topic, Group: group}, st, log, reg)
	if err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- p.Run(runCtx) }()
	var first, done time.Time
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(time.Duration(n/5000+100) * time.Second)
	for done.IsZero() {
		select {
		case <-tick.C:
		case err := <-errc:
			return res, fmt.Errorf("pipeline stopped early: %v", err)
		case <-limit:
			c := gatherCounters(reg)
			return res, fmt.Errorf("timeout: consumed %.0f, inserted %.0f of %d", c["jobpixel_pipeline_consumed_total"], c["jobpixel_pipeline_inserted_total"], n)
		case <-ctx.Done():
			return res, ctx.Err()
		}
		c := gatherCounters(reg)
		if first.IsZero() && c["jobpixel_pipeline_consumed_total"] > 0 {
			first = time.Now()
		}
		if int64(c["jobpixel_pipeline_inserted_total"]) >= n {
			done = time.Now()
			res.Rows = int64(c["jobpixel_pipeline_inserted_total"])
			res.Skipped = c["jobpixel_pipeline_skipped_total"]
		}
	}
	cancel()
	select {
	case <-errc:
	case <-time.After(30 * time.Second):
		log.Warn("pipeline did not stop within 30s")
	}
	res.Seconds = done.Sub(first).Seconds()
	res.TotalSeconds = done.Sub(start).Seconds()
	res.Rate = float64(n) / res.Seconds
	res.TotalRate = float64(n) / res.TotalSeconds
	return res, nil
}

// runRawBaseline reads every partition from the start with a kafka-go
// Reader configured as the pipeline's, maps each message to its row by the
// index in its id (no decoding, anonymising, deduplication, consumer group
// or commits) and inserts rows in batches of the pipeline's default size
// with the same clickhouse-go insert (store.InsertEvents).
func runRawBaseline(ctx context.Context, st *store.Store, g *hitGen, broker, topic string, n int64) (workerResult, error) {
	var res workerResult
	ends, err := topicEnd(ctx, broker, topic)
	if err != nil {
		return res, err
	}
	const batch = 50_000
	start := time.Now()
	var mu sync.Mutex
	var first, last time.Time
	var rows int64
	errc := make(chan error, len(ends))
	var wg sync.WaitGroup
	for part, end := range ends {
		if end == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: part,
				MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond, ReadBatchTimeout: 2 * time.Second})
			defer r.Close()
			if err := r.SetOffset(kafka.FirstOffset); err != nil {
				errc <- err
				return
			}
			buf := make([]store.Event, 0, batch)
			flush := func() error {
				if len(buf) == 0 {
					return nil
				}
				if err := st.InsertEvents(ctx, buf); err != nil {
					return err
				}
				mu.Lock()
				rows += int64(len(buf))
				last = time.Now()
				mu.Unlock()
				buf = buf[:0]
				return nil
			}
			started := false
			for {
				msg, err := r.FetchMessage(ctx)
				if err != nil {
					errc <- err
					return
				}
				if !started {
					started = true
					mu.Lock()
					if first.IsZero() {
						first = time.Now()
					}
					mu.Unlock()
				}
				i, ok := indexOf(msg.Value)
				if !ok {
					errc <- fmt.Errorf("partition %d offset %d: not a preloaded hit", part, msg.Offset)
					return
				}
				buf = append(buf, g.row(i, msg.Partition, msg.Offset))
				if len(buf) == batch || msg.Offset == end-1 {
					if err := flush(); err != nil {
						errc <- err
						return
					}
				}
				if msg.Offset == end-1 {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := errors.Join(drain(errc)...); err != nil {
		return res, err
	}
	res.Rows = rows
	if rows != n {
		return res, fmt.Errorf("inserted %d rows, want %d", rows, n)
	}
	res.Seconds = last.Sub(first).Seconds()
	res.TotalSeconds = last.Sub(start).Seconds()
	res.Rate = float64(n) / res.Seconds
	res.TotalRate = float64(n) / res.TotalSeconds
	return res, nil
}

func drain(c chan error) []error {
	var out []error
	for err := range c {
		out = append(out, err)
	}
	return out
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Ingest targets, measured in the same run, interleaved.
const (
	tBareGIF   = "bare-gif"   // bare fasthttp handler answering the GIF
	tIngestGIF = "ingest-gif" // GET /p.gif through jobpixel ingest → Kafka
	tIngestE   = "ingest-e"   // POST /e, 10 events per body → Kafka
)

var ingestTargets = []string{tBareGIF, tIngestGIF, tIngestE}

type ingestRun struct {
	Target    string     `json:"target"`
	Rep       int        `json:"rep"`
	Load      loadResult `json:"load"`
	Usage     usage      `json:"usage"`
	PeakRSSMB float64    `json:"server_peak_rss_mb"` // VmHWM reset before the run
}

// Mode is closed or open.
func (r ingestRun) Mode() string { return r.Load.Mode }

type ingestVerify struct {
	AcceptedHits   float64 `json:"accepted_hits"` // server counters (warm-up included)
	ProducedHits   float64 `json:"produced_hits"` // jobpixel_ingest_produced_total
	DroppedHits    float64 `json:"dropped_hits"`
	RejectedHits   float64 `json:"rejected_hits"`
	TopicMessages  int64   `json:"topic_messages"` // sum of the partitions' end offsets
	ProduceErrors  float64 `json:"produce_errors"`
	WaitedForKafka float64 `json:"waited_seconds"`
	OK             bool    `json:"ok"`
	Note           string  `json:"note"`
}

type ingestResult struct {
	Closed      []ingestRun        `json:"closed"`
	Open        []ingestRun        `json:"open"`
	OpenRates   map[string]float64 `json:"open_rates"`
	Figures     []figure           `json:"figures"`
	OpenFigures []figure           `json:"open_figures"`
	Verify      ingestVerify       `json:"verify"`
	Profiles    []profileInfo      `json:"profiles,omitempty"`
	PeakRSSNote string             `json:"peak_rss_note,omitempty"`
}

type profileInfo struct {
	Name string `json:"name"`
	Why  string `json:"why"`
	File string `json:"file"`
	Top  string `json:"top"`
}

func (e *env) ingest(ctx context.Context) error {
	r := &ingestResult{OpenRates: map[string]float64{}}
	e.res.Ingest = r
	broker, baddr, err := e.startBroker("ingest-broker", "bench.hits")
	if err != nil {
		return err
	}
	defer broker.kill()
	srv, sf, err := e.startServe("ingest-server", "-roles", "ingest", "-kafka.brokers", baddr,
		"-kafka.topic", "bench.hits", "-clickhouse.database", benchDB)
	if err != nil {
		return err
	}
	defer srv.stop(20 * time.Second)
	bare, err := startChild("bare-server", e.o.ServerCPU, e.runDir, []string{e.o.Self, "bare", "-addr", "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer bare.stop(5 * time.Second)
	bl, err := bare.waitLine("READY ", 10*time.Second)
	if err != nil {
		return err
	}
	addrs := map[string]string{tBareGIF: readyFields(bl)["addr"], tIngestGIF: sf["ingest"], tIngestE: sf["ingest"]}
	pids := map[string]int{tBareGIF: bare.pid(), tIngestGIF: srv.pid(), tIngestE: srv.pid()}
	if err := e.smokeIngest(addrs[tIngestGIF]); err != nil {
		return err
	}

	run := func(target, mode string, rep int, rate float64) (ingestRun, error) {
		kind := "pixel"
		if target == tIngestE {
			kind = "events"
		}
		conc := e.o.Conc
		if mode == "open" {
			conc = e.o.OpenConc
		}
		cfg := loadConfig{Addr: addrs[target], Kind: kind, Mode: mode, Conc: conc, Rate: rate,
			Warmup: e.o.Warmup, Duration: e.o.Duration, Campaigns: e.campaigns, Seed: rep + 1}
		lr, u, rss, err := e.runLoadChild(fmt.Sprintf("load-%s-%s-%d", target, mode, rep), cfg,
			map[string]int{"server": pids[target], "broker": broker.pid()}, pids[target])
		run := ingestRun{Target: target, Rep: rep, Load: lr, Usage: u, PeakRSSMB: rss}
		if err == nil {
			e.log.Info("ingest", "target", target, "mode", mode, "rep", rep, "rps", int(lr.RPS), "ok_rps", int(lr.OKRPS),
				"p50_ms", round3(lr.Latency.P50), "p99_ms", round3(lr.Latency.P99), "rss_mb", round3(rss),
				"server_cpu", round3(u.CPU["server"]), "loadgen_cpu", round3(u.CPU["loadgen"]), "foreign_cpu", round3(u.ForeignCPU),
				"errors", lr.Errors+lr.Non2xx+lr.Rejected)
		}
		return run, err
	}
	// Closed loop: maximum rate. Targets rotate so none always runs first.
	for rep := 0; rep < e.o.Reps; rep++ {
		for k := range ingestTargets {
			t := ingestTargets[(k+rep)%len(ingestTargets)]
			ir, err := run(t, "closed", rep, 0)
			if err != nil {
				return err
			}
			r.Closed = append(r.Closed, ir)
		}
	}
	r.Figures = ingestFigures(r.Closed, true)
	// Open loop at half of each target's median maximum.
	for _, t := range ingestTargets {
		r.OpenRates[t] = 0.5 * newFigure("", "", pick(byTarget(r.Closed, t), func(x ingestRun) float64 { return x.Load.RPS })).Median
	}
	for rep := 0; rep < e.o.Reps; rep++ {
		for k := range ingestTargets {
			t := ingestTargets[(k+rep)%len(ingestTargets)]
			ir, err := run(t, "open", rep, r.OpenRates[t])
			if err != nil {
				return err
			}
			r.Open = append(r.Open, ir)
		}
	}
	r.OpenFigures = ingestFigures(r.Open, false)
	// The server lives through every run, so its RSS carries history; say
	// what its peak was over the whole phase.
	var maxClosed, maxAll float64
	for _, x := range append(append([]ingestRun{}, r.Closed...), r.Open...) {
		if x.Target == tBareGIF {
			continue
		}
		maxAll = max(maxAll, x.PeakRSSMB)
		if x.Mode() == "closed" {
			maxClosed = max(maxClosed, x.PeakRSSMB)
		}
	}
	if maxAll > maxClosed {
		r.PeakRSSNote = fmt.Sprintf("the same process peaked at %.1f MB later, in an open-loop run at half load", maxAll)
	}
	r.Verify = e.verifyIngest(ctx, sf["ops"], baddr, "bench.hits")

	// Targets missed → profile the server under the same load.
	if ingestMissed(r) {
		for _, t := range []string{tIngestGIF, tIngestE} {
			p, err := e.profileIngest(t, addrs[t], sf["ops"], srv.pid(), broker.pid())
			if err != nil {
				e.log.Warn("profile failed", "target", t, "err", err)
				continue
			}
			r.Profiles = append(r.Profiles, p...)
		}
	}
	return nil
}

// smokeIngest checks that a hit is accepted before measuring anything.
func (e *env) smokeIngest(addr string) error {
	reqs := prepare("pixel", e.campaigns, 1, 1)
	var req fasthttp.Request
	var resp fasthttp.Response
	req.SetRequestURI("http://" + addr + reqs[0].uri)
	req.Header.SetUserAgent(reqs[0].ua)
	if err := fasthttp.DoTimeout(&req, &resp, 5*time.Second); err != nil {
		return fmt.Errorf("smoke hit: %w", err)
	}
	if resp.StatusCode() != 200 || len(resp.Header.Peek(rejectHeader)) > 0 {
		return fmt.Errorf("smoke hit not accepted: %d %s", resp.StatusCode(), resp.Header.Peek(rejectHeader))
	}
	return nil
}

// runLoadChild runs the load generator pinned to the client CPUs and
// watches the server meanwhile.
func (e *env) runLoadChild(name string, cfg loadConfig, pids map[string]int, serverPid int) (loadResult, usage, float64, error) {
	argv := []string{e.o.Self, "load", "-addr", cfg.Addr, "-kind", cfg.Kind, "-mode", cfg.Mode,
		"-conc", strconv.Itoa(cfg.Conc), "-warmup", cfg.Warmup.String(), "-duration", cfg.Duration.String(),
		"-campaigns", strings.Join(cfg.Campaigns, ","), "-seed", strconv.Itoa(cfg.Seed)}
	if cfg.Rate > 0 {
		argv = append(argv, "-rate", strconv.FormatFloat(cfg.Rate, 'f', 1, 64))
	}
	resetOK := resetPeakRSS(serverPid)
	w := openWindow(pids)
	c, err := startChild(name, e.o.ClientCPU, e.runDir, argv)
	if err != nil {
		return loadResult{}, usage{}, 0, err
	}
	line, err := c.waitLine("RESULT ", cfg.Warmup+cfg.Duration+40*time.Second)
	u := w.close()
	_ = c.wait(10 * time.Second)
	if err != nil {
		return loadResult{}, u, 0, err
	}
	var lr loadResult
	if err := json.Unmarshal([]byte(line), &lr); err != nil {
		return lr, u, 0, fmt.Errorf("%s: %w", name, err)
	}
	// The generator reports its own CPU; it is ours, not foreign.
	lg := lr.CPUSeconds / u.Seconds
	u.CPU["loadgen"] = lg
	u.ForeignCPU = max(0, u.ForeignCPU-lg)
	ps, _ := readProc(serverPid)
	rss := float64(ps.HWMKB) / 1024
	if !resetOK {
		rss = float64(ps.RSSKB) / 1024 // no peak available: current RSS
	}
	return lr, u, rss, nil
}

func byTarget(rs []ingestRun, t string) []ingestRun {
	var out []ingestRun
	for _, r := range rs {
		if r.Target == t {
			out = append(out, r)
		}
	}
	return out
}

func ingestFigures(rs []ingestRun, closed bool) []figure {
	var fs []figure
	for _, t := range ingestTargets {
		x := byTarget(rs, t)
		if len(x) == 0 {
			continue
		}
		mult := 1.0
		if t == tIngestE {
			mult = 10
		}
		fs = append(fs,
			newFigure(t+" requests/s", "req/s", pick(x, func(r ingestRun) float64 { return r.Load.RPS })),
			newFigure(t+" accepted requests/s", "req/s", pick(x, func(r ingestRun) float64 { return r.Load.OKRPS })))
		if t == tIngestE {
			fs = append(fs, newFigure(t+" accepted hits/s", "hits/s", pick(x, func(r ingestRun) float64 { return r.Load.OKRPS * mult })))
		}
		fs = append(fs,
			newFigure(t+" latency p50", "ms", pick(x, func(r ingestRun) float64 { return r.Load.Latency.P50 })),
			newFigure(t+" latency p99", "ms", pick(x, func(r ingestRun) float64 { return r.Load.Latency.P99 })),
			newFigure(t+" latency p99.9", "ms", pick(x, func(r ingestRun) float64 { return r.Load.Latency.P999 })),
			newFigure(t+" server peak RSS", "MB", pick(x, func(r ingestRun) float64 { return r.PeakRSSMB })),
			newFigure(t+" server CPU", "cores", pick(x, func(r ingestRun) float64 { return r.Usage.CPU["server"] })),
			newFigure(t+" server CPU starvation", "share", pick(x, func(r ingestRun) float64 { return r.Usage.Starvation["server"] })),
			newFigure(t+" load generator CPU", "cores", pick(x, func(r ingestRun) float64 { return r.Usage.CPU["loadgen"] })),
			newFigure(t+" broker CPU", "cores", pick(x, func(r ingestRun) float64 { return r.Usage.CPU["broker"] })),
			newFigure(t+" foreign CPU", "cores", pick(x, func(r ingestRun) float64 { return r.Usage.ForeignCPU })),
			newFigure(t+" failed requests", "count", pick(x, func(r ingestRun) float64 {
				return float64(r.Load.Errors + r.Load.Non2xx + r.Load.Rejected + r.Load.Backlog)
			})))
	}
	return fs
}

// verifyIngest checks, from the metrics on the ops listener opsAddr, that
// every accepted hit was acknowledged by Kafka.
func (e *env) verifyIngest(ctx context.Context, opsAddr, broker, topic string) ingestVerify {
	var v ingestVerify
	start := time.Now()
	var m map[string]float64
	var err error
	for {
		m, err = scrapeMetrics("http://" + opsAddr + "/metrics")
		if err != nil {
			v.Note = "scraping /metrics: " + err.Error()
			return v
		}
		v.AcceptedHits = sumMetric(m, "jobpixel_ingest_accepted_total")
		v.ProducedHits = sumMetric(m, "jobpixel_ingest_produced_total")
		if v.ProducedHits >= v.AcceptedHits || time.Since(start) > 30*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	v.WaitedForKafka = time.Since(start).Seconds()
	v.DroppedHits = sumMetric(m, "jobpixel_ingest_dropped_total")
	v.RejectedHits = sumMetric(m, "jobpixel_ingest_rejected_total")
	v.ProduceErrors = sumMetric(m, "jobpixel_ingest_produce_errors_total")
	ends, err := topicEnd(ctx, broker, topic)
	if err != nil {
		v.Note = "topic end offsets: " + err.Error()
		return v
	}
	v.TopicMessages = sumOffsets(ends)
	v.OK = v.ProducedHits == v.AcceptedHits && float64(v.TopicMessages) >= v.ProducedHits && v.DroppedHits == 0
	switch {
	case v.OK:
		v.Note = "every accepted hit was acknowledged by the broker (acks=all) and is in the topic"
	default:
		v.Note = fmt.Sprintf("MISMATCH: accepted %.0f, produced %.0f, in topic %d, dropped %.0f",
			v.AcceptedHits, v.ProducedHits, v.TopicMessages, v.DroppedHits)
	}
	if float64(v.TopicMessages) > v.ProducedHits {
		v.Note += fmt.Sprintf(" (topic holds %d more than acknowledged: kafka-go retries can duplicate; the pipeline deduplicates)",
			v.TopicMessages-int64(v.ProducedHits))
	}
	return v
}

func ingestMissed(r *ingestResult) bool {
	for _, t := range ingestTargetChecks(r) {
		if !t.Met {
			return true
		}
	}
	return false
}

// profileIngest loads the server at its maximum rate and takes a CPU
// profile (and a heap profile) meanwhile.
func (e *env) profileIngest(target, addr, pprofAddr string, serverPid, brokerPid int) ([]profileInfo, error) {
	if pprofAddr == "" {
		return nil, fmt.Errorf("server has no ops listener (pprof)")
	}
	kind := "pixel"
	if target == tIngestE {
		kind = "events"
	}
	secs := e.o.ProfileSeconds
	cfg := loadConfig{Addr: addr, Kind: kind, Mode: "closed", Conc: e.o.Conc, Warmup: time.Second,
		Duration: time.Duration(secs+2) * time.Second, Campaigns: e.campaigns, Seed: 99}
	done := make(chan error, 1)
	go func() {
		_, _, _, err := e.runLoadChild("load-profile-"+target, cfg, map[string]int{"server": serverPid, "broker": brokerPid}, serverPid)
		done <- err
	}()
	time.Sleep(1500 * time.Millisecond)
	cpuFile := filepath.Join(e.o.Out, fmt.Sprintf("%s-%s.cpu.prof", e.stamp, target))
	cpuTop, cpuErr := e.takeProfile(pprofAddr, "profile", secs, cpuFile)
	heapFile := filepath.Join(e.o.Out, fmt.Sprintf("%s-%s.heap.prof", e.stamp, target))
	heapTop, heapErr := e.takeProfile(pprofAddr, "heap", 0, heapFile)
	if err := <-done; err != nil {
		return nil, err
	}
	var out []profileInfo
	if cpuErr == nil {
		out = append(out, profileInfo{Name: target + " CPU", Why: "an ingest target was missed", File: cpuFile, Top: cpuTop})
	} else {
		e.log.Warn("cpu profile", "err", cpuErr)
	}
	if heapErr == nil {
		out = append(out, profileInfo{Name: target + " heap (in use, end of load)", Why: "an ingest target was missed", File: heapFile, Top: heapTop})
	}
	return out, nil
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

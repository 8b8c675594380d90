package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type phaseInfo struct {
	Name          string  `json:"name"`
	Seconds       float64 `json:"seconds"`
	LoadAvgBefore string  `json:"loadavg_before"`
	LoadAvgAfter  string  `json:"loadavg_after"`
	// Over the phase's measurement windows: CPU used by everything but our
	// processes, and the starvation of the process under test.
	Foreign    *figure `json:"foreign_cpu,omitempty"`
	Starvation *figure `json:"starvation,omitempty"`
}

// phaseNoise collects the noise figures of a phase's measurement windows.
func (r *result) phaseNoise(name string) (foreign, starv []float64) {
	add := func(u usage, who string) {
		foreign = append(foreign, u.ForeignCPU)
		starv = append(starv, u.Starvation[who])
	}
	switch {
	case name == "ingest" && r.Ingest != nil:
		for _, x := range append(append([]ingestRun{}, r.Ingest.Closed...), r.Ingest.Open...) {
			add(x.Usage, "server")
		}
	case name == "pipeline" && r.Pipeline != nil:
		for _, x := range r.Pipeline.Runs {
			add(x.Usage, "worker")
		}
	case name == "e2e" && r.E2E != nil && r.E2E.Usage.Seconds > 0:
		add(r.E2E.Usage, "server")
	case name == "reports" && r.Reports != nil:
		for _, u := range r.Reports.Usage {
			add(u, "api")
		}
	}
	return foreign, starv
}

type result struct {
	Started  time.Time   `json:"started"`
	Finished time.Time   `json:"finished"`
	Mode     string      `json:"mode"`
	Options  *options    `json:"options"`
	Machine  machineInfo `json:"machine"`
	Git      gitInfo     `json:"git"`
	Phases   []phaseInfo `json:"phases"`

	Micro    *microResult    `json:"micro,omitempty"`
	Ingest   *ingestResult   `json:"ingest,omitempty"`
	Pipeline *pipelineResult `json:"pipeline,omitempty"`
	E2E      *e2eResult      `json:"e2e,omitempty"`
	Reports  *reportsResult  `json:"reports,omitempty"`

	Targets []targetResult `json:"targets"`
	Errors  []string       `json:"errors,omitempty"`
}

// fillNoise attaches the noise figures to the phases.
func (r *result) fillNoise() {
	for i := range r.Phases {
		f, s := r.phaseNoise(r.Phases[i].Name)
		if len(f) > 0 {
			ff, sf := newFigure("foreign CPU", "cores", f), newFigure("starvation", "share", s)
			r.Phases[i].Foreign, r.Phases[i].Starvation = &ff, &sf
		}
	}
}

// targetResult is one goal of issue 7, as measured. Targets are reported,
// never asserted.
type targetResult struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
	Note string `json:"note,omitempty"`
}

func figureByName(fs []figure, name string) (figure, bool) {
	for _, f := range fs {
		if f.Name == name {
			return f, true
		}
	}
	return figure{}, false
}

func ingestTargetChecks(r *ingestResult) []targetResult {
	var out []targetResult
	bare, ok1 := figureByName(r.Figures, tBareGIF+" requests/s")
	ing, ok2 := figureByName(r.Figures, tIngestGIF+" accepted requests/s")
	if ok1 && ok2 && bare.Median > 0 {
		ratio := ing.Median / bare.Median
		t := targetResult{Name: "Ingest GET /p.gif with Kafka vs bare fasthttp GIF", Want: "≥ 0.80 × baseline req/s",
			Got: fmt.Sprintf("%.2f × (%s vs %s req/s, medians)", ratio, fmtNum(ing.Median), fmtNum(bare.Median)), Met: ratio >= 0.8}
		if lg, ok := figureByName(r.Figures, tBareGIF+" load generator CPU"); ok && lg.Median >= 0.9 {
			t.Note = fmt.Sprintf("the baseline run was limited by the load generator (%.2f cores), so the bare server's real maximum is higher and the true ratio lower", lg.Median)
		}
		if sc, ok := figureByName(r.Figures, tIngestGIF+" server CPU"); ok && sc.Median < 0.9 {
			t.Note += fmt.Sprintf(" The ingest server used only %.2f cores at its maximum: it was not the only bottleneck.", sc.Median)
		}
		out = append(out, t)
	}
	for _, t := range []string{tIngestGIF, tIngestE} {
		if p99, ok := figureByName(r.OpenFigures, t+" latency p99"); ok {
			tr := targetResult{Name: fmt.Sprintf("Ingest %s p99 at 50 %% of max (%s req/s, open loop)", endpoint(t), fmtNum(r.OpenRates[t])),
				Want: "≤ 5 ms", Got: fmt.Sprintf("%s ms (median of %d; worst %s ms)", fmtNum(p99.Median), len(p99.Values), fmtNum(p99.Max)), Met: p99.Median <= 5}
			if b, ok := figureByName(r.OpenFigures, tBareGIF+" latency p99"); ok {
				tr.Note = fmt.Sprintf("the bare GIF server at 50 %% of its own maximum (%s req/s): p99 %s ms", fmtNum(r.OpenRates[tBareGIF]), fmtNum(b.Median))
				if b.Median > 5 {
					tr.Note += ", i.e. the harness and machine alone exceed the target at that rate"
				}
			}
			out = append(out, tr)
		}
	}
	var worst float64
	var which string
	for _, t := range []string{tIngestGIF, tIngestE} {
		if f, ok := figureByName(r.Figures, t+" server peak RSS"); ok && f.Max >= worst {
			worst, which = f.Max, endpoint(t)
		}
	}
	if which != "" {
		out = append(out, targetResult{Name: "Ingest server peak RSS at max load", Want: "≤ 64 MB",
			Got: fmt.Sprintf("%.1f MB (highest of all max-load runs, %s)", worst, which), Met: worst <= 64, Note: r.PeakRSSNote})
	}
	return out
}

func endpoint(t string) string {
	switch t {
	case tIngestE:
		return "POST /e (10 events)"
	case tIngestGIF:
		return "GET /p.gif"
	}
	return "bare GIF"
}

func pipelineTargetChecks(r *pipelineResult) []targetResult {
	var out []targetResult
	real, ok1 := figureByName(r.Figures, variantReal+" events/s")
	raw, ok2 := figureByName(r.Figures, variantRaw+" events/s")
	if ok1 {
		out = append(out, targetResult{Name: "Pipeline Kafka → ClickHouse (decode, anonymise, aggregate)", Want: "≥ 150,000 events/s",
			Got: fmt.Sprintf("%s events/s (median of %d, %s preloaded hits)", fmtNum(real.Median), len(real.Values), fmtNum(float64(r.N))), Met: real.Median >= 150_000})
	}
	if ok1 && ok2 && raw.Median > 0 {
		ratio := real.Median / raw.Median
		out = append(out, targetResult{Name: "Pipeline vs raw consume+insert baseline", Want: "≥ 0.50 × baseline",
			Got: fmt.Sprintf("%.2f × (%s vs %s events/s)", ratio, fmtNum(real.Median), fmtNum(raw.Median)), Met: ratio >= 0.5})
	}
	return out
}

// evaluate fills Targets from whatever phases ran.
func (r *result) evaluate() {
	r.fillNoise()
	r.Targets = nil
	if r.Ingest != nil && len(r.Ingest.Figures) > 0 {
		r.Targets = append(r.Targets, ingestTargetChecks(r.Ingest)...)
	}
	if r.Pipeline != nil && len(r.Pipeline.Figures) > 0 {
		r.Targets = append(r.Targets, pipelineTargetChecks(r.Pipeline)...)
	}
	if r.E2E != nil && len(r.E2E.Markers) > 0 {
		n := len(r.E2E.Markers)
		t := targetResult{Name: fmt.Sprintf("Hit → visible in report API at %s hits/s", fmtNum(r.E2E.Rate)), Want: "p99 ≤ 5 s",
			Got: fmt.Sprintf("p99 %s ms, p50 %s ms (%d/%d markers visible)", fmtNum(r.E2E.Latency.P99), fmtNum(r.E2E.Latency.P50), r.E2E.Visible, n),
			Met: r.E2E.Visible == n && r.E2E.Latency.P99 <= 5000}
		if r.E2E.Visible < n {
			t.Note = fmt.Sprintf("%d marker(s) never became visible", n-r.E2E.Visible)
		}
		r.Targets = append(r.Targets, t)
	}
	if r.Reports != nil && len(r.Reports.Figures) > 0 {
		p95 := r.Reports.Figures[1]
		t := targetResult{Name: fmt.Sprintf("30-day campaign report over %s events, %d campaigns", fmtNum(float64(r.Reports.Dataset.Events)), r.Reports.Dataset.Campaigns),
			Want: "p95 ≤ 150 ms", Got: fmt.Sprintf("p95 %s ms (median of %d; worst %s ms), p50 %s ms", fmtNum(p95.Median), len(p95.Values), fmtNum(p95.Max), fmtNum(r.Reports.Figures[0].Median)),
			Met: p95.Median <= 150 && r.Reports.Errors == 0}
		if r.Reports.Errors > 0 {
			t.Note = fmt.Sprintf("%d request(s) failed: %s", r.Reports.Errors, r.Reports.FirstErr)
		}
		if r.Reports.Dataset.Events != 10_000_000 {
			t.Note += " Dataset is not the 10M events of the target."
		}
		r.Targets = append(r.Targets, t)
	}
}

// write stores STAMP.json, STAMP.md, latest.json and latest.md in dir.
func (r *result) write(dir, stamp string) (string, string, error) {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	md := r.markdown(stamp)
	jp, mp := filepath.Join(dir, stamp+".json"), filepath.Join(dir, stamp+".md")
	for p, b := range map[string][]byte{jp: js, mp: []byte(md), filepath.Join(dir, "latest.json"): js, filepath.Join(dir, "latest.md"): []byte(md)} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return "", "", err
		}
	}
	return mp, jp, nil
}

func fmtNum(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	a := math.Abs(v)
	switch {
	case a >= 1000:
		s := strconv.FormatInt(int64(math.Round(v)), 10)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		if neg {
			return "-" + b.String()
		}
		return b.String()
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a == 0:
		return "0"
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func fmtVal(v float64, unit string) string {
	if unit == "share" {
		return fmt.Sprintf("%.1f %%", v*100)
	}
	return fmtNum(v)
}

func figureTable(b *strings.Builder, fs []figure) {
	b.WriteString("| Figure | Median | Min | Max | Spread | Unit | n |\n|---|---:|---:|---:|---:|---|---:|\n")
	for _, f := range fs {
		if len(f.Values) == 0 {
			continue
		}
		unit := f.Unit
		if unit == "share" {
			unit = "share"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %.0f %% | %s | %d |\n", f.Name, fmtVal(f.Median, f.Unit), fmtVal(f.Min, f.Unit),
			fmtVal(f.Max, f.Unit), f.Spread*100, unit, len(f.Values))
	}
	b.WriteString("\n")
}

func (r *result) markdown(stamp string) string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "# jobpixel benchmark %s (%s mode)\n\n", stamp, r.Mode)
	if r.Mode == "quick" {
		b.WriteString("> **Quick mode**: short runs that check the harness works. Figures are indicative only; use the full run (`make bench`) for the record.\n\n")
	}
	var noisy []string
	for _, p := range r.Phases {
		if p.Foreign != nil && (p.Foreign.Max > 0.25 || p.Starvation.Max > 0.5) {
			noisy = append(noisy, fmt.Sprintf("%s (foreign CPU up to %s cores, process under test starved up to %.0f %% of its runnable time)",
				p.Name, fmtNum(p.Foreign.Max), p.Starvation.Max*100))
		}
	}
	if len(noisy) > 0 {
		fmt.Fprintf(&b, "> **Machine noise** during: %s. Throughputs there are lower bounds and latencies upper bounds; see \"Noise by phase\".\n\n",
			strings.Join(noisy, "; "))
	}
	fmt.Fprintf(&b, "Started %s, finished %s (%s). Commit `%s`", r.Started.Format(time.RFC3339), r.Finished.Format(time.RFC3339),
		r.Finished.Sub(r.Started).Round(time.Second), r.Git.Commit)
	if len(r.Git.Dirty) > 0 {
		fmt.Fprintf(&b, " with %d uncommitted/untracked path(s) (listed in the JSON)", len(r.Git.Dirty))
	}
	b.WriteString(".\n\n")

	b.WriteString("## Targets\n\nReported, never asserted. A missed target has a profile below.\n\n| Target | Wanted | Measured | Verdict |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		v := "met"
		if !t.Met {
			v = "**MISSED**"
		}
		got := t.Got
		if n := strings.TrimSpace(t.Note); n != "" {
			got += " — " + n
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Want, got, v)
	}
	if len(r.Targets) == 0 {
		b.WriteString("| (no target measured) | | | |\n")
	}
	b.WriteString("\n")
	var missed []string
	for _, t := range r.Targets {
		if !t.Met {
			missed = append(missed, t.Name)
		}
	}
	if len(missed) > 0 {
		fmt.Fprintf(&b, "Missed on this run: %s.\n\n", strings.Join(missed, "; "))
	}
	if len(r.Errors) > 0 {
		b.WriteString("**Errors** (phases that did not complete):\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
		b.WriteString("\n")
	}

	m := r.Machine
	b.WriteString("## Machine\n\n| | |\n|---|---|\n")
	for _, kv := range [][2]string{{"CPU", m.CPUModel}, {"Logical CPUs", strconv.Itoa(m.Cores)}, {"Memory", m.MemTotal},
		{"Kernel", m.Kernel}, {"Go", m.Go}, {"ClickHouse", m.ClickHouse}, {"Kafka", m.Kafka},
		{"Pinning", fmt.Sprintf("server under test on CPU %s; load generator, broker and harness on CPU %s; ClickHouse unpinned", m.ServerCPU, m.ClientCPU)},
		{"Repetitions", strconv.Itoa(o.Reps)}} {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], kv[1])
	}
	b.WriteString("\n### Noise by phase\n\nForeign CPU: cores used by processes other than the benchmark's (ClickHouse included). " +
		"Starvation: share of the runnable time of the process under test spent waiting for its CPU; it includes wake-up latency from idle, " +
		"so open-loop runs show some even on a quiet machine. Median (max) over the phase's measurement windows.\n\n" +
		"| Phase | Seconds | Load average before | after | Foreign CPU | Starvation |\n|---|---:|---|---|---|---|\n")
	for _, p := range r.Phases {
		fc, st := "", ""
		if p.Foreign != nil {
			fc = fmt.Sprintf("%s (%s)", fmtNum(p.Foreign.Median), fmtNum(p.Foreign.Max))
			st = fmt.Sprintf("%.0f %% (%.0f %%)", p.Starvation.Median*100, p.Starvation.Max*100)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s |\n", p.Name, p.Seconds, p.LoadAvgBefore, p.LoadAvgAfter, fc, st)
	}
	b.WriteString("\n")

	if in := r.Ingest; in != nil {
		fmt.Fprintf(&b, "## Ingest\n\nClosed loop, %d connections, %s warm-up + %s measured per run, targets interleaved. "+
			"`ingest-*` is jobpixel's ingest role producing to Kafka (acks=all); `bare-gif` a fasthttp handler that only answers the GIF. "+
			"`ingest-e` requests carry 10 events each.\n\n", o.Conc, o.Warmup, o.Duration)
		figureTable(&b, in.Figures)
		fmt.Fprintf(&b, "Open loop at 50 %% of each target's median maximum (latency from the scheduled send time, up to %d requests in flight): ", o.OpenConc)
		for _, t := range ingestTargets {
			fmt.Fprintf(&b, "%s %s req/s; ", t, fmtNum(in.OpenRates[t]))
		}
		b.WriteString("\n\n")
		figureTable(&b, in.OpenFigures)
		v := in.Verify
		fmt.Fprintf(&b, "Kafka check after the runs: accepted %s hits, acknowledged (`jobpixel_ingest_produced_total`) %s, topic end offsets %s, dropped %s, produce errors %s — %s.\n\n",
			fmtNum(v.AcceptedHits), fmtNum(v.ProducedHits), fmtNum(float64(v.TopicMessages)), fmtNum(v.DroppedHits), fmtNum(v.ProduceErrors), v.Note)
	}
	if p := r.Pipeline; p != nil {
		fmt.Fprintf(&b, "## Pipeline\n\n%s hits preloaded (schemas.Hit, %.0f bytes on average, lz4, keyed by visitor, %d partitions) at %s msgs/s. "+
			"Each repetition empties the events tables, then runs in a fresh process pinned to the server CPU either the real pipeline "+
			"(pipeline.New + Run, new consumer group) or the raw baseline (kafka-go partition readers + the same clickhouse-go insert of the same rows, nothing else) "+
			"until ClickHouse holds every row. Rate = rows / (last row inserted − first message received).\n\n",
			fmtNum(float64(p.N)), p.MessageBytes, benchPartitions, fmtNum(p.PreloadRate))
		figureTable(&b, p.Figures)
		fmt.Fprintf(&b, "Rows check: %s.\n\n", p.RowsNote)
	}
	if e := r.E2E; e != nil {
		fmt.Fprintf(&b, "## End to end\n\njobpixel with every role (ingest, pipeline, API) in one process pinned to the server CPU, %s hits/s open-loop pixel load "+
			"(achieved %s accepted/s, p99 %s ms), one marker hit to its own campaign every %s for %s; latency = from the marker's 200 to the first "+
			"report API answer counting it (polled every %s, so figures carry up to that much extra).\n\n",
			fmtNum(e.Rate), fmtNum(e.Background.OKRPS), fmtNum(e.Background.Latency.P99), o.MarkerEvery, o.E2EDuration, pollEvery)
		l := e.Latency
		fmt.Fprintf(&b, "All %d markers: visible %d, p50 %s ms, p90 %s ms, p99 %s ms, max %s ms. Report API latency while polling under load: p50 %s ms, p99 %s ms (%d polls).\n\n",
			len(e.Markers), e.Visible, fmtNum(l.P50), fmtNum(l.P90), fmtNum(l.P99), fmtNum(l.Max), fmtNum(e.PollLatency.P50), fmtNum(e.PollLatency.P99), e.PollLatency.N)
		b.WriteString("Repetitions are consecutive time slices of the run:\n\n")
		figureTable(&b, e.Figures)
		fmt.Fprintf(&b, "Server CPU %s cores, broker %s, foreign %s. After the load: accepted %s, acknowledged by Kafka %s, rows in ClickHouse %s (waited %.1f s): %s.\n\n",
			fmtNum(e.Usage.CPU["server"]), fmtNum(e.Usage.CPU["broker"]), fmtNum(e.Usage.ForeignCPU), fmtNum(e.Accepted), fmtNum(e.Produced), fmtNum(float64(e.Stored)),
			e.StoreWaitSecond, map[bool]string{true: "every accepted hit stored once", false: "**counts differ**"}[e.AllStored])
	}
	if rp := r.Reports; rp != nil {
		d := rp.Dataset
		how := fmt.Sprintf("generated in this run in %.0f s", d.GenSecs)
		if d.Reused {
			how = fmt.Sprintf("reused, generated %s in %.0f s", d.Generated.Format(time.RFC3339), d.GenSecs)
		}
		fmt.Fprintf(&b, "## Reports\n\nDataset `%s`: %s events over %d days across %d campaigns of %d clients (%s); conversions_daily has %s rows in %d parts. "+
			"Reports for %s … %s (30 days), %d sequential requests per repetition to random campaigns, API pinned to the server CPU; "+
			"a report held on average %.0f days, %.1f sources and %s events. Each repetition then times the same store calls directly from the harness (no HTTP, CPU 1) to show where the time goes.\n\n",
			d.DB, fmtNum(float64(d.Events)), datasetDays, d.Campaigns, d.Clients, how, fmtNum(float64(d.AggRows)), d.AggParts,
			rp.From, rp.To, rp.Requests, rp.AvgDays, rp.AvgSrc, fmtNum(rp.AvgEvents))
		figureTable(&b, rp.Figures)
		if rp.Errors > 0 {
			fmt.Fprintf(&b, "%d request(s) failed; first: %s\n\n", rp.Errors, rp.FirstErr)
		}
	}
	if mi := r.Micro; mi != nil {
		b.WriteString("## Micro-benchmarks\n\n| Package | Benchmark | ns/op (median) | min | max | B/op | allocs/op | n |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range mi.Benchmarks {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d |\n", x.Package, x.Name, fmtNum(x.NsPerOp.Median), fmtNum(x.NsPerOp.Min),
				fmtNum(x.NsPerOp.Max), fmtNum(x.BytesPerOp), fmtNum(x.AllocsPerOp), len(x.NsPerOp.Values))
		}
		b.WriteString("\n")
		for _, p := range mi.Packages {
			switch {
			case p.Skipped != "":
				fmt.Fprintf(&b, "- `%s`: skipped (%s)\n", p.Package, p.Skipped)
			case p.Err != "":
				fmt.Fprintf(&b, "- `%s`: **failed** (%s)\n", p.Package, p.Err)
			}
		}
		b.WriteString("\n<details><summary>go test output</summary>\n\n")
		for _, p := range mi.Packages {
			if p.Output == "" {
				continue
			}
			fmt.Fprintf(&b, "`%s`\n\n```\n%s\n```\n\n", p.Command, strings.TrimSpace(p.Output))
		}
		b.WriteString("</details>\n\n")
	}
	var profs []profileInfo
	if r.Ingest != nil {
		profs = append(profs, r.Ingest.Profiles...)
	}
	if r.Pipeline != nil {
		profs = append(profs, r.Pipeline.Profiles...)
	}
	if r.E2E != nil {
		profs = append(profs, r.E2E.Profiles...)
	}
	if r.Reports != nil {
		profs = append(profs, r.Reports.Profiles...)
	}
	if len(profs) > 0 {
		b.WriteString("## Profiles\n\nTaken only when a target was missed, outside the measured windows (an extra run, or the tail of the end-to-end run). The `.prof` files are next to this report (not committed; open with `go tool pprof`).\n\n")
		for _, p := range profs {
			fmt.Fprintf(&b, "### %s\n\n%s; file `%s`.\n\n```\n%s\n```\n\n", p.Name, p.Why, filepath.Base(p.File), p.Top)
		}
	}
	b.WriteString("See bench/README.md for what each figure means and how it is measured.\n")
	return b.String()
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/internal/store"
)

// options are the knobs of a run; quick mode changes the defaults.
type options struct {
	Quick      bool
	Phases     []string
	Jobpixel   string // the jobpixel binary (broker)
	Self       string // this binary (children)
	ClickHouse string
	Out        string
	DataDir    string
	ServerCPU  string
	ClientCPU  string
	Pin        bool
	Keep       bool

	Reps     int
	Warmup   time.Duration
	Duration time.Duration
	Conc     int
	OpenConc int

	PipelineN int

	E2EWarmup   time.Duration
	E2EDuration time.Duration
	E2ERate     int
	MarkerEvery time.Duration

	ReportRequests  int // per repetition
	ReportEvents    int
	ReportCampaigns int

	MicroCount     int
	MicroBenchtime string
	MicroPackages  []string

	ProfileSeconds int
}

var allPhases = []string{"micro", "ingest", "pipeline", "e2e", "reports"}

func envBool(k string) bool {
	v := os.Getenv(k)
	return v == "1" || v == "true" || v == "yes"
}

func parseOptions(args []string) (*options, []string, error) {
	o := &options{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	quick := fs.Bool("quick", envBool("BENCH_QUICK"), "short run (~2-3 min) to check the harness; env BENCH_QUICK=1")
	phases := fs.String("phases", os.Getenv("BENCH_PHASES"), "comma-separated subset of "+strings.Join(allPhases, ",")+" (env BENCH_PHASES; default all)")
	fs.StringVar(&o.Jobpixel, "jobpixel", "bin/jobpixel", "jobpixel binary (runs `jobpixel broker`)")
	fs.StringVar(&o.ClickHouse, "clickhouse", "127.0.0.1:19000", "ClickHouse native address")
	fs.StringVar(&o.Out, "out", "bench/results", "directory for the result files")
	fs.StringVar(&o.DataDir, "data-dir", ".data/bench", "scratch directory (broker data, child logs)")
	fs.StringVar(&o.ServerCPU, "server-cpu", "0", "taskset CPU list of the server under test")
	fs.StringVar(&o.ClientCPU, "client-cpu", "1", "taskset CPU list of the load generator, the broker and this process")
	nopin := fs.Bool("no-pin", false, "do not pin with taskset")
	fs.BoolVar(&o.Keep, "keep", false, "keep the scratch directory of the run")
	reps := fs.Int("reps", 0, "repetitions of every measurement (default 5, quick 3; env BENCH_REPS)")
	warm := fs.Duration("warmup", 0, "ingest warm-up per measurement (default 2s, quick 0.5s)")
	dur := fs.Duration("duration", 0, "ingest measured time per measurement (default 10s, quick 2s)")
	fs.IntVar(&o.Conc, "conc", 64, "closed-loop connections of the load generator")
	fs.IntVar(&o.OpenConc, "open-conc", 256, "most requests in flight in open-loop runs")
	pn := fs.Int("pipeline-events", 0, "hits preloaded for the pipeline (default 2,000,000, quick 200,000)")
	e2e := fs.Duration("e2e-duration", 0, "measured time of the end-to-end run (default 90s, quick 20s)")
	fs.IntVar(&o.E2ERate, "e2e-rate", 1000, "hits/s of the end-to-end run")
	fs.DurationVar(&o.MarkerEvery, "marker-every", 500*time.Millisecond, "interval of marker hits in the end-to-end run")
	rr := fs.Int("report-requests", 0, "report requests per repetition (default 200, quick 40)")
	fs.IntVar(&o.ReportEvents, "report-events", 10_000_000, "events of the cached report dataset")
	fs.IntVar(&o.ReportCampaigns, "report-campaigns", 1000, "campaigns of the cached report dataset")
	mc := fs.Int("micro-count", 0, "go test -count of the micro-benchmarks (default 5, quick 3)")
	mb := fs.String("micro-benchtime", "", "go test -benchtime (default 1s, quick 100ms)")
	pkgs := fs.String("micro-packages", "ingest,schemas,anonymize,consent", "packages of the micro-benchmarks")
	ps := fs.Int("profile-seconds", 0, "length of a CPU profile taken when a target is missed (default 10, quick 4)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	o.Quick, o.Pin = *quick, !*nopin
	pick := func(set, quick, full int) int {
		if set > 0 {
			return set
		}
		if o.Quick {
			return quick
		}
		return full
	}
	pickD := func(set, quick, full time.Duration) time.Duration {
		if set > 0 {
			return set
		}
		if o.Quick {
			return quick
		}
		return full
	}
	if n, err := strconv.Atoi(os.Getenv("BENCH_REPS")); err == nil && *reps == 0 {
		*reps = n
	}
	o.Reps = pick(*reps, 3, 5)
	o.Warmup = pickD(*warm, 500*time.Millisecond, 2*time.Second)
	o.Duration = pickD(*dur, 2*time.Second, 10*time.Second)
	o.PipelineN = pick(*pn, 200_000, 2_000_000)
	o.E2EWarmup = pickD(0, 4*time.Second, 5*time.Second)
	o.E2EDuration = pickD(*e2e, 20*time.Second, 90*time.Second)
	o.ReportRequests = pick(*rr, 40, 200)
	o.MicroCount = pick(*mc, 3, 5)
	o.MicroBenchtime = *mb
	if o.MicroBenchtime == "" {
		o.MicroBenchtime = map[bool]string{true: "100ms", false: "1s"}[o.Quick]
	}
	o.MicroPackages = strings.Split(*pkgs, ",")
	o.ProfileSeconds = pick(*ps, 4, 10)
	o.Phases = allPhases
	if *phases != "" {
		o.Phases = nil
		for _, p := range strings.Split(*phases, ",") {
			p = strings.TrimSpace(p)
			if !slices.Contains(allPhases, p) {
				return nil, nil, fmt.Errorf("unknown phase %q (want %s)", p, strings.Join(allPhases, ","))
			}
			o.Phases = append(o.Phases, p)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	o.Self = self
	if o.Jobpixel, err = filepath.Abs(o.Jobpixel); err != nil {
		return nil, nil, err
	}
	return o, args, nil
}

// env is the state of one run.
type env struct {
	o      *options
	log    *slog.Logger
	stamp  string
	runDir string
	res    *result
	goBin  string

	// The bench database (fresh every run) and what was created in it.
	st        *store.Store
	clientID  string
	token     string
	campaigns []string // regular campaigns
	markers   []string // one per end-to-end marker hit
}

const (
	benchDB         = "jobpixel_bench"
	benchCampaigns  = 100
	benchPartitions = 6
)

func runMain(args []string, log *slog.Logger) error {
	o, rawArgs, err := parseOptions(args)
	if err != nil {
		return err
	}
	// Pin this process (and so the children that are not pinned
	// explicitly) to the client CPUs, once, by re-executing under taskset.
	if o.Pin {
		if _, err := exec.LookPath("taskset"); err != nil {
			log.Warn("taskset not found: running unpinned")
			o.Pin = false
		}
	}
	if !o.Pin {
		o.ServerCPU, o.ClientCPU = "", ""
	} else if os.Getenv("JOBPIXEL_BENCH_PINNED") == "" {
		ts, _ := exec.LookPath("taskset")
		argv := append([]string{"taskset", "-c", o.ClientCPU, o.Self, "run"}, rawArgs...)
		return syscall.Exec(ts, argv, append(os.Environ(), "JOBPIXEL_BENCH_PINNED=1"))
	}
	e := &env{o: o, log: log, stamp: time.Now().UTC().Format("20060102-150405")}
	e.goBin, _ = exec.LookPath("go")
	if e.goBin == "" {
		e.goBin = "/usr/local/go/bin/go"
	}
	e.runDir, err = filepath.Abs(filepath.Join(o.DataDir, "run-"+e.stamp))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(e.runDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		log.Warn("interrupted: stopping children", "signal", s, "scratch", e.runDir)
		stopAllChildren()
		os.Exit(130)
	}()

	e.res = &result{Started: time.Now().UTC(), Mode: map[bool]string{true: "quick", false: "full"}[o.Quick], Options: o}
	e.res.Machine = describeMachine(o)
	e.res.Git = describeGit()
	ctx := context.Background()
	log.Info("jobpixel benchmark", "mode", e.res.Mode, "phases", o.Phases, "scratch", e.runDir,
		"server_cpu", o.ServerCPU, "client_cpu", o.ClientCPU)

	needsDB := slices.ContainsFunc(o.Phases, func(p string) bool { return p == "ingest" || p == "pipeline" || p == "e2e" })
	if needsDB || slices.Contains(o.Phases, "reports") {
		if v, err := clickhouseVersion(ctx, o.ClickHouse); err == nil {
			e.res.Machine.ClickHouse = v
		} else {
			return fmt.Errorf("clickhouse at %s: %w (start it with `make clickhouse`)", o.ClickHouse, err)
		}
	}
	if needsDB {
		if err := e.setupBenchDB(ctx); err != nil {
			return fmt.Errorf("bench database: %w", err)
		}
		defer e.st.Close()
	}
	phases := map[string]func(context.Context) error{
		"micro": e.micro, "ingest": e.ingest, "pipeline": e.pipeline, "e2e": e.e2e, "reports": e.reports,
	}
	for _, p := range o.Phases {
		start := time.Now()
		log.Info("phase start", "phase", p)
		la := loadAvg()
		err := phases[p](ctx)
		e.res.Phases = append(e.res.Phases, phaseInfo{Name: p, Seconds: time.Since(start).Seconds(), LoadAvgBefore: la, LoadAvgAfter: loadAvg()})
		if err != nil {
			log.Error("phase failed", "phase", p, "err", err)
			e.res.Errors = append(e.res.Errors, fmt.Sprintf("%s: %v", p, err))
		}
		log.Info("phase done", "phase", p, "seconds", int(time.Since(start).Seconds()))
	}
	e.res.Finished = time.Now().UTC()
	e.res.evaluate()
	md, js, err := e.res.write(o.Out, e.stamp)
	if err != nil {
		return err
	}
	fmt.Printf("results: %s\n         %s\n", md, js)
	if len(e.res.Errors) > 0 || o.Keep {
		log.Info("scratch directory kept (child logs)", "dir", e.runDir)
	} else {
		_ = os.RemoveAll(e.runDir)
	}
	if len(e.res.Errors) > 0 {
		return fmt.Errorf("%d phase(s) failed: %s", len(e.res.Errors), strings.Join(e.res.Errors, "; "))
	}
	return nil
}

// setupBenchDB recreates the bench database with one client, the regular
// campaigns and the marker campaigns of the end-to-end run.
func (e *env) setupBenchDB(ctx context.Context) error {
	boot, err := store.Open(ctx, store.Config{Addr: e.o.ClickHouse, Database: "default"})
	if err != nil {
		return err
	}
	err = boot.Conn().Exec(ctx, "DROP DATABASE IF EXISTS "+benchDB)
	boot.Close()
	if err != nil {
		return err
	}
	e.st, err = store.Open(ctx, store.Config{Addr: e.o.ClickHouse, Database: benchDB, ReadTimeout: 5 * time.Minute})
	if err != nil {
		return err
	}
	if _, err := e.st.Migrate(ctx); err != nil {
		return err
	}
	c, token, err := e.st.CreateClient(ctx, "Bench Recruitment")
	if err != nil {
		return err
	}
	e.clientID, e.token = c.ID, token
	nMarkers := int(e.o.E2EDuration/e.o.MarkerEvery) + 1
	var ids []string
	for i := 0; i < benchCampaigns; i++ {
		id := fmt.Sprintf("bcmp_%03d", i)
		e.campaigns = append(e.campaigns, id)
		ids = append(ids, id)
	}
	for i := 0; i < nMarkers; i++ {
		id := fmt.Sprintf("bmark_%04d", i)
		e.markers = append(e.markers, id)
		ids = append(ids, id)
	}
	return parallel(8, len(ids), func(i int) error {
		_, err := e.st.CreateCampaign(ctx, e.clientID, "bench "+ids[i], store.CampaignOptions{ID: ids[i]})
		return err
	})
}

// truncateEvents empties the events table and its aggregates.
func truncateEvents(ctx context.Context, st *store.Store) error {
	for _, t := range []string{"events", "conversions_daily", "bots_daily"} {
		if err := st.Conn().Exec(ctx, "TRUNCATE TABLE "+t); err != nil {
			return fmt.Errorf("truncate %s: %w", t, err)
		}
	}
	return nil
}

func countEvents(ctx context.Context, st *store.Store) (uint64, error) {
	var n uint64
	err := st.Conn().QueryRow(ctx, "SELECT count() FROM events").Scan(&n)
	return n, err
}

func clickhouseVersion(ctx context.Context, addr string) (string, error) {
	st, err := store.Open(ctx, store.Config{Addr: addr, Database: "default", DialTimeout: 3 * time.Second})
	if err != nil {
		return "", err
	}
	defer st.Close()
	var v string
	err = st.Conn().QueryRow(ctx, "SELECT version()").Scan(&v)
	return v, err
}

// parallel runs f(0..n-1) on k goroutines and returns the first error.
func parallel(k, n int, f func(i int) error) error {
	errc := make(chan error, n)
	next := make(chan int)
	for w := 0; w < k; w++ {
		go func() {
			for i := range next {
				errc <- f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	var first error
	for i := 0; i < n; i++ {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// startBroker runs `jobpixel broker` with a fresh data directory, pinned to
// the client CPUs, with topic seeded.
func (e *env) startBroker(name, topic string) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	c, err := startChild(name, e.o.ClientCPU, e.runDir, []string{e.o.Jobpixel, "broker",
		"-data-dir", filepath.Join(e.runDir, name), "-broker.port", strconv.Itoa(port),
		"-kafka.topic", topic, "-kafka.partitions", strconv.Itoa(benchPartitions)})
	if err != nil {
		return nil, "", err
	}
	addr, err := c.waitLine("BROKER ", 30*time.Second)
	if err != nil {
		c.kill()
		return nil, "", err
	}
	return c, addr, nil
}

// startServe runs jobpixel's roles (app.Start) pinned to the server CPUs.
func (e *env) startServe(name string, flags ...string) (*child, map[string]string, error) {
	argv := append([]string{e.o.Self, "serve",
		"-data-dir", filepath.Join(e.runDir, name),
		"-clickhouse.addr", e.o.ClickHouse,
		"-ingest.addr", "127.0.0.1:0", "-api.addr", "127.0.0.1:0", "-ops.addr", "127.0.0.1:0"}, flags...)
	c, err := startChild(name, e.o.ServerCPU, e.runDir, argv)
	if err != nil {
		return nil, nil, err
	}
	line, err := c.waitLine("READY ", 60*time.Second)
	if err != nil {
		c.kill()
		return nil, nil, err
	}
	return c, readyFields(line), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// topicEnd returns the end offset of every partition of topic.
func topicEnd(ctx context.Context, broker, topic string) (map[int]int64, error) {
	cl := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 10 * time.Second}
	var reqs []kafka.OffsetRequest
	for p := 0; p < benchPartitions; p++ {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	resp, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

func sumOffsets(m map[int]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// scrapeMetrics reads a Prometheus text endpoint into name{labels} → value.
func scrapeMetrics(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, nil
}

// sumMetric adds every series of the metric name.
func sumMetric(m map[string]float64, name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// takeProfile fetches a CPU profile of seconds from a pprof listener into
// path and returns its top functions.
func (e *env) takeProfile(pprofAddr, kind string, seconds int, path string) (string, error) {
	u := fmt.Sprintf("http://%s/debug/pprof/%s", pprofAddr, kind)
	if kind == "profile" {
		u += "?seconds=" + strconv.Itoa(seconds)
	}
	c := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", u, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	sample := ""
	if kind == "heap" {
		sample = "inuse_space"
	}
	return e.pprofTop(path, sample)
}

// pprofTop summarises a profile with `go tool pprof -top`: the functions
// with the most own (flat) time, then the most cumulative time (where the
// time goes, callers included).
func (e *env) pprofTop(path, sampleIndex string) (string, error) {
	var parts []string
	for _, view := range [][]string{{"-top", "-nodecount=20"}, {"-top", "-cum", "-nodecount=30"}} {
		args := append([]string{"tool", "pprof"}, view...)
		if sampleIndex != "" {
			args = append(args, "-sample_index="+sampleIndex)
		}
		out, err := exec.Command(e.goBin, append(args, path)...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("go tool pprof: %w", err)
		}
		text := strings.TrimSpace(string(out))
		if len(parts) > 0 {
			// The header (file, type, duration) is the same: keep the table.
			if i := strings.Index(text, "      flat"); i >= 0 {
				text = "cumulative:\n" + text[i:]
			}
		}
		parts = append(parts, text)
	}
	return strings.Join(parts, "\n\n"), nil
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

var errMissing = errors.New("missing")

package faulttest

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
)

const topic = "hits"

var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests mostly wait on outages: run them side by side unless -parallel
	// says otherwise (the default, GOMAXPROCS, is 2 here).
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "8")
	}
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "jobpixel-faulttest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binPath = filepath.Join(dir, "jobpixel")
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out, err := exec.Command(goBin, "build", "-o", binPath, "github.com/jobpixel/jobpixel/cmd/jobpixel").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "faulttest: go build ./cmd/jobpixel: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("fault-injection test: starts child processes and waits for outages")
	}
}

// freePort returns a port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The kernel may hand a just-closed port out again: never give one
		// to two listeners of this test run.
		if !portsGiven[p] {
			portsGiven[p] = true
			return p
		}
	}
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// proc is a child process of the jobpixel binary. Its output goes to a log
// file, printed (tail) when the test fails.
type proc struct {
	t    *testing.T
	name string
	args []string
	logf string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

func newProc(t *testing.T, name string, args ...string) *proc {
	p := &proc{t: t, name: name, args: args, logf: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.logf)
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("--- last lines of %s ---\n%s", name, strings.Join(lines, "\n"))
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.runs++
	fmt.Fprintf(f, "=== start %d: %s %s\n", p.runs, p.name, strings.Join(p.args, " "))
	cmd := exec.Command(binPath, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// cleanEnv is the environment without JOBPIXEL_ overrides: children get
// flags only.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JOBPIXEL_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) signal(sig syscall.Signal, wait time.Duration) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(wait):
		return false
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() { p.signal(syscall.SIGKILL, 10*time.Second) }

// term sends SIGTERM and waits up to d for a clean exit; it reports the
// exit code (-1 if it had to be killed).
func (p *proc) term(d time.Duration) int {
	if !p.signal(syscall.SIGTERM, d) {
		p.kill()
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitLog waits until the log has a line containing s (in the current run)
// and returns it.
func (p *proc) waitLog(s string, d time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(p.logf)
		runs := strings.Split(string(b), "=== start ")
		last := runs[len(runs)-1]
		sc := bufio.NewScanner(strings.NewReader(last))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				return sc.Text()
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no log line with %q after %v", p.name, s, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// env is one test's world: a database, a broker, the processes.
type env struct {
	t          *testing.T
	chAddr     string
	db         string
	st         *store.Store
	clientID   string
	campaign   string
	dataDir    string
	brokerPort int
	broker     *proc
	ingest     *proc
	ingestAddr string
	ingestOps  string // the ingest process's -ops.addr
	pipeline   *proc
	pipeOps    string // the pipeline's -ops.addr
}

// newEnv creates a database with one client and campaign on the ClickHouse
// at chAddr ("" for the shared test server) and a broker child process.
func newEnv(t *testing.T, chAddr string) *env {
	t.Helper()
	e := &env{t: t, dataDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if chAddr == "" {
		e.chAddr = testenv.ClickHouseAddr(t)
		e.st = testenv.Store(t)
	} else {
		e.chAddr = chAddr
		st, err := store.Open(ctx, store.Config{Addr: chAddr, Database: "faulttest"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		e.st = st
	}
	var rows []struct {
		DB string `ch:"db"`
	}
	if err := e.st.Conn().Select(ctx, &rows, "SELECT currentDatabase() AS db"); err != nil || len(rows) != 1 {
		t.Fatalf("current database: %v", err)
	}
	e.db = rows[0].DB
	cl, _, err := e.st.CreateClient(ctx, "Fault Jobs")
	if err != nil {
		t.Fatal(err)
	}
	camp, err := e.st.CreateCampaign(ctx, cl.ID, "Faults", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.clientID, e.campaign = cl.ID, camp.ID
	e.brokerPort = freePort(t)
	e.broker = newProc(t, "broker", "broker", "-data-dir", filepath.Join(e.dataDir, "broker"),
		"-broker.port", strconv.Itoa(e.brokerPort), "-kafka.topic", topic, "-kafka.partitions", "3")
	e.startBroker()
	return e
}

func (e *env) brokerAddr() string { return "127.0.0.1:" + strconv.Itoa(e.brokerPort) }

func (e *env) startBroker() {
	e.t.Helper()
	e.broker.start()
	e.broker.waitLog("BROKER ", 30*time.Second)
}

func (e *env) common() []string {
	return []string{"-kafka.brokers", e.brokerAddr(), "-kafka.topic", topic, "-kafka.group", "pipe",
		"-clickhouse.addr", e.chAddr, "-clickhouse.database", e.db, "-shutdown-timeout", "20s"}
}

// startIngest starts (or restarts) the ingest process; extra flags are
// appended. It returns once its ops listener's /healthz answers.
func (e *env) startIngest(extra ...string) {
	e.t.Helper()
	if e.ingest == nil {
		e.ingestAddr = "127.0.0.1:" + strconv.Itoa(freePort(e.t))
		e.ingestOps = "127.0.0.1:" + strconv.Itoa(freePort(e.t))
		args := append([]string{"serve", "-roles", "ingest", "-ingest.addr", e.ingestAddr, "-ops.addr", e.ingestOps,
			"-data-dir", filepath.Join(e.dataDir, "ingest")}, e.common()...)
		e.ingest = newProc(e.t, "ingest", append(args, extra...)...)
	}
	e.ingest.start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + e.ingestOps + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("ingest did not come up: %v", err)
		}
		select {
		case <-e.ingest.done:
			e.t.Fatal("ingest exited at start")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *env) startPipeline(extra ...string) {
	e.t.Helper()
	if e.pipeline == nil {
		e.pipeOps = "127.0.0.1:" + strconv.Itoa(freePort(e.t))
		args := append([]string{"serve", "-roles", "pipeline", "-data-dir", filepath.Join(e.dataDir, "pipeline"),
			"-ops.addr", e.pipeOps,
			"-pipeline.batch-size", "1000", "-pipeline.flush-interval", "200ms"}, e.common()...)
		e.pipeline = newProc(e.t, "pipeline", append(args, extra...)...)
	}
	e.pipeline.start()
}

// metric reads one sample of the ingest process's /metrics (0 if absent,
// -1 if ingest does not answer); name may carry labels as exposed, e.g.
// `x_total{endpoint="pixel"}`.
func (e *env) metric(name string) float64 { return scrape(e.ingestOps, name) }

// pipeMetric reads one sample of the pipeline process's /metrics.
func (e *env) pipeMetric(name string) float64 { return scrape(e.pipeOps, name) }

func scrape(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[len(name):]), 64)
			return v
		}
	}
	return 0
}

func (e *env) readyz() int {
	resp, err := http.Get("http://" + e.ingestOps + "/readyz")
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// load sends pixel hits with unique client event ids and records which
// ingest accepted (GIF without reject header).
type load struct {
	e      *env
	next   atomic.Int64
	mu     sync.Mutex
	acc    map[string]time.Time // eid → when the accepting response arrived
	sentAt map[string]time.Time // eid → when the accepted request was sent
	events map[string]int       // accepted hits by event
	rej    map[string]int       // rejected by reason, or transport error
	client *http.Client
	// retried counts batches answered 503 and sent again.
	retried atomic.Int64
}

var eventNames = []string{"page_view", "apply_click", "application", "vacancy_email"}

func newLoad(e *env) *load {
	return &load{e: e, acc: map[string]time.Time{}, sentAt: map[string]time.Time{}, events: map[string]int{}, rej: map[string]int{},
		// A generous time-out: a hit the server accepted after the client
		// gave up would be stored but not counted as accepted.
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
}

// one sends hit number i; it reports whether it was accepted.
func (l *load) one(i int) bool {
	ev := eventNames[i%len(eventNames)]
	eid := "h" + strconv.Itoa(i)
	u := fmt.Sprintf("http://%s/p.gif?c=%s&e=%s&eid=%s&v=job-%d&u=https%%3A%%2F%%2Fjobs.example.com%%2Fjob%%3Futm_source%%3Dfault",
		l.e.ingestAddr, l.e.campaign, ev, eid, i%7)
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
	sent := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		l.mu.Lock()
		l.rej["transport_error"]++
		l.mu.Unlock()
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	reason := resp.Header.Get("X-Jobpixel-Reject")
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case resp.StatusCode != 200:
		l.rej["status_"+strconv.Itoa(resp.StatusCode)]++
		return false
	case reason != "":
		l.rej[reason]++
		return false
	}
	l.acc[eid] = time.Now()
	l.sentAt[eid] = sent
	l.events[ev]++
	return true
}

// run sends about rate hits per second from workers goroutines until ctx
// ends.
func (l *load) run(ctx context.Context, rate, workers int) {
	var wg sync.WaitGroup
	per := time.Duration(float64(time.Second) * float64(workers) / float64(rate))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(per)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				l.one(int(l.next.Add(1)))
			}
		}()
	}
	wg.Wait()
}

// runFor runs the load for d in the background and returns a function that
// waits for it to end.
func (l *load) start(rate, workers int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.run(ctx, rate, workers); close(done) }()
	return func() { cancel(); <-done }
}

func (l *load) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acc)
}

func (l *load) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("sent %d, accepted %d, rejected %v", l.next.Load(), len(l.acc), l.rej)
}

// batches sends n POST /e batches of per events from workers goroutines,
// event ids prefix0, prefix1, …; every event must be accepted.
func (l *load) batches(prefix string, n, per, workers int) error {
	var mu sync.Mutex
	next := 0
	errs := make(chan error, workers)
	for range workers {
		go func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				mu.Lock()
				b := next
				next++
				mu.Unlock()
				if b >= n {
					errs <- nil
					return
				}
				var sb strings.Builder
				fmt.Fprintf(&sb, `{"c":%q,"events":[`, l.e.campaign)
				evs := make([]string, per)
				for i := range per {
					id := b*per + i
					evs[i] = eventNames[id%len(eventNames)]
					if i > 0 {
						sb.WriteByte(',')
					}
					fmt.Fprintf(&sb, `{"e":%q,"eid":"%s%d","u":"https://jobs.example.com/job/%d?utm_source=batch"}`, evs[i], prefix, id, id%97)
				}
				sb.WriteString("]}")
				// Like the tracker, retry a 503 (overload) with the same
				// event ids: the pipeline counts each eid once.
				var resp *http.Response
				var body struct{ Accepted int }
				for attempt := 0; ; attempt++ {
					req, _ := http.NewRequest("POST", "http://"+l.e.ingestAddr+"/e", strings.NewReader(sb.String()))
					req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
					var err error
					resp, err = client.Do(req)
					if err != nil {
						errs <- err
						return
					}
					body.Accepted = 0
					json.NewDecoder(resp.Body).Decode(&body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusServiceUnavailable || attempt == 50 {
						break
					}
					l.retried.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
				if resp.StatusCode != 202 || body.Accepted != per {
					errs <- fmt.Errorf("batch %d: status %d, accepted %d (%s)", b, resp.StatusCode, body.Accepted, resp.Header.Get("X-Jobpixel-Reject"))
					return
				}
				l.mu.Lock()
				now := time.Now()
				for i := range per {
					l.acc[prefix+strconv.Itoa(b*per+i)] = now
					l.events[evs[i]]++
				}
				l.mu.Unlock()
				l.next.Add(int64(per))
			}
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// rss returns the resident memory of p's current process in bytes.
func (p *proc) rss() int64 {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// report reads the campaign report totals.
func (e *env) report(ctx context.Context) (store.Counts, error) {
	now := time.Now().UTC()
	r, err := e.st.CampaignReport(ctx, e.clientID, e.campaign, now.AddDate(0, 0, -1), now.AddDate(0, 0, 1))
	return r.Totals, err
}

// storedIDs returns how often each client event id is stored.
func (e *env) storedIDs(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		ID string `ch:"client_event_id"`
		N  uint64 `ch:"n"`
	}
	err := e.st.Conn().Select(ctx, &rows, `SELECT client_event_id, count() AS n FROM events WHERE campaign_id = ? GROUP BY client_event_id`, e.campaign)
	m := make(map[string]int, len(rows))
	for _, r := range rows {
		m[r.ID] = int(r.N)
	}
	return m, err
}

func countsOf(events map[string]int) store.Counts {
	return store.Counts{PageViews: uint64(events["page_view"]), ApplyClicks: uint64(events["apply_click"]),
		Applications: uint64(events["application"]), VacancyEmails: uint64(events["vacancy_email"])}
}

func sameTotals(a, b store.Counts) bool {
	return a.PageViews == b.PageViews && a.ApplyClicks == b.ApplyClicks && a.Applications == b.Applications && a.VacancyEmails == b.VacancyEmails
}

// verifyExact waits until the report's totals equal the accepted hits,
// checks they stay so, and that the events table holds each accepted hit
// exactly once and nothing else.
func (e *env) verifyExact(l *load, d time.Duration) {
	e.t.Helper()
	l.mu.Lock()
	want := countsOf(l.events)
	acc := make(map[string]bool, len(l.acc))
	for id := range l.acc {
		acc[id] = true
	}
	l.mu.Unlock()
	if len(acc) == 0 {
		e.t.Fatal("no hit was accepted")
	}
	ctx := context.Background()
	deadline := time.Now().Add(d)
	var got store.Counts
	for {
		var err error
		got, err = e.report(ctx)
		if err == nil && sameTotals(got, want) {
			break
		}
		if time.Now().After(deadline) {
			e.diagnose(acc)
			e.t.Fatalf("report totals %+v, want exactly the accepted %+v (%s)", got, want, l.summary())
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Nothing arrives later (a late duplicate would).
	time.Sleep(2 * time.Second)
	if again, err := e.report(ctx); err != nil || !sameTotals(again, want) {
		e.t.Fatalf("report totals changed to %+v (%v), want %+v", again, err, want)
	}
	stored, err := e.storedIDs(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for id, n := range stored {
		if n != 1 || !acc[id] {
			e.diagnose(acc)
			e.t.Fatalf("event %s stored %d times (accepted: %v)", id, n, acc[id])
		}
	}
	if len(stored) != len(acc) {
		e.diagnose(acc)
		e.t.Fatalf("%d events stored, %d accepted", len(stored), len(acc))
	}
	e.t.Logf("exact: %d accepted hits, report %+v (%s)", len(acc), got, l.summary())
}

// diagnose logs which accepted hits are missing or duplicated.
func (e *env) diagnose(acc map[string]bool) {
	stored, err := e.storedIDs(context.Background())
	if err != nil {
		e.t.Logf("diagnose: %v", err)
		return
	}
	var missing, dup, extra []string
	for id := range acc {
		if stored[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range stored {
		if n > 1 {
			dup = append(dup, id)
		}
		if !acc[id] {
			extra = append(extra, id)
		}
	}
	first := func(s []string) []string { return s[:min(len(s), 10)] }
	e.t.Logf("diagnose: %d accepted, %d stored ids; missing %d %v, duplicated %d %v, not accepted %d %v",
		len(acc), len(stored), len(missing), first(missing), len(dup), first(dup), len(extra), first(extra))
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond) // fine-grained: kills aim at the moment after an insert
	}
}

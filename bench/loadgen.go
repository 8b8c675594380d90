package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The load generator: a fasthttp client on loopback, bounded in time and in
// request count. Closed loop: conc connections each send the next request as
// soon as the previous answer arrived (measures the maximum rate). Open loop:
// requests are scheduled at a fixed rate and latency counts from the
// scheduled time, so a stalled server is charged for the requests it delayed
// (no coordinated omission).

type loadConfig struct {
	Addr        string
	Kind        string // pixel or events
	Mode        string // closed or open
	Conc        int
	Rate        float64
	Warmup      time.Duration
	Duration    time.Duration
	MaxRequests int64
	Campaigns   []string
	Seed        int
}

type loadResult struct {
	Kind     string  `json:"kind"`
	Mode     string  `json:"mode"`
	Conc     int     `json:"conc"`
	Rate     float64 `json:"target_rate,omitempty"`
	Seconds  float64 `json:"seconds"`
	Requests int64   `json:"requests"` // answered in the measured window
	OK       int64   `json:"ok"`       // 2xx and not rejected
	Rejected int64   `json:"rejected"` // X-Jobpixel-Reject set, or 503 on /e
	Non2xx   int64   `json:"non_2xx"`
	Errors   int64   `json:"errors"` // transport errors and timeouts
	// Backlog counts open-loop requests the generator could not even
	// schedule (its own queue full): the server fell far behind.
	Backlog    int64     `json:"backlog_dropped,omitempty"`
	RPS        float64   `json:"rps"`    // answered requests per second
	OKRPS      float64   `json:"ok_rps"` // accepted requests per second
	Latency    latencies `json:"latency"`
	CPUSeconds float64   `json:"cpu_seconds"` // the generator's own CPU
	FirstError string    `json:"first_error,omitempty"`
}

func loadMain(args []string) error {
	var c loadConfig
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", "", "host:port of the server (loopback)")
	fs.StringVar(&c.Kind, "kind", "pixel", "pixel (GET /p.gif) or events (POST /e, 10 events per body)")
	fs.StringVar(&c.Mode, "mode", "closed", "closed (max rate) or open (fixed -rate)")
	fs.IntVar(&c.Conc, "conc", 64, "connections (closed) or most requests in flight (open)")
	fs.Float64Var(&c.Rate, "rate", 0, "requests per second in open mode")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "load before measuring")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "measured time")
	fs.Int64Var(&c.MaxRequests, "max-requests", 20_000_000, "stop after this many requests")
	camps := fs.String("campaigns", "", "comma-separated campaign ids")
	fs.IntVar(&c.Seed, "seed", 1, "varies the generated requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.Campaigns = strings.Split(*camps, ",")
	if c.Addr == "" || *camps == "" {
		return errors.New("-addr and -campaigns are required")
	}
	if c.Mode == "open" && c.Rate <= 0 {
		return errors.New("open mode needs -rate")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runLoad(ctx, c)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
	return nil
}

// request is one prepared request.
type request struct {
	uri  string
	ua   string
	ref  string
	body []byte
}

var (
	utmSources = []string{"linkedin", "indeed", "newsletter", "stepstone", "xing", "facebook", "google", "glassdoor"}
	utmMediums = []string{"cpc", "email", "social", "jobboard"}
	referrers  = []string{"https://www.google.com/", "https://www.linkedin.com/jobs/view/123", "https://de.indeed.com/q-go-jobs.html",
		"https://t.co/abc", "https://duckduckgo.com/", "https://www.bing.com/search?q=go+jobs"}
	events = []string{"page_view", "page_view", "page_view", "page_view", "page_view", "page_view", "page_view", "apply_click", "apply_click", "application"}
)

func userAgent(i int) string {
	return fmt.Sprintf("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%d.0.%d.%d Safari/537.36",
		120+i%12, 6000+i%997, i%211)
}

// pageURL is a job page, with UTM parameters on about half of the hits and
// an e-mail address the anonymiser must strip on some.
func pageURL(i int) string {
	u := fmt.Sprintf("https://jobs.example.com/jobs/%d-senior-go-engineer", 1000+i%500)
	switch i % 4 {
	case 0:
		u += "?utm_source=" + utmSources[i%len(utmSources)] + "&utm_medium=" + utmMediums[i%len(utmMediums)] + "&utm_campaign=spring"
	case 1:
		u += "?utm_source=" + utmSources[(i/4)%len(utmSources)] + "&email=jane.doe%40example.com"
	}
	return u
}

// prepare builds n distinct requests of the given kind.
func prepare(kind string, campaigns []string, n, seed int) []request {
	out := make([]request, n)
	for j := range out {
		i := j*7919 + seed*104729
		camp := campaigns[i%len(campaigns)]
		r := request{ua: userAgent(i)}
		if i%3 != 0 {
			r.ref = referrers[i%len(referrers)]
		}
		switch kind {
		case "events":
			var b bytes.Buffer
			fmt.Fprintf(&b, `{"c":%q,"gdpr":"1","gcs":"G111","events":[`, camp)
			for k := 0; k < 10; k++ {
				if k > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"e":%q,"u":%q,"r":%q,"v":"job-%d","eid":"%x-%d"}`,
					events[(i+k)%len(events)], pageURL(i+k), r.ref, (i+k)%500, i, k)
			}
			b.WriteString("]}")
			r.uri, r.body = "/e", b.Bytes()
		default:
			q := url.Values{}
			q.Set("c", camp)
			q.Set("e", events[i%len(events)])
			q.Set("v", "job-"+strconv.Itoa(i%500))
			q.Set("eid", fmt.Sprintf("%x", i))
			q.Set("u", pageURL(i))
			if r.ref != "" && i%2 == 0 {
				q.Set("r", r.ref)
			}
			q.Set("gdpr", "1")
			q.Set("gcs", "G111")
			r.uri = "/p.gif?" + q.Encode()
		}
		out[j] = r
	}
	return out
}

// rejectHeader is ingest.RejectHeader.
const rejectHeader = "X-Jobpixel-Reject"

type worker struct {
	lat                               []time.Duration
	requests, ok, rej, non2xx, errors int64
	firstErr                          string
}

// outcome classifies one answered request.
func (w *worker) outcome(kind string, resp *fasthttp.Response, err error) {
	w.requests++
	switch {
	case err != nil:
		w.errors++
		if w.firstErr == "" {
			w.firstErr = err.Error()
		}
	case len(resp.Header.Peek(rejectHeader)) > 0 || resp.StatusCode() == fasthttp.StatusServiceUnavailable:
		w.rej++
		if w.firstErr == "" {
			w.firstErr = fmt.Sprintf("rejected: %d %s %s", resp.StatusCode(), resp.Header.Peek(rejectHeader), resp.Body())
		}
	case resp.StatusCode() < 200 || resp.StatusCode() > 299:
		w.non2xx++
		if w.firstErr == "" {
			w.firstErr = fmt.Sprintf("status %d: %.200s", resp.StatusCode(), resp.Body())
		}
	default:
		w.ok++
	}
}

func runLoad(ctx context.Context, c loadConfig) (loadResult, error) {
	reqs := prepare(c.Kind, c.Campaigns, 1024, c.Seed)
	hc := &fasthttp.HostClient{
		Addr:                c.Addr,
		MaxConns:            c.Conc,
		ReadTimeout:         5 * time.Second,
		WriteTimeout:        5 * time.Second,
		MaxIdleConnDuration: time.Minute,
		MaxConnWaitTimeout:  5 * time.Second,
		// The GIF and /e answers are tiny.
		ReadBufferSize: 4096,
	}
	base := "http://" + c.Addr
	do := func(r *request, req *fasthttp.Request, resp *fasthttp.Response) error {
		req.Reset()
		resp.Reset()
		req.SetRequestURI(base + r.uri)
		req.Header.SetUserAgent(r.ua)
		if r.ref != "" {
			req.Header.Set("Referer", r.ref)
		}
		if r.body != nil {
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("text/plain;charset=UTF-8")
			req.SetBodyRaw(r.body)
		}
		return hc.Do(req, resp)
	}
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	measureFrom := start.Add(c.Warmup)
	end := measureFrom.Add(c.Duration)
	hard, cancel := context.WithDeadline(ctx, end.Add(10*time.Second))
	defer cancel()
	var sent atomic.Int64
	workers := make([]*worker, c.Conc)
	var wg sync.WaitGroup
	var backlog atomic.Int64
	maxSamples := int(min(c.MaxRequests, 20_000_000)) / c.Conc
	switch c.Mode {
	case "closed":
		for i := range workers {
			w := &worker{lat: make([]time.Duration, 0, 1<<14)}
			workers[i] = w
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				for k := i; hard.Err() == nil; k += c.Conc {
					if sent.Add(1) > c.MaxRequests {
						return
					}
					t0 := time.Now()
					if t0.After(end) {
						return
					}
					err := do(&reqs[k%len(reqs)], req, resp)
					if t0.Before(measureFrom) {
						continue
					}
					if len(w.lat) < maxSamples {
						w.lat = append(w.lat, time.Since(t0))
					}
					w.outcome(c.Kind, resp, err)
				}
			}()
		}
	case "open":
		// Scheduled send times (ns after start), handed to the workers.
		jobs := make(chan int64, 1<<18)
		for i := range workers {
			w := &worker{lat: make([]time.Duration, 0, 1<<12)}
			workers[i] = w
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				k := i
				for due := range jobs {
					if hard.Err() != nil {
						continue // drain
					}
					k += c.Conc
					err := do(&reqs[k%len(reqs)], req, resp)
					intended := start.Add(time.Duration(due))
					if intended.Before(measureFrom) {
						continue
					}
					if len(w.lat) < maxSamples {
						w.lat = append(w.lat, time.Since(intended))
					}
					w.outcome(c.Kind, resp, err)
				}
			}()
		}
		interval := float64(time.Second) / c.Rate
		total := int64((c.Warmup + c.Duration).Seconds() * c.Rate)
		var i int64
		for i < total && i < c.MaxRequests && hard.Err() == nil {
			now := int64(time.Since(start))
			for ; i < total && float64(i)*interval <= float64(now); i++ {
				select {
				case jobs <- int64(float64(i) * interval):
				default:
					if float64(i)*interval >= float64(c.Warmup) {
						backlog.Add(1)
					}
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
		close(jobs)
	default:
		return loadResult{}, fmt.Errorf("unknown mode %q", c.Mode)
	}
	wg.Wait()
	measured := time.Since(measureFrom)
	if c.Mode == "closed" || measured > c.Duration {
		// Closed loop stops sending at end; the last answers arrive a little
		// later but were sent inside the window.
		measured = c.Duration
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	res := loadResult{Kind: c.Kind, Mode: c.Mode, Conc: c.Conc, Rate: c.Rate, Seconds: measured.Seconds(), Backlog: backlog.Load()}
	var all []time.Duration
	for _, w := range workers {
		res.Requests += w.requests
		res.OK += w.ok
		res.Rejected += w.rej
		res.Non2xx += w.non2xx
		res.Errors += w.errors
		if res.FirstError == "" {
			res.FirstError = w.firstErr
		}
		all = append(all, w.lat...)
	}
	res.RPS = float64(res.Requests) / measured.Seconds()
	res.OKRPS = float64(res.OK) / measured.Seconds()
	res.Latency = summarize(all)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	res.CPUSeconds = (tv(ru1.Utime) + tv(ru1.Stime) - tv(ru0.Utime) - tv(ru0.Stime)).Seconds()
	return res, nil
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/jobpixel/jobpixel/internal/store"
)

// The end-to-end benchmark runs jobpixel with every role (ingest, pipeline,
// API: what `jobpixel serve` runs) under a steady open-loop load, and sends
// a marker hit to a campaign of its own every MarkerEvery. The latency of a
// marker is the time from its /p.gif answer (accepted) to the first report
// API answer that counts it, polled every 100 ms.

type marker struct {
	Campaign   string        `json:"campaign"`
	AcceptedAt time.Time     `json:"accepted_at"`
	Latency    time.Duration `json:"latency_ns"` // 0 if never visible
	Polls      int           `json:"polls"`
	Err        string        `json:"error,omitempty"`
}

type e2eResult struct {
	Rate            float64       `json:"target_rate"`
	Seconds         float64       `json:"seconds"`
	Markers         []marker      `json:"markers"`
	Visible         int           `json:"visible"`
	Latency         latencies     `json:"latency"`            // all markers
	PollLatency     latencies     `json:"report_api_latency"` // every poll, under load
	Background      loadResult    `json:"background_load"`
	Usage           usage         `json:"usage"`
	Figures         []figure      `json:"figures"` // per time slice
	Accepted        float64       `json:"accepted_hits"`
	Produced        float64       `json:"produced_hits"`
	Stored          uint64        `json:"stored_rows"`
	AllStored       bool          `json:"all_stored"`
	StoreWaitSecond float64       `json:"store_wait_seconds"`
	Profiles        []profileInfo `json:"profiles,omitempty"`
}

const pollEvery = 100 * time.Millisecond

func (e *env) e2e(ctx context.Context) error {
	r := &e2eResult{Rate: float64(e.o.E2ERate)}
	e.res.E2E = r
	if err := truncateEvents(ctx, e.st); err != nil {
		return err
	}
	const topic = "bench.e2e"
	broker, baddr, err := e.startBroker("e2e-broker", topic)
	if err != nil {
		return err
	}
	defer broker.kill()
	srv, sf, err := e.startServe("e2e-server", "-roles", "ingest,pipeline,api", "-kafka.brokers", baddr,
		"-kafka.topic", topic, "-kafka.group", "bench-e2e-"+e.stamp, "-clickhouse.database", benchDB)
	if err != nil {
		return err
	}
	defer srv.stop(30 * time.Second)
	if err := e.smokeIngest(sf["ingest"]); err != nil {
		return err
	}
	markerRate := float64(time.Second) / float64(e.o.MarkerEvery)
	bgRate := float64(e.o.E2ERate) - markerRate
	total := e.o.E2EWarmup + e.o.E2EDuration + 15*time.Second // markers still polling at the end
	bgCfg := loadConfig{Addr: sf["ingest"], Kind: "pixel", Mode: "open", Conc: e.o.OpenConc, Rate: bgRate,
		Warmup: 0, Duration: total, Campaigns: e.campaigns, Seed: 7}
	type bgOut struct {
		lr  loadResult
		u   usage
		err error
	}
	bgc := make(chan bgOut, 1)
	go func() {
		lr, u, _, err := e.runLoadChild("load-e2e-background", bgCfg, map[string]int{"server": srv.pid(), "broker": broker.pid()}, srv.pid())
		bgc <- bgOut{lr, u, err}
	}()
	time.Sleep(e.o.E2EWarmup)

	api := "http://" + sf["api"]
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var mu sync.Mutex
	var polls []time.Duration
	nMarkers := min(int(e.o.E2EDuration/e.o.MarkerEvery), len(e.markers))
	r.Markers = make([]marker, nMarkers)
	var wg sync.WaitGroup
	t0 := time.Now()
	for k := 0; k < nMarkers; k++ {
		if d := time.Until(t0.Add(time.Duration(k) * e.o.MarkerEvery)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &r.Markers[k]
			m.Campaign = e.markers[k]
			var err error
			if m.AcceptedAt, err = e.sendMarker(sf["ingest"], m.Campaign, k); err != nil {
				m.Err = err.Error()
				return
			}
			deadline := m.AcceptedAt.Add(60 * time.Second)
			for time.Now().Before(deadline) {
				time.Sleep(pollEvery)
				pt := time.Now()
				n, err := e.reportPageViews(hc, api, m.Campaign)
				now := time.Now()
				mu.Lock()
				polls = append(polls, now.Sub(pt))
				mu.Unlock()
				m.Polls++
				if err != nil {
					m.Err = err.Error()
					continue
				}
				if n >= 1 {
					m.Latency, m.Err = now.Sub(m.AcceptedAt), ""
					return
				}
			}
			if m.Err == "" {
				m.Err = "not visible within 60 s"
			}
		}()
	}
	wg.Wait()
	r.Seconds = time.Since(t0).Seconds()
	var lat []time.Duration
	for _, m := range r.Markers {
		if m.Latency > 0 {
			lat = append(lat, m.Latency)
		}
	}
	r.Visible = len(lat)
	r.Latency = summarize(lat)
	// Missed: profile the server while the background load still runs.
	if r.Visible < nMarkers || r.Latency.P99 > 5000 {
		path := filepath.Join(e.o.Out, e.stamp+"-e2e-server.cpu.prof")
		secs := min(e.o.ProfileSeconds, 10)
		if top, err := e.takeProfile(sf["pprof"], "profile", secs, path); err == nil {
			r.Profiles = append(r.Profiles, profileInfo{Name: "end-to-end server CPU (all roles, under the same load)",
				Why: "the hit → report target was missed; taken after the markers, while the background load still ran", File: path, Top: top})
		} else {
			e.log.Warn("e2e profile", "err", err)
		}
	}
	bg := <-bgc
	if bg.err != nil {
		return fmt.Errorf("background load: %w", bg.err)
	}
	r.Background, r.Usage = bg.lr, bg.u
	r.PollLatency = summarize(polls)
	// Repetitions: consecutive time slices of the markers.
	nSlices := e.o.Reps
	var p50, p99, mx []float64
	per := (nMarkers + nSlices - 1) / nSlices
	for s := 0; s < nSlices && s*per < nMarkers; s++ {
		var d []time.Duration
		for _, m := range r.Markers[s*per : min((s+1)*per, nMarkers)] {
			if m.Latency > 0 {
				d = append(d, m.Latency)
			} else {
				d = append(d, time.Hour) // never visible counts as a miss
			}
		}
		l := summarize(d)
		p50, p99, mx = append(p50, l.P50), append(p99, l.P99), append(mx, l.Max)
	}
	r.Figures = []figure{
		newFigure("hit → report latency p50 (per time slice)", "ms", p50),
		newFigure("hit → report latency p99 (per time slice)", "ms", p99),
		newFigure("hit → report latency max (per time slice)", "ms", mx),
	}
	// Every accepted hit should reach ClickHouse once the load stops.
	start := time.Now()
	for {
		m, err := scrapeMetrics("http://" + sf["ops"] + "/metrics")
		if err == nil {
			r.Accepted = sumMetric(m, "jobpixel_ingest_accepted_total")
			r.Produced = sumMetric(m, "jobpixel_ingest_produced_total")
		}
		r.Stored, _ = countEvents(ctx, e.st)
		if (r.Accepted > 0 && float64(r.Stored) >= r.Accepted) || time.Since(start) > 30*time.Second {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	r.StoreWaitSecond = time.Since(start).Seconds()
	r.AllStored = r.Accepted > 0 && float64(r.Stored) == r.Accepted
	e.log.Info("e2e", "markers", nMarkers, "visible", r.Visible, "p50_ms", round3(r.Latency.P50), "p99_ms", round3(r.Latency.P99),
		"bg_rps", int(r.Background.OKRPS), "accepted", r.Accepted, "stored", r.Stored)
	return nil
}

// sendMarker sends one page view to campaign and returns when it was
// accepted.
func (e *env) sendMarker(addr, campaign string, k int) (time.Time, error) {
	q := url.Values{}
	q.Set("c", campaign)
	q.Set("e", "page_view")
	q.Set("v", "marker")
	q.Set("eid", fmt.Sprintf("marker-%d", k))
	q.Set("u", "https://jobs.example.com/jobs/marker?utm_source=bench")
	var req fasthttp.Request
	var resp fasthttp.Response
	req.SetRequestURI("http://" + addr + "/p.gif?" + q.Encode())
	req.Header.SetUserAgent(userAgent(k))
	if err := fasthttp.DoTimeout(&req, &resp, 5*time.Second); err != nil {
		return time.Time{}, err
	}
	at := time.Now()
	if resp.StatusCode() != 200 || len(resp.Header.Peek(rejectHeader)) > 0 {
		return at, fmt.Errorf("marker rejected: %d %s", resp.StatusCode(), resp.Header.Peek(rejectHeader))
	}
	return at, nil
}

// reportPageViews asks the report API for a campaign's 30-day page views.
func (e *env) reportPageViews(hc *http.Client, api, campaign string) (uint64, error) {
	req, _ := http.NewRequest("GET", api+"/api/v1/campaigns/"+campaign+"/report", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("report: %s: %.200s", resp.Status, b)
	}
	var rep store.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return 0, err
	}
	return rep.Totals.PageViews, nil
}

package systemtest

import (
	"context"
	"github.com/jobpixel/jobpixel/app"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
)

// TestStopOrder: on Stop, the ops listener's /readyz answers 503 at once,
// hits are still accepted during the drain delay, then everything stops
// within the deadline; a restarted process counts every accepted hit once.
func TestStopOrder(t *testing.T) {
	db := testenv.Database(t)
	cfg := app.Config{
		Roles: "ingest,pipeline,api", DataDir: t.TempDir(),
		IngestAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0", QueueSize: 10000, MaxBodyBytes: 64 << 10,
		KafkaBrokers: testenv.Broker(t, "hits", 3), KafkaTopic: "hits", KafkaPartitions: 3,
		KafkaGroup: "pipe", ClickHouseAddr: testenv.ClickHouseAddr(t), ClickHouseDatabase: db,
		BatchSize: 1000, FlushInterval: 100 * time.Millisecond, ShutdownTimeout: 20 * time.Second,
		// Long enough for the readiness checks and 100 hits below on a
		// loaded machine: they must all fall within it.
		DrainDelay: 4 * time.Second,
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	cl, _, err := a.Store().CreateClient(ctx, "Stop Jobs")
	if err != nil {
		t.Fatal(err)
	}
	camp, err := a.Store().CreateCampaign(ctx, cl.ID, "Stop", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	get := func(url string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
		resp, err := hc.Do(req)
		if err != nil {
			return -1, ""
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Jobpixel-Reject")
	}
	in, ops := "http://"+a.IngestAddr(), "http://"+a.OpsAddr()
	pixel := in + "/p.gif?c=" + camp.ID + "&e=page_view"
	accepted := 0
	for range 100 {
		if code, reason := get(pixel); code == 200 && reason == "" {
			accepted++
		}
	}
	if c, _ := get(ops + "/readyz"); c != 200 {
		t.Fatalf("readyz before stop: %d", c)
	}
	stopped := make(chan error, 1)
	began := time.Now()
	go func() {
		sctx, cancel := context.WithTimeout(ctx, cfg.ShutdownTimeout)
		defer cancel()
		stopped <- a.Stop(sctx)
	}()
	// Not ready at once: well before the drain delay ends (Stop runs in
	// the goroutine above, which a loaded machine may start late).
	c, _ := get(ops + "/readyz")
	for c != 503 && time.Since(began) < cfg.DrainDelay/2 {
		time.Sleep(10 * time.Millisecond)
		c, _ = get(ops + "/readyz")
	}
	if c != 503 {
		t.Errorf("readyz during the drain delay: %d, want 503", c)
	}
	for range 100 {
		if code, reason := get(pixel); code == 200 && reason == "" {
			accepted++
		} else {
			t.Fatalf("hit during the drain delay: %d %q", code, reason)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(began)
	if took < cfg.DrainDelay || took > cfg.ShutdownTimeout {
		t.Errorf("stop took %v: want the drain delay %v and less than the deadline", took, cfg.DrainDelay)
	}
	if c, _ := get(pixel); c != -1 {
		t.Errorf("ingest still answers after stop: %d", c)
	}

	// The next process picks up whatever the pipeline had not stored.
	cfg2 := cfg
	cfg2.DrainDelay = 0 // its own stop is not under test
	a2, err := app.Start(ctx, cfg2, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Stop(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := time.Now().UTC()
		r, err := a2.Store().CampaignReport(ctx, cl.ID, camp.ID, now.AddDate(0, 0, -1), now.AddDate(0, 0, 1))
		if err == nil && r.Totals.PageViews == uint64(accepted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("page views %d (%v), want the %d accepted", r.Totals.PageViews, err, accepted)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package systemtest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/app"
	"github.com/jobpixel/jobpixel/internal/store"
)

// TestIngestWithoutClickHouse: ingest alone starts and accepts hits while
// ClickHouse is down, from the campaign snapshot an earlier run wrote, is
// ready (readiness does not wait on ClickHouse), and picks up campaigns
// created meanwhile once ClickHouse answers. Without a snapshot it starts
// too, but is not ready and says why.
func TestIngestWithoutClickHouse(t *testing.T) {
	ctx := context.Background()
	var cfg app.Config
	full := startApp(t, func(c *app.Config) { cfg = *c }) // its pipeline stores what ingest sends
	st := full.Store()
	cl, _, err := st.CreateClient(ctx, "Down Jobs")
	if err != nil {
		t.Fatal(err)
	}
	c1, err := st.CreateCampaign(ctx, cl.ID, "Known", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := full.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := os.ReadFile(filepath.Join(cfg.DataDir, "campaigns.json"))
	if err != nil || !strings.Contains(string(snap), c1.ID) {
		t.Fatalf("campaign snapshot after a refresh: %q, %v", snap, err)
	}

	// ClickHouse "down": an address nothing listens on (yet).
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	chAddr := hold.Addr().String()
	hold.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "campaigns.json"), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	in := startIngestOnly(t, cfg, chAddr, dir)
	if code, body := httpGet(t, "http://"+in.OpsAddr()+"/readyz"); code != 200 {
		t.Fatalf("readyz of ingest with ClickHouse down and a snapshot: %d %q", code, body)
	}
	if reason := pixelHit(t, in.IngestAddr(), c1.ID); reason != "" {
		t.Fatalf("hit for a snapshot campaign rejected: %q", reason)
	}
	waitReport(t, st, cl.ID, c1.ID, 1)

	// A campaign created while ingest cannot read ClickHouse is unknown
	// until ClickHouse answers, then picked up by the periodic refresh.
	c2, err := st.CreateCampaign(ctx, cl.ID, "New", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if reason := pixelHit(t, in.IngestAddr(), c2.ID); reason != "unknown_campaign" {
		t.Fatalf("hit for a campaign created while ClickHouse is down: %q, want unknown_campaign", reason)
	}
	proxy(t, chAddr, cfg.ClickHouseAddr)
	deadline := time.Now().Add(30 * time.Second)
	for pixelHit(t, in.IngestAddr(), c2.ID) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the new campaign was not picked up after ClickHouse came back")
		}
		time.Sleep(250 * time.Millisecond)
	}
	waitReport(t, st, cl.ID, c2.ID, 1)

	// No snapshot: it starts and answers, but is not ready.
	hold2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := hold2.Addr().String()
	hold2.Close()
	bare := startIngestOnly(t, cfg, downAddr, t.TempDir())
	if code, body := httpGet(t, "http://"+bare.OpsAddr()+"/readyz"); code != 503 || !strings.Contains(body, "campaigns unknown") {
		t.Fatalf("readyz without ClickHouse and snapshot: %d %q, want 503 naming the campaigns", code, body)
	}
	if reason := pixelHit(t, bare.IngestAddr(), c1.ID); reason != "unknown_campaign" {
		t.Fatalf("hit without any campaign known: %q", reason)
	}
}

// startIngestOnly starts -roles ingest of cfg against ClickHouse at chAddr
// with data directory dir and its own ops listener.
func startIngestOnly(t *testing.T, cfg app.Config, chAddr, dir string) *app.App {
	t.Helper()
	cfg.Roles, cfg.ClickHouseAddr, cfg.DataDir, cfg.SpoolDir = "ingest", chAddr, dir, ""
	cfg.IngestAddr, cfg.OpsAddr = "127.0.0.1:0", "127.0.0.1:0"
	a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatalf("ingest alone with ClickHouse down does not start: %v", err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(sctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}

// pixelHit sends one page view with a browser's user agent and returns the
// reject reason ("" when accepted).
func pixelHit(t *testing.T, addr, campaign string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/p.gif?c="+campaign+"&e=page_view", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get("X-Jobpixel-Reject")
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReport waits until the campaign's report counts n page views today.
func waitReport(t *testing.T, st *store.Store, client, campaign string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := time.Now().UTC()
		r, err := st.CampaignReport(context.Background(), client, campaign, now.AddDate(0, 0, -1), now.AddDate(0, 0, 1))
		if err == nil && r.Totals.PageViews == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign %s: %d page views (%v), want %d", campaign, r.Totals.PageViews, err, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// proxy forwards connections to addr on to target until the test ends: a
// ClickHouse that "comes back" at the address ingest was given.
func proxy(t *testing.T, addr, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			} else if err != nil {
				continue
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
}

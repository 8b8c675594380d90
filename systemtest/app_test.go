package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/jobpixel/jobpixel/app"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
)

// startApp runs every role against a fresh database and an in-process
// broker, on free loopback ports.
func startApp(t *testing.T, mod func(*app.Config)) *app.App {
	t.Helper()
	return startAppLog(t, mod, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// startAppLog is startApp with the app logging to log.
func startAppLog(t *testing.T, mod func(*app.Config), log *slog.Logger) *app.App {
	t.Helper()
	return startAppOn(t, testenv.ClickHouseAddr(t), testenv.Database(t), mod, log)
}

// startAppOn is startAppLog with database db on the ClickHouse server at
// chAddr.
func startAppOn(t *testing.T, chAddr, db string, mod func(*app.Config), log *slog.Logger) *app.App {
	t.Helper()
	cfg := app.Config{
		Roles: "ingest,pipeline,api", DataDir: t.TempDir(),
		IngestAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		TrustedProxies: "127.0.0.1/32", QueueSize: 10000, MaxBodyBytes: 64 << 10,
		KafkaBrokers: testenv.Broker(t, "hits", 3), KafkaTopic: "hits", KafkaPartitions: 3,
		KafkaGroup: "pipe", ClickHouseAddr: chAddr, ClickHouseDatabase: db,
		BatchSize: 1000, FlushInterval: 100 * time.Millisecond, ShutdownTimeout: 20 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := app.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}

// awayFromMidnight waits until UTC midnight has passed when it is less than
// d away, for tests whose hits must all fall on one UTC day: reports count
// by UTC day, and the visitor salt changes with it.
func awayFromMidnight(t *testing.T, d time.Duration) {
	t.Helper()
	now := time.Now().UTC()
	if left := now.Truncate(24 * time.Hour).Add(24 * time.Hour).Sub(now); left < d {
		t.Logf("waiting %v for UTC midnight to pass", left.Round(time.Second))
		time.Sleep(left + time.Second)
	}
}

func getReport(t *testing.T, a *app.App, token, campaign string) (int, store.Report) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.APIAddr()+"/api/v1/campaigns/"+campaign+"/report", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r store.Report
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("report body %s: %v", b, err)
		}
	}
	return resp.StatusCode, r
}

// TestSpine sends valid and malformed hits through the real HTTP endpoint,
// Kafka and ClickHouse and checks the report counts exactly the valid ones,
// and that no stored IP is untruncated.
func TestSpine(t *testing.T) {
	// One day in the report, and one daily visitor hash per visitor: no
	// hit may fall after midnight (the test takes seconds, at most a
	// minute when slow).
	awayFromMidnight(t, 2*time.Minute)
	a := startApp(t, nil)
	ctx := context.Background()
	st := a.Store()
	client, token, err := st.CreateClient(ctx, "Acme Jobs")
	if err != nil {
		t.Fatal(err)
	}
	camp, err := st.CreateCampaign(ctx, client.ID, "Backend", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, otherToken, _ := st.CreateClient(ctx, "Other")
	otherCamp, _ := st.CreateCampaign(ctx, other.ID, "Secret", store.CampaignOptions{})
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.IngestAddr()
	ips := []string{"203.0.113.77", "198.51.100.9", "2001:db8:1234:5678::1", "192.0.2.200"}
	const chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
	ua := chrome
	pixel := func(q url.Values, ip string) *http.Response {
		req, _ := http.NewRequest("GET", base+"/p.gif?"+q.Encode(), nil)
		req.Header.Set("X-Forwarded-For", ip)
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	want := map[string]int{}
	const n = 200
	for i := 0; i < n; i++ {
		ev := []string{"page_view", "page_view", "apply_click", "application", "vacancy_email"}[i%5]
		q := url.Values{"c": {camp.ID}, "e": {ev}, "v": {"job-1"}, "u": {"https://jobs.example.com/go?utm_source=Newsletter&email=jane@example.com"}}
		resp := pixel(q, ips[i%len(ips)])
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || resp.Header.Get("X-Jobpixel-Reject") != "" {
			t.Fatalf("valid hit %d: %d %q", i, resp.StatusCode, resp.Header.Get("X-Jobpixel-Reject"))
		}
		want[ev]++
	}
	// Bots are stored but counted apart.
	ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	for i := 0; i < 7; i++ {
		pixel(url.Values{"c": {camp.ID}, "e": {"page_view"}}, "66.249.66.1")
	}
	ua = chrome
	// Malformed pixels: still a GIF, never counted.
	bad := []struct {
		q      url.Values
		reason string
	}{
		{url.Values{"e": {"page_view"}}, "missing_campaign"},
		{url.Values{"c": {"bad id!"}, "e": {"page_view"}}, "bad_campaign"},
		{url.Values{"c": {"cmp_nope"}, "e": {"page_view"}}, "unknown_campaign"},
		{url.Values{"c": {camp.ID}, "e": {"purchase"}}, "bad_event"},
		{url.Values{"c": {camp.ID}}, "bad_event"},
		{url.Values{"c": {camp.ID}, "e": {"page_view"}, "u": {strings.Repeat("x", 5000)}}, "field_too_long"},
	}
	for _, b := range bad {
		resp := pixel(b.q, "203.0.113.1")
		if resp.StatusCode != 200 || resp.ContentLength != 43 || resp.Header.Get("X-Jobpixel-Reject") != b.reason {
			t.Errorf("%v: got %d len %d reason %q, want GIF with reason %q", b.q, resp.StatusCode, resp.ContentLength, resp.Header.Get("X-Jobpixel-Reject"), b.reason)
		}
	}
	// Batches.
	post := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", base+"/e", strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		req.Header.Set("X-Forwarded-For", "2001:db8:abcd:12::99")
		req.Header.Set("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("POST /e without CORS header")
		}
		return resp.StatusCode, string(b)
	}
	for i := 0; i < 20; i++ {
		body := fmt.Sprintf(`{"c":%q,"events":[{"e":"page_view","eid":"a%d"},{"e":"apply_click"},{"e":"application","u":"https://jobs.example.com/apply"}]}`, camp.ID, i)
		if code, b := post(body); code != 202 {
			t.Fatalf("batch: %d %s", code, b)
		}
		want["page_view"]++
		want["apply_click"]++
		want["application"]++
	}
	badBatches := []struct {
		body   string
		status int
		field  string
	}{
		{`{"c":"` + camp.ID + `","events":[{"e":"page_view"},{"e":"nope"}]}`, 400, "events[1].e"},
		{`{"events":[{"e":"page_view"}]}`, 400, "events[0].c"},
		{`{"c":"` + camp.ID + `","events":[{"e":5}]}`, 400, "events[0].e"},
		{`{"c":"` + camp.ID + `","events":{}}`, 400, "events"},
		{`{"c":"` + camp.ID + `","events":[]}`, 400, "events"},
		{`{"c":"cmp_unknown","events":[{"e":"page_view"}]}`, 400, "events[0].c"},
		{`{"c":`, 400, ""},
		{`{"c":"` + camp.ID + `","events":[{"e":"page_view","u":"` + strings.Repeat("a", 70000) + `"}]}`, 413, ""},
	}
	for _, b := range badBatches {
		code, body := post(b.body)
		if code != b.status {
			t.Errorf("batch %.60s: status %d (%s), want %d", b.body, code, body, b.status)
			continue
		}
		var e struct{ Error, Field string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" || e.Field != b.field {
			t.Errorf("batch %.60s: body %s, want error naming %q", b.body, body, b.field)
		}
	}
	wantVisitors := uint64(len(ips) + 1) // the batches share one address and UA
	deadline := time.Now().Add(30 * time.Second)
	var rep store.Report
	for {
		var code int
		code, rep = getReport(t, a, token, camp.ID)
		if code != 200 {
			t.Fatalf("report status %d", code)
		}
		if rep.Totals.PageViews == uint64(want["page_view"]) && rep.Totals.ApplyClicks == uint64(want["apply_click"]) &&
			rep.Totals.Applications == uint64(want["application"]) && rep.Totals.VacancyEmails == uint64(want["vacancy_email"]) &&
			rep.Bots == 7 && len(rep.Days) == 1 && rep.Days[0].PageViews == rep.Totals.PageViews &&
			len(rep.Sources) > 0 {
			// (The report's queries are separate reads: wait until the
			// last rows are visible to all of them.)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report totals %+v, want %v", rep.Totals, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rep.Bots != 7 {
		t.Errorf("bots = %d, want 7", rep.Bots)
	}
	if rep.Totals.Visitors != wantVisitors {
		t.Errorf("visitors = %d, want %d", rep.Totals.Visitors, wantVisitors)
	}
	if len(rep.Days) != 1 || rep.Days[0].PageViews != uint64(want["page_view"]) {
		t.Errorf("days = %+v", rep.Days)
	}
	if len(rep.Sources) == 0 || rep.Sources[0].Source != "newsletter" {
		t.Errorf("sources = %+v, want newsletter first", rep.Sources)
	}
	// Nothing more arrives later (no double counting).
	time.Sleep(time.Second)
	if _, again := getReport(t, a, token, camp.ID); again.Totals != rep.Totals {
		t.Errorf("totals changed from %+v to %+v", rep.Totals, again.Totals)
	}

	// Access control.
	if code, _ := getReport(t, a, "", camp.ID); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := getReport(t, a, "jpt_wrong", camp.ID); code != 401 {
		t.Errorf("bad token: %d, want 401", code)
	}
	if code, _ := getReport(t, a, token, otherCamp.ID); code != 404 {
		t.Errorf("other client's campaign: %d, want 404", code)
	}
	if code, _ := getReport(t, a, otherToken, camp.ID); code != 404 {
		t.Errorf("other client reading ours: %d, want 404", code)
	}
	if code, _ := getReport(t, a, token, "cmp_does_not_exist"); code != 404 {
		t.Errorf("missing campaign: %d, want 404", code)
	}

	// No stored address is untruncated, and URLs lost the e-mail.
	var rows []struct {
		IP  string `ch:"ip"`
		URL string `ch:"url"`
	}
	if err := st.Conn().Select(ctx, &rows, "SELECT ip, url FROM events"); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 267 {
		t.Errorf("events rows = %d, want 267", len(rows))
	}
	for _, r := range rows {
		var b [16]byte
		copy(b[:], r.IP)
		a := netip.AddrFrom16(b).Unmap()
		if a.Is4() && a != mask(a, 24) || a.Is6() && a != mask(a, 48) {
			t.Fatalf("stored address %s is not truncated", a)
		}
		for _, orig := range append(ips, "2001:db8:abcd:12::99") {
			if a.String() == orig {
				t.Fatalf("full address %s stored", orig)
			}
		}
		if strings.Contains(r.URL, "jane") || strings.Contains(r.URL, "@") {
			t.Fatalf("stored URL %q keeps an e-mail address", r.URL)
		}
	}
}

func mask(a netip.Addr, bits int) netip.Addr {
	p, _ := a.Prefix(bits)
	return p.Addr()
}

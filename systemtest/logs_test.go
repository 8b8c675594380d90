package systemtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

// lockedBuffer is an io.Writer safe for the app's concurrent loggers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsHoldNoIdentifiers runs ingest, pipeline and api with a JSON
// logger at debug level through accepted, rejected and malformed hits,
// API calls with right and wrong tokens, an erasure and the shutdown: every
// line is one JSON object, and none holds a visitor's full address, e-mail
// (plain or hashed), click id or cookie value, or an API token.
func TestLogsHoldNoIdentifiers(t *testing.T) {
	var logs lockedBuffer
	var needles []string
	// Registered before the app starts, so it runs after the app stopped
	// and sees the shutdown's lines too.
	t.Cleanup(func() {
		out := logs.String()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 3 {
			t.Errorf("only %d log lines: the test exercised nothing", len(lines))
		}
		for i, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] == nil || m["level"] == nil {
				t.Errorf("line %d is not a JSON log record: %q", i+1, l)
			}
		}
		for _, n := range needles {
			if strings.Contains(out, n) {
				t.Errorf("the log holds %q", n)
			}
		}
	})
	a := startAppLog(t, nil, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx := context.Background()
	st := a.Store()
	client, token, err := st.CreateClient(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	camp, err := st.CreateCampaign(ctx, client.ID, "Logs", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	email := "Log.Person.q7@example.org"
	norm := sha256.Sum256([]byte(strings.ToLower(email)))
	ips := []string{"198.51.100.213", "2001:db8:5:6:7:8:9:a"}
	needles = append(needles, email, strings.ToLower(email), hex.EncodeToString(norm[:]), token,
		"fb.1.1700000000000.5550123", "Cj0KCQgclidLOGS", "lifat-logs-77")
	needles = append(needles, ips...)
	get := func(path, ip string) {
		req, _ := http.NewRequest("GET", "http://"+a.IngestAddr()+path, nil)
		req.Header.Set("X-Forwarded-For", ip)
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for i, ip := range ips {
		q := url.Values{"e": {"vacancy_email"}, "em": {email}, "fbp": {"fb.1.1700000000000.5550123"},
			"li_fat_id": {"lifat-logs-77"}, "u": {"https://jobs.example.com/x?gclid=Cj0KCQgclidLOGS&email=" + url.QueryEscape(email)},
			"ad_user_data": {"granted"}, "ad_personalization": {"granted"}, "ad_storage": {"granted"}}
		q.Set("c", camp.ID)
		get("/p.gif?"+q.Encode(), ip)
		q.Set("c", fmt.Sprintf("cmp_unknown%d", i)) // rejected: unknown campaign
		get("/p.gif?"+q.Encode(), ip)
		get("/p.gif?c="+camp.ID+"&e=bogus&em="+url.QueryEscape(email), ip) // malformed
	}
	body := `{"c":"` + camp.ID + `","events":[{"e":"application","em":"` + email + `"},{"e":"application","em":` // truncated JSON
	resp, err := http.Post("http://"+a.IngestAddr()+"/e", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, tok := range []string{token, token + "x", "jpx_guess"} {
		rawCall(t, a, "GET", "/api/v1/campaigns/"+camp.ID+"/report", tok, "")
	}
	waitEvents(t, a, camp.ID, map[string]int{"vacancy_email": len(ips)})
	if code, _ := rawCall(t, a, "DELETE", "/api/v1/campaigns/"+camp.ID+"/data", token, ""); code/100 != 2 {
		t.Fatalf("erase: %d", code)
	}
	time.Sleep(200 * time.Millisecond) // let the erasure's own log lines land
}

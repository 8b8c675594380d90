package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/app"
	"github.com/jobpixel/jobpixel/forward/google/googletest"
	"github.com/jobpixel/jobpixel/forward/meta/metatest"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
)

// TestCredentialsStatus: an instruction with a Google refresh token and a
// Meta token that expires in three days, through the API. The Meta expiry
// shows as the instruction's status at once; conversions reach Google with
// refreshed tokens; once the refresh token is revoked (and Google ends the
// access token) the next conversion is held, and the instructions and the
// ledger show "Google credentials expired at …" with no dead letter; a new
// version with a fresh refresh token clears the status and the held
// conversion arrives.
func TestCredentialsStatus(t *testing.T) {
	ctx := context.Background()
	meta := metatest.Start(metatest.Config{Token: "meta-token"})
	google := googletest.Start(googletest.Config{Token: "no-static-token"})
	t.Cleanup(func() { meta.Close(); google.Close() })
	google.Tokens.AddClient("cid", "client-secret", "rt-1")

	cfg := app.Config{
		Roles: "ingest,pipeline,api", DataDir: t.TempDir(), IngestAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		TrustedProxies: "127.0.0.1/32", QueueSize: 10000, MaxBodyBytes: 64 << 10,
		KafkaBrokers: testenv.Broker(t, "hits", 1), KafkaTopic: "hits", KafkaPartitions: 1, KafkaGroup: "pipe",
		ClickHouseAddr: testenv.ClickHouseAddr(t), ClickHouseDatabase: testenv.Database(t),
		BatchSize: 1000, FlushInterval: 100 * time.Millisecond, ShutdownTimeout: 20 * time.Second,
		SecretsKey: newSecretsKey(), ForwardAllowedHosts: "127.0.0.1", ForwardGroup: "fwd",
		ForwardRefresh: 200 * time.Millisecond, ForwardAudienceInterval: 300 * time.Millisecond,
		ForwardMaxHold: time.Minute, ForwardStopGrace: 5 * time.Second,
	}
	a, _ := runApp(t, cfg)
	st := a.Store()
	client, token, err := st.CreateClient(ctx, "Acme Jobs")
	if err != nil {
		t.Fatal(err)
	}
	camp, _ := st.CreateCampaign(ctx, client.ID, "Backend", store.CampaignOptions{})
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	api := apiClient{t: t, base: "http://" + a.APIAddr(), token: token}
	metaExpiry := time.Now().Add(72 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	instr := func(refresh string) string {
		return fmt.Sprintf(`{
		  "meta": {"endpoint": %q, "access_token": "meta-token", "token_expires_at": %q,
		    "conversions": [{"event": "application", "pixel_id": "1001", "event_name": "SubmitApplication"}]},
		  "google": {"data_manager_endpoint": %q, "ads_endpoint": %q, "customer_id": "769-372-9833",
		    "refresh_token": %q, "client_id": "cid", "client_secret": "client-secret", "token_endpoint": %q,
		    "conversions": [{"event": "application", "conversion_action_id": "1003"}]}}`,
			meta.URL(), metaExpiry, google.URL(), google.URL(), refresh, google.URL()+"/token")
	}
	if code, body := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions", instr("rt-1")); code != 201 ||
		!strings.Contains(body, "google.refresh_token") || strings.Contains(body, "client-secret") || strings.Contains(body, "rt-1") {
		t.Fatalf("instruction: %d %s", code, body)
	}
	// The forward role starts after the instruction (a running one would
	// skip hits consumed before it learnt of it).
	fwd := cfg
	fwd.Roles, fwd.DataDir = "forward", t.TempDir()
	runApp(t, fwd)
	status := func(path string) string {
		t.Helper()
		code, body := api.do("GET", "/api/v1/campaigns/"+camp.ID+path, "")
		var out struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(body), &out); code != 200 || err != nil {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return out.Status
	}
	metaStatus := "Meta token expires at " + metaExpiry + "; send a new one before"
	if s := status("/instructions"); s != metaStatus {
		t.Fatalf("status %q, want %q", s, metaStatus)
	}

	n := 0
	send := func() {
		t.Helper()
		n++
		email := fmt.Sprintf("ada%d@example.com", n)
		google.RegisterEmail(email)
		meta.RegisterEmail(email)
		q := url.Values{"c": {camp.ID}, "e": {"application"}, "u": {"https://jobs.example.com/apply"}, "em": {email},
			"ad_storage": {"granted"}, "ad_user_data": {"granted"}, "ad_personalization": {"granted"}}
		req, _ := http.NewRequest("GET", "http://"+a.IngestAddr()+"/p.gif?"+q.Encode(), nil)
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", n))
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	wait := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			ok, state := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %s", what, state)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	events := func(want int) func() (bool, string) {
		return func() (bool, string) {
			return len(google.Events()) == want, fmt.Sprintf("%d Google events, %d token requests", len(google.Events()), google.Tokens.Requests())
		}
	}
	send()
	wait("the first conversion at Google", events(1))

	google.Tokens.Revoke("rt-1")
	google.Tokens.ExpireAll()
	send()
	const expired = "Google credentials expired at "
	wait("the status", func() (bool, string) { s := status("/instructions"); return strings.HasPrefix(s, expired), s })
	s := status("/instructions")
	if !strings.HasSuffix(s, "; send new credentials; "+metaStatus) {
		t.Errorf("status %q", s)
	}
	if l := status("/ledger"); l != s {
		t.Errorf("ledger status %q, want %q", l, s)
	}
	if len(google.Events()) != 1 {
		t.Fatalf("%d Google events: sent with revoked credentials", len(google.Events()))
	}
	code, body := api.do("GET", "/api/v1/campaigns/"+camp.ID+"/ledger", "")
	if code != 200 || !strings.Contains(body, `"dead_letters":[]`) {
		t.Fatalf("ledger: %d %s", code, body)
	}

	google.Tokens.AddClient("cid", "client-secret", "rt-2")
	if code, body := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions", instr("rt-2")); code != 201 {
		t.Fatalf("instruction v2: %d %s", code, body)
	}
	wait("the held conversion at Google", events(2))
	if s := status("/instructions"); s != metaStatus {
		t.Errorf("status after new credentials %q, want %q", s, metaStatus)
	}
}

package systemtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/app"
	"github.com/jobpixel/jobpixel/forward/meta/metatest"
	"github.com/jobpixel/jobpixel/internal/kafkaconn"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
	"github.com/jobpixel/jobpixel/internal/tlsconf"
)

// TestKafkaTLSAndSASL runs ingest, pipeline, api and forward against a
// broker that speaks only TLS and requires SCRAM-SHA-512, as a managed
// Kafka does: hits sent to /p.gif are counted in ClickHouse and forwarded
// to (fake) Meta, so the producer, both consumer groups and their readers
// all connected. A start with a wrong password fails at once, naming the
// SASL problem and the flag; a start with the brokers down does not fail.
func TestKafkaTLSAndSASL(t *testing.T) {
	awayFromMidnight(t, 2*time.Minute) // the report counts one UTC day
	ctx := context.Background()
	certs := testenv.MakeCerts(t)
	broker := testenv.BrokerWith(t, "hits", 3, testenv.BrokerOptions{
		Certs: &certs, SASLMechanism: "SCRAM-SHA-512", User: "jobpixel", Password: "k4fka-pw"})
	meta := metatest.Start(metatest.Config{Token: "meta-token"})
	t.Cleanup(meta.Close)

	cfg := app.Config{
		Roles: "ingest,pipeline,api", DataDir: t.TempDir(),
		IngestAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		TrustedProxies: "127.0.0.1/32", QueueSize: 10000, MaxBodyBytes: 64 << 10,
		KafkaBrokers: broker, KafkaTopic: "hits", KafkaPartitions: 3, KafkaGroup: "pipe",
		KafkaTLS:           tlsconf.Options{CAFile: certs.CA},
		KafkaSASLMechanism: "scram-sha-512", KafkaSASLUser: "jobpixel", KafkaSASLPassword: "k4fka-pw",
		ClickHouseAddr: testenv.ClickHouseAddr(t), ClickHouseDatabase: testenv.Database(t),
		BatchSize: 1000, FlushInterval: 100 * time.Millisecond, ShutdownTimeout: 20 * time.Second,
		SecretsKey: newSecretsKey(), ForwardAllowedHosts: "127.0.0.1", ForwardGroup: "fwd",
		ForwardRefresh: 200 * time.Millisecond, ForwardAudienceInterval: time.Second,
		ForwardMaxHold: time.Minute, ForwardStopGrace: 5 * time.Second,
	}

	// A wrong password: the start fails at once with the cause, before
	// any role retries in the background.
	bad := cfg
	bad.KafkaSASLPassword = "wrong"
	if a, err := app.Start(ctx, bad, slog.New(slog.DiscardHandler)); err == nil {
		a.Stop(ctx)
		t.Fatal("started with a wrong Kafka password")
	} else if !errors.Is(err, kafkaconn.Misconfigured) || !strings.Contains(err.Error(), `SASL SCRAM-SHA-512 as "jobpixel" failed`) ||
		!strings.Contains(err.Error(), "-kafka.sasl-password") {
		t.Fatalf("start with a wrong password: %v; want the SASL failure and -kafka.sasl-password named", err)
	}

	// Brokers that are down are transient: the start only warns, and the
	// consumer group retries in the background.
	down := cfg
	down.Roles = "pipeline"
	down.KafkaBrokers = testenv.DownAddr(t)
	if a, err := app.Start(ctx, down, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("start with the brokers down: %v; want a warning and a start", err)
	} else if err := a.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}

	a, _ := runApp(t, cfg)
	st := a.Store()
	client, token, err := st.CreateClient(ctx, "Acme Jobs")
	if err != nil {
		t.Fatal(err)
	}
	camp, err := st.CreateCampaign(ctx, client.ID, "Backend", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	api := apiClient{t: t, base: "http://" + a.APIAddr(), token: token}
	instr := fmt.Sprintf(`{"requested_by": "Jane Doe, Acme HR",
	  "meta": {"endpoint": %q, "access_token": "meta-token",
	    "conversions": [{"event": "application", "pixel_id": "1001", "event_name": "SubmitApplication"}]}}`, meta.URL())
	if code, body := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions", instr); code != 201 {
		t.Fatalf("instruction: %d %s", code, body)
	}
	// The forward role reads the instructions before it consumes: started
	// now, it knows this one for the first hit (one already running learns
	// of it within -forward.refresh; hits before that are not forwarded).
	fwd := cfg
	fwd.Roles, fwd.DataDir = "forward", t.TempDir()
	runApp(t, fwd)

	const n = 10
	for i := range n {
		email := fmt.Sprintf("applicant%d@example.com", i)
		meta.RegisterEmail(email)
		q := url.Values{"c": {camp.ID}, "e": {"application"}, "u": {"https://jobs.example.com/apply?job=42"},
			"em": {email}, "fbclid": {fmt.Sprintf("fbclid%d", i)},
			"ad_storage": {"granted"}, "ad_user_data": {"granted"}, "ad_personalization": {"granted"}}
		req, _ := http.NewRequest("GET", "http://"+a.IngestAddr()+"/p.gif?"+q.Encode(), nil)
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1))
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if r := resp.Header.Get("X-Jobpixel-Reject"); r != "" {
			t.Fatalf("hit %d rejected: %s", i, r)
		}
	}
	var apps, forwarded uint64
	for deadline := time.Now().Add(60 * time.Second); apps != n || forwarded != n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: %d applications in the report, %d forwarded to Meta; want %d each", apps, forwarded, n)
		}
		if code, r := getReport(t, a, token, camp.ID); code == 200 {
			apps = r.Totals.Applications
		}
		forwarded = uint64(len(meta.Events()))
	}
}

package systemtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/jobpixel/jobpixel/app"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward/google/googletest"
	"github.com/jobpixel/jobpixel/forward/linkedin/linkedintest"
	"github.com/jobpixel/jobpixel/forward/meta/metatest"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func newSecretsKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// runApp starts an App on cfg (no fresh database: the caller shares one)
// and returns it with an idempotent stop.
func runApp(t *testing.T, cfg app.Config) (*app.App, func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := a.Stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

type apiClient struct {
	t     *testing.T
	base  string
	token string
}

func (c apiClient) do(method, path, body string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestForwardingEndToEnd: an instruction through the client API; hits
// through the HTTP endpoint; conversions and audience members arrive at
// the fake Meta, Google and LinkedIn with the right hashes; the forwarder
// is killed while Meta hangs and restarted: nothing lost, nothing sent
// twice; a revocation through the API makes removal requests reach the
// fakes; the ledger API shows every send.
func TestForwardingEndToEnd(t *testing.T) {
	ctx := context.Background()
	meta := metatest.Start(metatest.Config{Token: "meta-token"})
	google := googletest.Start(googletest.Config{Token: "google-token", DeveloperToken: "dev-token"})
	linkedin := linkedintest.Start(linkedintest.Config{Token: "li-token"})
	linkedin.AddSegment("9001", 1) // a new segment: 404 once, then ready
	t.Cleanup(func() { meta.Close(); google.Close(); linkedin.Close() })

	db := testenv.Database(t)
	broker := testenv.Broker(t, "hits", 3)
	key := newSecretsKey()
	base := app.Config{
		DataDir: t.TempDir(), IngestAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		TrustedProxies: "127.0.0.1/32", QueueSize: 10000, MaxBodyBytes: 64 << 10,
		KafkaBrokers: broker, KafkaTopic: "hits", KafkaPartitions: 3, KafkaGroup: "pipe",
		ClickHouseAddr: testenv.ClickHouseAddr(t), ClickHouseDatabase: db,
		BatchSize: 1000, FlushInterval: 100 * time.Millisecond, ShutdownTimeout: 20 * time.Second,
		SecretsKey: key, ForwardAllowedHosts: "127.0.0.1", ForwardGroup: "fwd",
		ForwardRefresh: 200 * time.Millisecond, ForwardAudienceInterval: 300 * time.Millisecond,
		ForwardMaxHold: time.Minute, ForwardStopGrace: 5 * time.Second,
	}
	cfg := base
	cfg.Roles = "ingest,pipeline,api"
	a, _ := runApp(t, cfg)
	st := a.Store()
	client, token, err := st.CreateClient(ctx, "Acme Jobs")
	if err != nil {
		t.Fatal(err)
	}
	camp, _ := st.CreateCampaign(ctx, client.ID, "Backend", store.CampaignOptions{})
	sens, _ := st.CreateCampaign(ctx, client.ID, "Clinic", store.CampaignOptions{Sensitive: true})
	_, otherToken, _ := st.CreateClient(ctx, "Other")
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	api := apiClient{t: t, base: "http://" + a.APIAddr(), token: token}

	instr := fmt.Sprintf(`{
	  "requested_by": "Jane Doe, Acme HR", "note": "DPA annex 2",
	  "meta": {"endpoint": %q, "access_token": "meta-token",
	    "conversions": [{"event": "application", "pixel_id": "1001", "event_name": "SubmitApplication"}],
	    "audiences": [{"audience_id": "1002", "segment": {"preset": "applied", "days": 30}}]},
	  "google": {"data_manager_endpoint": %q, "ads_endpoint": %q, "customer_id": "769-372-9833",
	    "access_token": "google-token", "developer_token": "dev-token", "customer_match_terms_accepted": true,
	    "conversions": [{"event": "application", "conversion_action_id": "1003"},
	                    {"event": "application", "conversion_action_id": "1004", "api": "ads_click"}],
	    "audiences": [{"user_list_id": "1005", "segment": {"preset": "applied"}}]},
	  "linkedin": {"endpoint": %q, "access_token": "li-token",
	    "conversions": [{"event": "application", "conversion_rule_id": "1006"}],
	    "audiences": [{"segment_id": "9001", "segment": {"preset": "applied"}}]}
	}`, meta.URL(), google.URL(), google.URL(), linkedin.URL())

	// Refusals: sensitive campaign, destination off the allow-list, another
	// client's campaign.
	if code, body := api.do("POST", "/api/v1/campaigns/"+sens.ID+"/instructions", instr); code != 409 || !strings.Contains(body, "sensitive") {
		t.Errorf("instruction for a sensitive campaign: %d %s", code, body)
	}
	evil := strings.Replace(instr, meta.URL(), "https://graph.evil.example", 1)
	if code, body := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions", evil); code != 400 || !strings.Contains(body, "allow-list") || !strings.Contains(body, `"field":"meta.endpoint"`) {
		t.Errorf("destination off the allow-list: %d %s", code, body)
	}
	if code, _ := (apiClient{t, api.base, otherToken}).do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions", instr); code != 404 {
		t.Errorf("other client's campaign: %d, want 404", code)
	}
	if code, body := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions", instr); code != 201 || !strings.Contains(body, `"version":1`) {
		t.Fatalf("instruction: %d %s", code, body)
	}
	code, hist := api.do("GET", "/api/v1/campaigns/"+camp.ID+"/instructions", "")
	if code != 200 || !strings.Contains(hist, `"active_version":1`) || !strings.Contains(hist, "meta.access_token") ||
		!strings.Contains(hist, `"actor":"client:`+client.ID+`"`) || !strings.Contains(hist, "Jane Doe") {
		t.Fatalf("history: %d %s", code, hist)
	}
	for _, secret := range []string{"meta-token", "google-token", "dev-token", "li-token"} {
		if strings.Contains(hist, secret) {
			t.Fatalf("the API returned a credential: %s", hist)
		}
	}
	var stored []struct {
		Secrets string `ch:"secrets"`
		Spec    string `ch:"spec"`
	}
	if err := st.Conn().Select(ctx, &stored, "SELECT secrets, spec FROM forward_instructions"); err != nil || len(stored) != 1 {
		t.Fatalf("stored instructions: %v %d", err, len(stored))
	}
	if strings.Contains(stored[0].Secrets+stored[0].Spec, "meta-token") || stored[0].Secrets == "" {
		t.Fatalf("credentials stored in clear: %+v", stored[0])
	}
	// A change without credentials keeps them (v2), a PATCH to sensitive
	// would stop forwarding; here the instruction simply continues.
	if code, body := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions",
		strings.NewReplacer(`"access_token": "meta-token",`, ``, `"access_token": "google-token", "developer_token": "dev-token",`, ``,
			`"access_token": "li-token",`, ``).Replace(instr)); code != 201 || !strings.Contains(body, `"version":2`) {
		t.Fatalf("instruction v2 without credentials: %d %s", code, body)
	}

	fwdCfg := base
	fwdCfg.Roles = "forward"
	fwdCfg.DataDir = t.TempDir()
	fwdCfg.ForwardStopGrace = -1 // Stop abandons in-flight platform requests, like a kill
	_, stopFwd := runApp(t, fwdCfg)

	ingestURL := "http://" + a.IngestAddr() + "/p.gif?"
	const ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
	type person struct{ email, metaHash, googleHash string }
	var people []person
	send := func(i int, ip string, consent bool) {
		email := fmt.Sprintf(" Ada.Lovelace%d+jobs@GMail.com", i)
		q := url.Values{"c": {camp.ID}, "e": {"application"}, "u": {"https://jobs.example.com/apply?job=42"},
			"em": {email}, "gclid": {fmt.Sprintf("gclid-%d", i)}, "fbclid": {fmt.Sprintf("fbclid%d", i)}, "li_fat_id": {fmt.Sprintf("li-%d", i)}}
		if consent {
			q.Set("ad_storage", "granted")
			q.Set("ad_user_data", "granted")
			q.Set("ad_personalization", "granted")
			meta.RegisterEmail(email)
			google.RegisterEmail(email)
			linkedin.RegisterEmail(email)
			people = append(people, person{email,
				sha(strings.ToLower(strings.TrimSpace(email))), sha(googletest.NormalizeEmail(email))})
		} else {
			q.Set("ad_user_data", "denied")
		}
		req, _ := http.NewRequest("GET", ingestURL+q.Encode(), nil)
		req.Header.Set("X-Forwarded-For", ip)
		req.Header.Set("User-Agent", ua)
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
	for i := range 20 {
		send(i, fmt.Sprintf("203.0.113.%d", i+1), true)
	}
	for i := 100; i < 105; i++ {
		send(i, fmt.Sprintf("198.51.100.%d", i), false) // no ad consent: never forwarded
	}
	type counts struct{ meta, dm, clicks, li, metaAud, googleAud, liAud int }
	now := func() counts {
		return counts{len(meta.Events()), len(google.Events()), len(google.Clicks()), len(linkedin.Events()),
			len(meta.Audience("1002")), len(google.Members("1005")), len(linkedin.Segment("9001"))}
	}
	wait := func(what string, want counts, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for now() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: have %+v, want %+v", what, now(), want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait("first 20 visitors forwarded", counts{20, 20, 20, 20, 20, 20, 20}, 60*time.Second)

	// The right hashes, in each platform's normalisation.
	for _, p := range people {
		if !slices.Contains(meta.Audience("1002"), p.metaHash) || !slices.Contains(linkedin.Segment("9001"), p.metaHash) ||
			!slices.Contains(google.Members("1005"), p.googleHash) {
			t.Errorf("%q missing from an audience", p.email)
		}
	}
	metaHashes := map[string]bool{}
	for _, ev := range meta.Events() {
		if len(ev.User.Em) != 1 || ev.User.ClientUserAgent != ua || !strings.HasPrefix(ev.User.Fbc, "fb.1.") ||
			ev.SourceURL == "" || len(ev.DataProcessingOptions) != 0 || ev.Name != "SubmitApplication" {
			t.Errorf("meta event %+v", ev)
		}
		if len(ev.User.Em) > 0 {
			metaHashes[ev.User.Em[0]] = true
		}
	}
	for _, ev := range google.Events() {
		if ev.Consent != (googletest.Consent{AdUserData: "CONSENT_GRANTED", AdPersonalization: "CONSENT_GRANTED"}) || len(ev.Emails) != 1 || ev.Gclid == "" {
			t.Errorf("google event %+v", ev)
		}
	}
	for _, p := range people {
		if !metaHashes[p.metaHash] {
			t.Errorf("no meta conversion with the hash of %q", p.email)
		}
	}

	// Kill the forwarder while Meta hangs. The next 20 visitors share an
	// address (one Kafka partition): wait until Google and LinkedIn have
	// them, then kill while Meta's request is outstanding.
	hitsBefore := meta.Hits()
	meta.InjectN(20, metatest.Fault{Hang: time.Minute})
	for i := 20; i < 40; i++ {
		send(i, "192.0.2.77", true)
	}
	wait("Google and LinkedIn have the next 20", counts{20, 40, 40, 40, 20, 40, 40}, 60*time.Second)
	// Each platform has its own consumer group: Meta's request may leave
	// after the others' answers.
	for deadline := time.Now().Add(30 * time.Second); meta.Hits() <= hitsBefore; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no request reached Meta")
		}
	}
	// Let Google's and LinkedIn's records land before the kill (else their
	// last batches would rightly be sent again after the restart).
	landed := map[string]uint32{"google|conversions": 80, "linkedin|conversions": 40,
		"google|audience_add": 40, "linkedin|audience_add": 40}
	// The ledger is written first; the sent conversions and the audience
	// members the relay compares against after a restart come after it.
	records := func() map[string]uint32 {
		var rows []struct {
			Key string `ch:"k"`
			N   uint64 `ch:"n"`
		}
		err := a.Store().Conn().Select(context.Background(), &rows, `
			SELECT concat(platform, '|sent') AS k, count() AS n FROM forward_sent WHERE campaign_id = ? GROUP BY platform
			UNION ALL
			SELECT concat(platform, '|members') AS k, count() AS n FROM audience_members WHERE campaign_id = ? AND action = 'add' GROUP BY platform`,
			camp.ID, camp.ID)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]uint32{}
		for _, r := range rows {
			m[r.Key] = uint32(r.N)
		}
		return m
	}
	landedRecords := map[string]uint32{"google|sent": 80, "linkedin|sent": 40, "google|members": 40, "linkedin|members": 40}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		sent, rec := ledgerSent(t, api, camp.ID), records()
		ok := true
		for k, w := range landed {
			ok = ok && sent[k] == w
		}
		for k, w := range landedRecords {
			ok = ok && rec[k] == w
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Google's and LinkedIn's sends not recorded: ledger %v, records %v", sent, rec)
		}
	}
	stopFwd()
	if n := len(meta.Events()); n != 20 {
		t.Fatalf("meta has %d events at the kill, want 20 (the rest hung)", n)
	}
	// Release the remaining scripted hangs.
	quick := &http.Client{Timeout: 20 * time.Millisecond}
	for meta.Pending() > 0 {
		if resp, err := quick.Get(meta.URL() + "/drain"); err == nil {
			resp.Body.Close()
		}
	}
	fwdCfg.DataDir = t.TempDir()
	runApp(t, fwdCfg)
	wait("everything after the restart", counts{40, 40, 40, 40, 40, 40, 40}, 60*time.Second)
	time.Sleep(time.Second)
	if c := now(); c != (counts{40, 40, 40, 40, 40, 40, 40}) {
		t.Errorf("after settling: %+v", c)
	}
	for name, d := range map[string]map[string]int{"meta": meta.Duplicates(), "google": google.Duplicates(), "linkedin": linkedin.Duplicates()} {
		if len(d) > 0 {
			t.Errorf("%s received duplicates: %v", name, d)
		}
	}

	// Revoke: forwarding stops and every audience member is removed.
	if code, body := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions/revoke", `{"requested_by": "Jane Doe"}`); code != 201 || !strings.Contains(body, `"revoked":true`) {
		t.Fatalf("revoke: %d %s", code, body)
	}
	wait("audiences emptied", counts{40, 40, 40, 40, 0, 0, 0}, 30*time.Second)
	var deleted int
	for _, u := range meta.Uploads() {
		if u.Method == "DELETE" {
			deleted += u.Rows
		}
	}
	if deleted != 40 {
		t.Errorf("meta DELETE uploads carried %d rows, want 40", deleted)
	}
	send(50, "203.0.113.200", true)
	time.Sleep(2 * time.Second)
	if c := now(); c != (counts{40, 40, 40, 40, 0, 0, 0}) {
		t.Errorf("forwarded after the revocation: %+v", c)
	}

	// The client's ledger shows every send and every removal (the last
	// removal rows are written right after the platforms' answers).
	want := map[string]uint32{
		"meta|conversions": 40, "google|conversions": 80, "linkedin|conversions": 40,
		"meta|audience_add": 40, "google|audience_add": 40, "linkedin|audience_add": 40,
		"meta|audience_remove": 40, "google|audience_remove": 40, "linkedin|audience_remove": 40,
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		sent := ledgerSent(t, api, camp.ID)
		if maps.Equal(sent, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger sends %v, want %v", sent, want)
		}
	}
	if code, _ := (apiClient{t, api.base, otherToken}).do("GET", "/api/v1/campaigns/"+camp.ID+"/ledger", ""); code != 404 {
		t.Errorf("other client's ledger: %d, want 404", code)
	}
}

// ledgerSent reads the campaign's ledger through the client API and sums
// the items sent per platform and purpose. It fails t on a malformed row or
// a dead letter.
func ledgerSent(t *testing.T, api apiClient, campaign string) map[string]uint32 {
	t.Helper()
	code, body := api.do("GET", "/api/v1/campaigns/"+campaign+"/ledger", "")
	if code != 200 {
		t.Fatalf("ledger: %d %s", code, body)
	}
	var led struct {
		Batches     []store.LedgerRow  `json:"batches"`
		DeadLetters []store.DeadLetter `json:"dead_letters"`
		// Requests whose answer a killed forwarder never recorded, once
		// older than store.UnconfirmedAfter.
		Unconfirmed *[]store.Unconfirmed `json:"unconfirmed"`
	}
	if err := json.Unmarshal([]byte(body), &led); err != nil {
		t.Fatal(err)
	}
	if led.Unconfirmed == nil {
		t.Fatalf("ledger without unconfirmed: %s", body)
	}
	for _, u := range *led.Unconfirmed {
		if u.ID == "" || u.Platform == "" || u.Items == 0 || u.Note != store.UnconfirmedNote {
			t.Errorf("unconfirmed entry %+v", u)
		}
	}
	sent := map[string]uint32{}
	for _, b := range led.Batches {
		sent[b.Platform+"|"+b.Purpose] += b.Sent
		if b.InstructionVersion == 0 || b.ConsentBasis == "" || b.BatchID == "" {
			t.Errorf("ledger row %+v", b)
		}
	}
	if len(led.DeadLetters) > 0 {
		t.Errorf("dead letters: %+v", led.DeadLetters)
	}
	return sent
}

// TestInstructionsNeedSecretsKey: without -secrets.key the API refuses an
// instruction carrying credentials, and the forward role does not start.
func TestInstructionsNeedSecretsKey(t *testing.T) {
	a := startApp(t, func(c *app.Config) { c.Roles = "api"; c.ForwardAllowedHosts = "graph.facebook.com" })
	ctx := context.Background()
	client, token, _ := a.Store().CreateClient(ctx, "Acme")
	camp, _ := a.Store().CreateCampaign(ctx, client.ID, "Jobs", store.CampaignOptions{})
	api := apiClient{t: t, base: "http://" + a.APIAddr(), token: token}
	body := `{"meta": {"access_token": "x", "conversions": [{"event": "application", "pixel_id": "1", "event_name": "Lead"}]}}`
	code, resp := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions", body)
	if code != 422 || !strings.Contains(resp, "secrets key") {
		t.Errorf("without a key: %d %s", code, resp)
	}
	if code, resp := api.do("POST", "/api/v1/campaigns/"+camp.ID+"/instructions/revoke", ""); code != 409 {
		t.Errorf("revoke without an instruction: %d %s", code, resp)
	}
	cfg := app.Config{Roles: "forward", ClickHouseAddr: testenv.ClickHouseAddr(t), ClickHouseDatabase: testenv.Database(t),
		KafkaBrokers: testenv.Broker(t, "hits", 1), KafkaTopic: "hits", KafkaGroup: "pipe", ForwardGroup: "fwd"}
	if _, err := app.Start(ctx, cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "secrets.key") {
		t.Errorf("forward role without a key: %v", err)
	}
}

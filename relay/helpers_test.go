package relay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/google/googletest"
	"github.com/jobpixel/jobpixel/forward/linkedin/linkedintest"
	"github.com/jobpixel/jobpixel/forward/meta/metatest"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
	"github.com/jobpixel/jobpixel/schemas"
)

// Tokens the fakes accept.
const (
	metaToken     = "meta-token"
	googleToken   = "google-token"
	devToken      = "dev-token"
	linkedinToken = "linkedin-token"
)

// Destination ids used by the tests' instructions.
const (
	pixelID       = "111"
	metaAudience  = "222"
	dmAction      = "333"
	adsAction     = "444"
	userList      = "555"
	customerID    = "7693729833"
	ruleID        = "666"
	segmentID     = "777"
	segmentID2    = "778"
	metaAudience2 = "223"
)

// env is a broker, a ClickHouse database, the three fake platforms and a
// secrets key.
type env struct {
	t        *testing.T
	st       *store.Store
	broker   string
	topic    string
	key      *instruction.Key
	allow    instruction.AllowList
	meta     *metatest.Server
	google   *googletest.Server
	linkedin *linkedintest.Server
	writer   *kafka.Writer
	client   store.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, st: testenv.Store(t), topic: "hits"}
	e.broker = testenv.Broker(t, e.topic, 3)
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	var err error
	if e.key, err = instruction.ParseKey(base64.StdEncoding.EncodeToString(raw[:])); err != nil {
		t.Fatal(err)
	}
	if e.allow, err = instruction.ParseAllowList("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	e.meta = metatest.Start(metatest.Config{Token: metaToken})
	e.google = googletest.Start(googletest.Config{Token: googleToken, DeveloperToken: devToken})
	e.linkedin = linkedintest.Start(linkedintest.Config{Token: linkedinToken})
	e.linkedin.AddSegment(segmentID, 0)
	e.linkedin.AddSegment(segmentID2, 0)
	t.Cleanup(func() { e.meta.Close(); e.google.Close(); e.linkedin.Close() })
	e.writer = &kafka.Writer{Addr: kafka.TCP(e.broker), Topic: e.topic, Balancer: &kafka.Hash{},
		BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	t.Cleanup(func() { e.writer.Close() })
	if e.client, _, err = e.st.CreateClient(context.Background(), "Acme"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) campaign(name string) store.Campaign {
	e.t.Helper()
	c, err := e.st.CreateCampaign(context.Background(), e.client.ID, name, store.CampaignOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// fullBody is an instruction for every platform and purpose: conversions
// of applications, and an audience of applicants.
func (e *env) fullBody() string {
	return fmt.Sprintf(`{
	  "requested_by": "test",
	  "meta": {"endpoint": %q, "access_token": %q,
	    "conversions": [{"event": "application", "pixel_id": %q, "event_name": "SubmitApplication"}],
	    "audiences": [{"audience_id": %q, "segment": {"preset": "applied"}}]},
	  "google": {"data_manager_endpoint": %q, "ads_endpoint": %q, "customer_id": %q,
	    "access_token": %q, "developer_token": %q, "customer_match_terms_accepted": true,
	    "conversions": [{"event": "application", "conversion_action_id": %q},
	                    {"event": "application", "conversion_action_id": %q, "api": "ads_click"}],
	    "audiences": [{"user_list_id": %q, "segment": {"preset": "applied"}}]},
	  "linkedin": {"endpoint": %q, "access_token": %q,
	    "conversions": [{"event": "application", "conversion_rule_id": %q}],
	    "audiences": [{"segment_id": %q, "segment": {"preset": "applied"}}]}
	}`, e.meta.URL(), metaToken, pixelID, metaAudience,
		e.google.URL(), e.google.URL(), customerID, googleToken, devToken, dmAction, adsAction, userList,
		e.linkedin.URL(), linkedinToken, ruleID, segmentID)
}

// instruct stores an instruction version as the API would.
func (e *env) instruct(campaignID, body string) store.Instruction {
	e.t.Helper()
	spec, creds, err := instruction.Parse([]byte(body), instruction.Credentials{}, e.allow)
	if err != nil {
		e.t.Fatal(err)
	}
	in, err := e.st.AddInstruction(context.Background(), store.Instruction{ClientID: e.client.ID, CampaignID: campaignID,
		Actor: "test", Spec: spec.Encode(), KeyID: e.key.ID()}, func(v uint32) (string, error) {
		return e.key.Seal(creds, instruction.AAD(e.client.ID, campaignID, v))
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return in
}

func (e *env) revoke(campaignID string) store.Instruction {
	e.t.Helper()
	in, err := e.st.AddInstruction(context.Background(), store.Instruction{ClientID: e.client.ID, CampaignID: campaignID,
		Actor: "test", Revoked: true}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return in
}

// visitor is one test visitor.
type visitor struct {
	email    string // raw
	emMeta   string // Meta/LinkedIn hash
	emGoogle string // Google hash
	gclid    string
	fbc, fbp string
	liFatID  string
}

func newVisitor(i int) visitor {
	// Mixed case, spaces and gmail dots/plus: the hashes must follow each
	// platform's normalisation (the fakes reject the wrong one).
	raw := fmt.Sprintf("  Visitor.%d+Jobs@Gmail.com ", i)
	m, ok := anonymize.EmailMeta(nil, []byte(raw))
	g, ok2 := anonymize.EmailGoogle(nil, []byte(raw))
	if !ok || !ok2 {
		panic("bad test e-mail " + raw)
	}
	ms := time.Now().UnixMilli()
	return visitor{email: raw, emMeta: string(m), emGoogle: string(g),
		gclid: fmt.Sprintf("gclid-%d", i), fbc: fmt.Sprintf("fb.1.%d.fbclid%d", ms, i), fbp: fmt.Sprintf("fb.1.%d.%d", ms, 1000+i),
		liFatID: fmt.Sprintf("li-fat-%d", i)}
}

func (e *env) register(v visitor) {
	e.meta.RegisterEmail(v.email)
	e.google.RegisterEmail(v.email)
	e.linkedin.RegisterEmail(v.email)
}

// hit builds a hit carrying every identifier, whatever the consent: the
// relay must enforce consent itself.
func hit(c store.Campaign, v visitor, ev schemas.Event, d consent.Decision) schemas.Hit {
	h := schemas.Hit{
		ReceivedMs: time.Now().UnixMilli(), Event: ev, Consent: uint32(d),
		Campaign: []byte(c.ID), Client: []byte(c.ClientID),
		URL: []byte("https://jobs.example.com/vacancy/42"), UserAgent: []byte("Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"),
		Gclid: []byte(v.gclid), Fbc: []byte(v.fbc), Fbp: []byte(v.fbp), LiFatID: []byte(v.liFatID),
		EmailMeta: []byte(v.emMeta), EmailGoogle: []byte(v.emGoogle),
		Flags: schemas.FlagFullIP,
	}
	_, _ = rand.Read(h.ID[:])
	h.IP = netip.MustParseAddr("203.0.113.9").As16()
	return h
}

func id(h schemas.Hit) string { return hex.EncodeToString(h.ID[:]) }

func (e *env) produce(hits ...schemas.Hit) { e.produceKeyed(nil, hits...) }

// produceKeyed writes hits with one Kafka key (one partition), or keyed by
// their ids when key is nil.
func (e *env) produceKeyed(key []byte, hits ...schemas.Hit) {
	e.t.Helper()
	msgs := make([]kafka.Message, len(hits))
	for i := range hits {
		k := key
		if k == nil {
			k = hits[i].ID[:]
		}
		msgs[i] = kafka.Message{Key: k, Value: hits[i].Append(nil)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.writer.WriteMessages(ctx, msgs...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) config(p consent.Platform, group string) Config {
	return Config{
		Brokers: []string{e.broker}, Topic: e.topic, Group: group, Platform: p,
		Key: e.key, Allow: e.allow,
		FlushInterval: 50 * time.Millisecond, Refresh: 200 * time.Millisecond, AudienceInterval: 300 * time.Millisecond,
		MaxHold: time.Minute, StopGrace: 5 * time.Second,
		Retry: forward.RetryPolicy{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxElapsed: 10 * time.Second},
	}
}

func testLog() *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("RELAY_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// start runs a relay until the test ends or the returned stop is called.
func (e *env) start(cfg Config) (stop func()) {
	e.t.Helper()
	return e.startWith(cfg, e.st, nil)
}

// startWith runs a relay on st, after mod (if set) adjusted it.
func (e *env) startWith(cfg Config, st Store, mod func(*Relay)) (stop func()) {
	e.t.Helper()
	r, err := New(cfg, st, testLog(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if mod != nil {
		mod(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			e.t.Errorf("relay %v: %v", cfg.Platform, err)
		}
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			e.t.Errorf("relay %v did not stop", cfg.Platform)
		}
	}
	e.t.Cleanup(stop)
	return stop
}

// startAll runs one relay per platform, each in its own group.
func (e *env) startAll(prefix string) (stop func()) {
	var stops []func()
	for _, p := range []consent.Platform{consent.Google, consent.Meta, consent.LinkedIn} {
		stops = append(stops, e.start(e.config(p, prefix+"-"+p.String())))
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
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

type ledgerSum struct {
	Platform string `ch:"platform"`
	Campaign string `ch:"campaign_id"`
	Purpose  string `ch:"purpose"`
	API      string `ch:"api"`
	Rows     uint64 `ch:"rows"`
	Sent     uint64 `ch:"sent"`
	Items    uint64 `ch:"items"`
	Hashed   uint64 `ch:"hashed"`
}

func (e *env) ledger() []ledgerSum {
	e.t.Helper()
	var rows []ledgerSum
	err := e.st.Conn().Select(context.Background(), &rows, `SELECT platform, campaign_id, purpose, api, count() AS rows,
		sum(sent) AS sent, sum(items) AS items, sum(hashed_identifiers) AS hashed
		FROM forward_ledger GROUP BY platform, campaign_id, purpose, api ORDER BY platform, campaign_id, purpose, api`)
	if err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// adsGranted is a decision that allows conversions and audiences on every
// platform (Consent Mode, no TCF).
var adsGranted = consent.Resolve(&consent.Signals{AdUserData: consent.Granted, AdPersonalization: consent.Granted}, consent.Vendors{})

// instructMeta instructs campaign to send application events to the fake
// Meta as Conversions API events named eventName.
func (e *env) instructMeta(campaign, eventName string) {
	e.t.Helper()
	e.instruct(campaign, fmt.Sprintf(`{"meta": {"endpoint": %q, "access_token": %q,
	  "conversions": [{"event": "application", "pixel_id": %q, "event_name": %q}]}}`, e.meta.URL(), metaToken, pixelID, eventName))
}

// sentRows counts the forward_sent rows: conversions recorded as done.
func (e *env) sentRows() uint64 {
	e.t.Helper()
	var rows []struct {
		N uint64 `ch:"n"`
	}
	if err := e.st.Conn().Select(context.Background(), &rows, `SELECT count() AS n FROM forward_sent`); err != nil {
		e.t.Fatal(err)
	}
	return rows[0].N
}

func (e *env) deadLetters() []store.DeadLetter {
	e.t.Helper()
	var rows []struct {
		Platform string `ch:"platform"`
		Purpose  string `ch:"purpose"`
		Item     string `ch:"item"`
		Kind     string `ch:"kind"`
		Code     string `ch:"code"`
		Reason   string `ch:"reason"`
	}
	if err := e.st.Conn().Select(context.Background(), &rows, `SELECT platform, purpose, item, kind, code, reason FROM forward_dead_letters`); err != nil {
		e.t.Fatal(err)
	}
	out := make([]store.DeadLetter, len(rows))
	for i, r := range rows {
		out[i] = store.DeadLetter{Platform: r.Platform, Purpose: r.Purpose, Item: r.Item, Kind: r.Kind, Code: r.Code, Reason: r.Reason}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

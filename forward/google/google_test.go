package google_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/google"
	"github.com/jobpixel/jobpixel/forward/google/googletest"
	"github.com/jobpixel/jobpixel/internal/fakeclock"
)

const (
	token    = "ya29.secret"
	devToken = "dev-secret"
	// Test vectors from the platform reference.
	gmailHash = "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4" // cloudysanfrancisco@gmail.com
	phoneHash = "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30" // +18005550100
)

var t0 = time.Date(2026, 10, 14, 14, 45, 18, 0, time.UTC)

type env struct {
	fake  *googletest.Server
	clock *fakeclock.Clock
	dm    *google.DataManager
	ads   *google.Ads
	list  forward.Destination
	conv  forward.Destination
}

func setup(t *testing.T) *env {
	t.Helper()
	clock := fakeclock.New(t0)
	fake := googletest.Start(googletest.Config{Token: token, DeveloperToken: devToken, Now: clock.Now})
	t.Cleanup(fake.Close)
	fake.RegisterEmail("Cloudy.SanFrancisco+shopping@gmail.com")
	fake.RegisterPhone("(800)555-0100", "+18005550100")
	return &env{
		fake:  fake,
		clock: clock,
		dm: &google.DataManager{BaseURL: fake.URL(), HTTPClient: fake.Client(), Retry: clock.Policy(4),
			Now: clock.Now, TermsAccepted: true},
		ads: &google.Ads{BaseURL: fake.URL(), HTTPClient: fake.Client(), Retry: clock.Policy(4), Now: clock.Now,
			DeveloperToken: devToken},
		list: forward.Destination{Account: "769-372-9833", ID: "7090784486", Token: token},
		conv: forward.Destination{Account: "7693729833", ID: "555", LoginAccount: "123-456-7890", Token: token},
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func members(n int) []forward.Member {
	out := make([]forward.Member, n)
	for i := range out {
		out[i] = forward.Member{ID: fmt.Sprintf("v%d", i), User: forward.Identity{GoogleEmail: fmt.Sprintf("%064x", i+1)},
			Consent: forward.Consent{AdUserData: true, AdPersonalization: true}}
	}
	return out
}

func TestAddMembersValid(t *testing.T) {
	e := setup(t)
	ms := []forward.Member{
		{ID: "a", User: forward.Identity{GoogleEmail: gmailHash, GooglePhone: phoneHash}, Consent: forward.Consent{AdUserData: true, AdPersonalization: true}},
		{ID: "b", User: forward.Identity{GooglePhone: sha("+4930123456")}, Consent: forward.Consent{AdUserData: true}},
	}
	res, err := e.dm.AddMembers(context.Background(), e.list, ms)
	if err != nil || res.Sent() != 2 {
		t.Fatalf("err %v res %+v", err, res)
	}
	a, ok := e.fake.Member("7090784486", gmailHash)
	if !ok || !slices.Equal(a.Phones, []string{phoneHash}) || a.Consent != (googletest.Consent{AdUserData: "CONSENT_GRANTED", AdPersonalization: "CONSENT_GRANTED"}) {
		t.Errorf("member a %+v", a)
	}
	b, _ := e.fake.Member("7090784486", sha("+4930123456"))
	if b.Consent != (googletest.Consent{AdUserData: "CONSENT_GRANTED", AdPersonalization: "CONSENT_DENIED"}) {
		t.Errorf("member b consent %+v (must be sent truthfully)", b.Consent)
	}
	if _, err := e.dm.RemoveMembers(context.Background(), e.list, ms[:1]); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.Members("7090784486"); len(got) != 1 {
		t.Errorf("after remove %v", got)
	}
}

func TestAddMembersSplitsAt10000(t *testing.T) {
	e := setup(t)
	res, err := e.dm.AddMembers(context.Background(), e.list, members(25000))
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, r := range e.fake.Requests() {
		sizes = append(sizes, r.Items)
	}
	if !slices.Equal(sizes, []int{10000, 10000, 5000}) || res.Sent() != 25000 || len(e.fake.Members("7090784486")) != 25000 {
		t.Errorf("sizes %v sent %d", sizes, res.Sent())
	}
}

func TestAddMembersRefusals(t *testing.T) {
	e := setup(t)
	ms := members(3)
	ms[0].User = forward.Identity{Email: sha("mary@example.com")} // Meta normalisation only
	ms[1].User.GoogleEmail = "Cloudy@gmail.com"
	res, err := e.dm.AddMembers(context.Background(), e.list, ms)
	if err == nil || len(res.Rejected) != 2 || res.Sent() != 1 {
		t.Fatalf("err %v res %+v", err, res)
	}
	e.dm.TermsAccepted = false
	hits := e.fake.Hits()
	res, err = e.dm.AddMembers(context.Background(), e.list, members(2))
	if forward.Classify(err) != forward.Permanent || len(res.Rejected) != 2 || e.fake.Hits() != hits {
		t.Errorf("terms not accepted: err %v res %+v", err, res)
	}
}

func conversion(i int) forward.Conversion {
	return forward.Conversion{
		ID:      fmt.Sprintf("apply-%d", i),
		Name:    "SubmitApplication",
		Time:    t0.Add(-time.Hour),
		User:    forward.Identity{GoogleEmail: gmailHash},
		GCLID:   fmt.Sprintf("gclid-%d", i),
		Consent: forward.Consent{AdUserData: true, AdPersonalization: false},
	}
}

func conversions(n int) []forward.Conversion {
	out := make([]forward.Conversion, n)
	for i := range out {
		out[i] = conversion(i)
	}
	return out
}

func TestEventsValid(t *testing.T) {
	e := setup(t)
	in := conversions(2)
	in[0].Value = forward.Value{Amount: "1500.5", Currency: "EUR"}
	in[1].User = forward.Identity{}
	in[1].GCLID, in[1].WBRAID = "", "wbraid-1"
	res, err := e.dm.SendConversions(context.Background(), e.conv, in)
	if err != nil || res.Sent() != 2 {
		t.Fatalf("err %v res %+v", err, res)
	}
	ev, ok := e.fake.Event("apply-0")
	if !ok || ev.Destination != "555" || !ev.Timestamp.Equal(in[0].Time) || ev.Gclid != "gclid-0" || ev.Source != "WEB" ||
		ev.Value == nil || *ev.Value != 1500.5 || ev.Currency != "EUR" || !slices.Equal(ev.Emails, []string{gmailHash}) ||
		ev.Consent != (googletest.Consent{AdUserData: "CONSENT_GRANTED", AdPersonalization: "CONSENT_DENIED"}) {
		t.Errorf("event %+v", ev)
	}
	if ev, _ := e.fake.Event("apply-1"); ev.Wbraid != "wbraid-1" || len(ev.Emails) != 0 {
		t.Errorf("event 1 %+v", ev)
	}
}

func TestEventsSplitsAt2000(t *testing.T) {
	e := setup(t)
	res, err := e.dm.SendConversions(context.Background(), e.conv, conversions(4500))
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, r := range e.fake.Requests() {
		sizes = append(sizes, r.Items)
	}
	if !slices.Equal(sizes, []int{2000, 2000, 500}) || res.Sent() != 4500 || len(e.fake.Duplicates()) != 0 {
		t.Errorf("sizes %v sent %d dup %v", sizes, res.Sent(), e.fake.Duplicates())
	}
	for i, ev := range e.fake.Events() {
		if ev.TransactionID != fmt.Sprintf("apply-%d", i) {
			t.Fatalf("event %d transactionId %q", i, ev.TransactionID)
		}
	}
}

func TestEventsOldRefusedLocally(t *testing.T) {
	e := setup(t)
	in := conversions(2)
	in[0].Time = t0.Add(-91 * 24 * time.Hour)
	res, err := e.dm.SendConversions(context.Background(), e.conv, in)
	if err == nil || len(res.Rejected) != 1 || res.Rejected[0].ID != "apply-0" || res.Sent() != 1 ||
		!strings.Contains(res.Rejected[0].Err.Error(), "older than 90 days") {
		t.Fatalf("err %v res %+v", err, res)
	}
}

func TestRetries(t *testing.T) {
	e := setup(t)
	e.fake.Inject(googletest.Throttled(2*time.Second), googletest.Aborted(), googletest.Unavailable())
	res, err := e.dm.SendConversions(context.Background(), e.conv, conversions(1))
	if err != nil || res.Batches[0].Attempts != 4 {
		t.Fatalf("err %v res %+v", err, res)
	}
	// Retry-After first, then backoff (zero jitter: b/2 for b = 1s, 2s).
	if s := e.clock.Sleeps(); !slices.Equal(s, []time.Duration{2 * time.Second, 500 * time.Millisecond, time.Second}) {
		t.Errorf("sleeps %v", s)
	}
}

func TestRetryInfoDetail(t *testing.T) {
	e := setup(t)
	e.fake.Inject(googletest.Fault{Status: 429, Body: googletest.Envelope(429, "RESOURCE_EXHAUSTED", "Quota exceeded.",
		map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"})})
	if _, err := e.dm.SendConversions(context.Background(), e.conv, conversions(1)); err != nil {
		t.Fatal(err)
	}
	if s := e.clock.Sleeps(); !slices.Equal(s, []time.Duration{5 * time.Second}) {
		t.Errorf("sleeps %v", s)
	}
}

func TestPermanentNotRetried(t *testing.T) {
	e := setup(t)
	e.fake.InjectN(3, googletest.PermissionDenied())
	res, err := e.dm.AddMembers(context.Background(), e.list, members(2))
	var fe *forward.Error
	if !errors.As(err, &fe) || fe.Kind != forward.Permanent || fe.Code != "PERMISSION_DENIED" || fe.Status != 403 {
		t.Fatalf("err %v", err)
	}
	if e.fake.Hits() != 1 || len(res.Failures()) != 2 {
		t.Errorf("hits %d", e.fake.Hits())
	}
}

func TestGivesUpAfterLimit(t *testing.T) {
	e := setup(t)
	e.fake.InjectN(10, googletest.Unavailable())
	res, err := e.dm.AddMembers(context.Background(), e.list, members(1))
	if forward.Classify(err) != forward.Retryable || e.fake.Hits() != 4 || res.Batches[0].Attempts != 4 {
		t.Errorf("err %v hits %d", err, e.fake.Hits())
	}
}

func TestTimeoutRetried(t *testing.T) {
	e := setup(t)
	// The hang lasts until the attempt times out; the retry must then be
	// answered within the timeout too, also on a loaded machine.
	e.dm.Timeout = 2 * time.Second
	e.fake.Inject(googletest.Hang(time.Minute))
	res, err := e.dm.AddMembers(context.Background(), e.list, members(1))
	if err != nil || res.Batches[0].Attempts != 2 {
		t.Fatalf("err %v res %+v", err, res)
	}
}

func TestAdsUpload(t *testing.T) {
	e := setup(t)
	e.ads.Location = time.FixedZone("CEST", 2*3600)
	in := conversions(3)
	in[0].Value = forward.Value{Amount: "1", Currency: "EUR"}
	in[2].GCLID, in[2].GBRAID = "", "gbraid-2"
	res, err := e.ads.SendConversions(context.Background(), e.conv, in)
	if err != nil || res.Sent() != 3 {
		t.Fatalf("err %v res %+v", err, res)
	}
	c, ok := e.fake.Click("apply-0")
	want := googletest.Click{CustomerID: "7693729833", Gclid: "gclid-0", ConversionAction: "customers/7693729833/conversionActions/555",
		ConversionDateTime: "2026-10-14 15:45:18+02:00", OrderID: "apply-0", Currency: "EUR",
		Consent: googletest.Consent{AdUserData: "GRANTED", AdPersonalization: "DENIED"}, LoginCustomerID: "1234567890", DeveloperToken: devToken}
	if !ok || c.Value == nil || *c.Value != 1 {
		t.Fatalf("click %+v", c)
	}
	c.Value = nil
	if c != want {
		t.Errorf("click\n got %+v\nwant %+v", c, want)
	}
	if c, _ := e.fake.Click("apply-2"); c.Gbraid != "gbraid-2" || c.Gclid != "" {
		t.Errorf("click 2 %+v", c)
	}
}

func TestAdsPartialFailure(t *testing.T) {
	e := setup(t)
	e.fake.FailClick("gclid-1", "CLICK_NOT_FOUND", "The click was not found.")
	e.fake.FailClick("gclid-3", "EXPIRED_EVENT", "The click is too old.")
	res, err := e.ads.SendConversions(context.Background(), e.conv, conversions(4))
	if err == nil {
		t.Fatal("a partial failure must not be a success")
	}
	if e.fake.Hits() != 1 || res.Batches[0].Attempts != 1 || res.Batches[0].Err != nil || res.Sent() != 2 {
		t.Fatalf("hits %d batch %+v", e.fake.Hits(), res.Batches[0])
	}
	var got []string
	for _, f := range res.Failures() {
		var fe *forward.Error
		errors.As(f.Err, &fe)
		got = append(got, fmt.Sprintf("%d %s %v %s", f.Index, f.ID, fe.Kind, fe.Code))
	}
	if want := []string{"1 apply-1 permanent CLICK_NOT_FOUND", "3 apply-3 permanent EXPIRED_EVENT"}; !slices.Equal(got, want) {
		t.Errorf("failures %v, want %v", got, want)
	}
	if len(e.fake.Clicks()) != 2 {
		t.Errorf("clicks %d", len(e.fake.Clicks()))
	}
}

func TestAdsSplitsAt2000(t *testing.T) {
	e := setup(t)
	in := conversions(4001)
	in[4000].GCLID = "" // refused locally: no click id
	res, err := e.ads.SendConversions(context.Background(), e.conv, in)
	if err == nil || len(res.Rejected) != 1 || res.Rejected[0].Index != 4000 {
		t.Fatalf("err %v rejected %+v", err, res.Rejected)
	}
	var sizes []int
	for _, r := range e.fake.Requests() {
		sizes = append(sizes, r.Items)
	}
	if !slices.Equal(sizes, []int{2000, 2000}) || res.Sent() != 4000 {
		t.Errorf("sizes %v sent %d", sizes, res.Sent())
	}
}

func TestAdsDestinationChecks(t *testing.T) {
	e := setup(t)
	f := func(a *google.Ads, d forward.Destination) {
		t.Helper()
		res, err := a.SendConversions(context.Background(), d, conversions(2))
		if forward.Classify(err) != forward.Permanent || len(res.Rejected) != 2 {
			t.Errorf("err %v", err)
		}
	}
	f(&google.Ads{BaseURL: e.fake.URL()}, e.conv) // no developer token
	f(e.ads, forward.Destination{Account: "abc", ID: "555", Token: token})
	f(e.ads, forward.Destination{Account: "1", ID: "555"})
	f(e.ads, forward.Destination{Account: "1", ID: "555", Token: token, LoginAccount: "mcc"})
	if e.fake.Hits() != 0 {
		t.Error("invalid destinations reached the server")
	}
}

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		status int
		s      string
		want   forward.Kind
	}{
		{409, "ABORTED", forward.Retryable}, {503, "UNAVAILABLE", forward.Retryable},
		{429, "RESOURCE_EXHAUSTED", forward.Throttled}, {400, "INVALID_ARGUMENT", forward.Permanent},
		{401, "UNAUTHENTICATED", forward.Permanent}, {403, "PERMISSION_DENIED", forward.Permanent},
		{409, "ALREADY_EXISTS", forward.Permanent}, {502, "", forward.Retryable}, {404, "", forward.Permanent},
	} {
		if got := google.KindOf(c.status, c.s); got != c.want {
			t.Errorf("KindOf(%d, %q) = %v, want %v", c.status, c.s, got, c.want)
		}
	}
}

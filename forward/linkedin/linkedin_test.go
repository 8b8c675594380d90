package linkedin_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/linkedin"
	"github.com/jobpixel/jobpixel/forward/linkedin/linkedintest"
	"github.com/jobpixel/jobpixel/internal/fakeclock"
)

const (
	token    = "li-secret"
	maryHash = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"
)

var t0 = time.Date(2026, 10, 14, 16, 45, 18, 0, time.UTC)

type env struct {
	fake   *linkedintest.Server
	clock  *fakeclock.Clock
	client *linkedin.Client
	dest   forward.Destination
}

func setup(t *testing.T) *env {
	t.Helper()
	clock := fakeclock.New(t0)
	fake := linkedintest.Start(linkedintest.Config{Token: token, Now: clock.Now})
	t.Cleanup(fake.Close)
	fake.RegisterEmail("Mary@Example.com")
	return &env{
		fake:   fake,
		clock:  clock,
		client: &linkedin.Client{BaseURL: fake.URL(), HTTPClient: fake.Client(), Retry: clock.Policy(4), Now: clock.Now, Version: "202609"},
		dest:   forward.Destination{ID: "23456", Token: token},
	}
}

func conversion(i int) forward.Conversion {
	return forward.Conversion{
		ID:      fmt.Sprintf("apply-%d", i),
		Time:    t0.Add(-time.Hour),
		User:    forward.Identity{Email: maryHash},
		LiFatID: "8f3c2a1e-0b5d-4c2e-9a7f-1d2e3f4a5b6c",
	}
}

func conversions(n int) []forward.Conversion {
	out := make([]forward.Conversion, n)
	for i := range out {
		out[i] = conversion(i)
	}
	return out
}

func TestSendConversionsValid(t *testing.T) {
	e := setup(t)
	in := conversions(2)
	in[0].Value = forward.Value{Amount: "1500.0", Currency: "EUR"}
	in[1].User = forward.Identity{}
	e.dest.ID = "urn:lla:llaPartnerConversion:23456"
	res, err := e.client.SendConversions(context.Background(), e.dest, in)
	if err != nil || res.Sent() != 2 {
		t.Fatalf("err %v res %+v", err, res)
	}
	ev, ok := e.fake.Event("apply-0")
	want := linkedintest.Event{
		Conversion: "urn:lla:llaPartnerConversion:23456", ConversionHappenedAt: t0.Add(-time.Hour).UnixMilli(),
		Currency: "EUR", Amount: "1500.0", EventID: "apply-0", Version: "202609",
		UserIDs: []linkedintest.UserID{{IDType: "SHA256_EMAIL", IDValue: maryHash}, {IDType: "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", IDValue: in[0].LiFatID}},
	}
	if !ok || fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Errorf("event\n got %+v\nwant %+v", ev, want)
	}
	if ev, _ := e.fake.Event("apply-1"); len(ev.UserIDs) != 1 || ev.UserIDs[0].IDType != "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID" {
		t.Errorf("event 1 %+v", ev)
	}
	for _, r := range e.fake.Requests() {
		if !r.Batch || r.Status != 200 {
			t.Errorf("request %+v", r)
		}
	}
}

func TestSendConversionsSplits(t *testing.T) {
	e := setup(t)
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(12000))
	if err != nil {
		t.Fatal(err)
	}
	e.client.MaxEvents = 3
	if _, err := e.client.SendConversions(context.Background(), e.dest, conversions(7)); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, r := range e.fake.Requests() {
		sizes = append(sizes, r.Items)
	}
	if !slices.Equal(sizes, []int{5000, 5000, 2000, 3, 3, 1}) || res.Sent() != 12000 {
		t.Errorf("sizes %v sent %d", sizes, res.Sent())
	}
	if d := e.fake.Duplicates(); len(d) != 7 || d["apply-0"] != 1 {
		t.Errorf("duplicates %v (the second run resent apply-0..6)", len(d))
	}
}

func TestSendConversionsOldRefusedLocally(t *testing.T) {
	e := setup(t)
	in := conversions(3)
	in[1].Time = t0.Add(-91 * 24 * time.Hour)
	in[2].User, in[2].LiFatID = forward.Identity{}, ""
	res, err := e.client.SendConversions(context.Background(), e.dest, in)
	if err == nil || len(res.Rejected) != 2 || res.Sent() != 1 || !strings.Contains(res.Rejected[0].Err.Error(), "older than 90 days") {
		t.Fatalf("err %v res %+v", err, res)
	}
}

func TestPerElementFailures(t *testing.T) {
	e := setup(t)
	e.fake.FailEvent("apply-1", 400, "Conversion rule is not active")
	e.fake.FailEvent("apply-3", 503, "Try again")
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(4))
	if err == nil {
		t.Fatal("per-element failures must surface")
	}
	var got []string
	for _, f := range res.Failures() {
		var fe *forward.Error
		errors.As(f.Err, &fe)
		got = append(got, fmt.Sprintf("%d %s %v %d", f.Index, f.ID, fe.Kind, fe.Status))
	}
	if want := []string{"1 apply-1 permanent 400", "3 apply-3 retryable 503"}; !slices.Equal(got, want) {
		t.Errorf("failures %v, want %v", got, want)
	}
	if res.Sent() != 2 || e.fake.Hits() != 1 || len(e.fake.Events()) != 2 {
		t.Errorf("sent %d hits %d", res.Sent(), e.fake.Hits())
	}
}

func TestRetryAfterAndErrors(t *testing.T) {
	e := setup(t)
	e.fake.Inject(linkedintest.Throttled(7*time.Second), linkedintest.ServerError())
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(1))
	if err != nil || res.Batches[0].Attempts != 3 {
		t.Fatalf("err %v res %+v", err, res)
	}
	if s := e.clock.Sleeps(); !slices.Equal(s, []time.Duration{7 * time.Second, 500 * time.Millisecond}) {
		t.Errorf("sleeps %v", s)
	}
	for _, f := range []linkedintest.Fault{linkedintest.Unauthorized(), linkedintest.Sunset()} {
		hits := e.fake.Hits()
		e.fake.InjectN(2, f)
		_, err := e.client.SendConversions(context.Background(), e.dest, conversions(1))
		var fe *forward.Error
		if !errors.As(err, &fe) || fe.Kind != forward.Permanent || e.fake.Hits() != hits+1 {
			t.Errorf("fault %d: err %v hits %d", f.Status, err, e.fake.Hits()-hits)
		}
		if f.Status == 401 && fe.Code != "INVALID_ACCESS_TOKEN" {
			t.Errorf("code %q", fe.Code)
		}
		for e.fake.Pending() > 0 { // drain the unused copy
			e.client.SendConversions(context.Background(), e.dest, conversions(1))
		}
	}
}

func TestTimeoutRetried(t *testing.T) {
	e := setup(t)
	// The hang lasts until the attempt times out; the retry must then be
	// answered within the timeout too, also on a loaded machine.
	e.client.Timeout = 2 * time.Second
	e.fake.Inject(linkedintest.Hang(time.Minute))
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(1))
	if err != nil || res.Batches[0].Attempts != 2 || len(e.fake.Events()) != 1 {
		t.Fatalf("err %v res %+v", err, res)
	}
}

func members(n int) []forward.Member {
	out := make([]forward.Member, n)
	for i := range out {
		out[i] = forward.Member{ID: fmt.Sprintf("v%d", i), User: forward.Identity{Email: fmt.Sprintf("%064x", i+1)}}
	}
	return out
}

func TestSegmentNewSegmentRetried(t *testing.T) {
	e := setup(t)
	e.fake.AddSegment("777", 2)
	seg := forward.Destination{ID: "777", Token: token}
	res, err := e.client.AddMembers(context.Background(), seg, members(12000))
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, r := range e.fake.Requests() {
		sizes = append(sizes, r.Status, r.Items)
	}
	// Two 404s for the first batch (not decoded), then 5000, 5000, 2000.
	if !slices.Equal(sizes, []int{404, 0, 404, 0, 200, 5000, 200, 5000, 200, 2000}) || res.Batches[0].Attempts != 3 {
		t.Errorf("requests %v", sizes)
	}
	if n := len(e.fake.Segment("777")); n != 12000 {
		t.Errorf("segment has %d", n)
	}
	if _, err := e.client.RemoveMembers(context.Background(), seg, members(10)); err != nil {
		t.Fatal(err)
	}
	if n := len(e.fake.Segment("777")); n != 11990 {
		t.Errorf("after remove %d", n)
	}
}

func TestSegmentUnknownGivesUp(t *testing.T) {
	e := setup(t)
	res, err := e.client.AddMembers(context.Background(), forward.Destination{ID: "404", Token: token}, members(1))
	if forward.Classify(err) != forward.Retryable || res.Batches[0].Attempts != 4 {
		t.Errorf("err %v res %+v", err, res)
	}
}

func TestSegmentPerElementFailure(t *testing.T) {
	e := setup(t)
	e.fake.AddSegment("777", 0)
	ms := members(3)
	e.fake.FailUser(ms[2].User.Email, 400, "bad user")
	ms[0].User.Email = ""
	res, err := e.client.AddMembers(context.Background(), forward.Destination{ID: "777", Token: token}, ms)
	if err == nil || len(res.Rejected) != 1 || res.Sent() != 1 {
		t.Fatalf("err %v res %+v", err, res)
	}
	f := res.Failures()
	if len(f) != 2 || f[1].Index != 2 || f[1].ID != "v2" || forward.Classify(f[1].Err) != forward.Permanent {
		t.Errorf("failures %+v", f)
	}
}

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		status  int
		segment bool
		want    forward.Kind
	}{
		{401, false, forward.Permanent}, {422, false, forward.Permanent}, {426, false, forward.Permanent},
		{429, false, forward.Throttled}, {500, false, forward.Retryable}, {404, false, forward.Permanent},
		{404, true, forward.Retryable},
	} {
		if got := linkedin.KindOf(c.status, c.segment); got != c.want {
			t.Errorf("KindOf(%d, %v) = %v, want %v", c.status, c.segment, got, c.want)
		}
	}
}

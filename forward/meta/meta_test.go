package meta_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/meta"
	"github.com/jobpixel/jobpixel/forward/meta/metatest"
	"github.com/jobpixel/jobpixel/internal/fakeclock"
)

const (
	token = "EAAB-secret-token"
	pixel = "1234567890"
	// Test vectors from the platform reference.
	maryHash  = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79" // mary@example.com
	phoneHash = "1ef970831d7963307784fa8688e8fce101a15685d62aa765fed23f3a2c576a4e" // 15559876543
)

var t0 = time.Date(2026, 10, 14, 16, 45, 18, 0, time.UTC)

type env struct {
	fake   *metatest.Server
	clock  *fakeclock.Clock
	client *meta.Client
	dest   forward.Destination
}

func setup(t *testing.T) *env {
	t.Helper()
	clock := fakeclock.New(t0)
	fake := metatest.Start(metatest.Config{Token: token, Now: clock.Now})
	t.Cleanup(fake.Close)
	fake.RegisterEmail(" Mary@Example.com ")
	fake.RegisterPhone("+1 (555) 987-6543")
	return &env{
		fake:  fake,
		clock: clock,
		client: &meta.Client{
			BaseURL:    fake.URL(),
			HTTPClient: fake.Client(),
			Retry:      clock.Policy(4),
			Now:        clock.Now,
		},
		dest: forward.Destination{ID: pixel, Token: token},
	}
}

func conversion(i int) forward.Conversion {
	return forward.Conversion{
		ID:        fmt.Sprintf("apply-%d", i),
		Name:      "SubmitApplication",
		Time:      t0.Add(-time.Hour),
		SourceURL: "https://jobs.example.com/apply/42",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64)",
		User:      forward.Identity{Email: maryHash},
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
	full := conversion(1)
	full.IP = netip.MustParseAddr("::ffff:203.0.113.7")
	full.User.Phone = phoneHash
	full.FBC = "fb.1.1697241600000.IwAR2xYz-AbC_dEf"
	full.FBP = "fb.1.1697241600000.1098115397"
	full.Value = forward.Value{Amount: "1500.50", Currency: "EUR"}
	full.LDU = true
	plain := conversion(2) // no IP (not consented), no LDU
	e.dest.TestCode = "TEST123"

	res, err := e.client.SendConversions(context.Background(), e.dest, []forward.Conversion{full, plain})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent() != 2 || len(res.Batches) != 1 || res.Batches[0].Status != 200 {
		t.Fatalf("result %+v", res)
	}
	got, ok := e.fake.Event("apply-1")
	if !ok {
		t.Fatal("apply-1 not recorded")
	}
	want := metatest.Event{
		Pixel: pixel, Name: "SubmitApplication", Time: t0.Add(-time.Hour).Unix(), ID: "apply-1",
		ActionSource: "website", SourceURL: full.SourceURL,
		User: metatest.UserData{
			Em: []string{maryHash}, Ph: []string{phoneHash}, ClientIPAddress: "203.0.113.7",
			ClientUserAgent: full.UserAgent, Fbc: full.FBC, Fbp: full.FBP,
		},
		Value: "1500.50", Currency: "EUR", DataProcessingOptions: []string{"LDU"},
		TestEventCode: "TEST123",
	}
	zero := 0
	want.DPOCountry, want.DPOState = &zero, &zero
	if !equalEvent(got, want) {
		t.Errorf("event\n got %+v\nwant %+v", got, want)
	}
	p, _ := e.fake.Event("apply-2")
	if p.User.ClientIPAddress != "" || len(p.DataProcessingOptions) != 0 || p.DPOCountry != nil || p.DataProcessingOptions == nil {
		t.Errorf("plain event: ip=%q dpo=%v country=%v", p.User.ClientIPAddress, p.DataProcessingOptions, p.DPOCountry)
	}
}

func equalEvent(a, b metatest.Event) bool {
	return a.Pixel == b.Pixel && a.Name == b.Name && a.Time == b.Time && a.ID == b.ID &&
		a.ActionSource == b.ActionSource && a.SourceURL == b.SourceURL &&
		slices.Equal(a.User.Em, b.User.Em) && slices.Equal(a.User.Ph, b.User.Ph) &&
		a.User.ClientIPAddress == b.User.ClientIPAddress && a.User.ClientUserAgent == b.User.ClientUserAgent &&
		a.User.Fbc == b.User.Fbc && a.User.Fbp == b.User.Fbp && a.Value == b.Value && a.Currency == b.Currency &&
		slices.Equal(a.DataProcessingOptions, b.DataProcessingOptions) &&
		*a.DPOCountry == *b.DPOCountry && *a.DPOState == *b.DPOState && a.TestEventCode == b.TestEventCode
}

func TestSendConversionsSplitsAt1000(t *testing.T) {
	e := setup(t)
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(2500))
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, r := range e.fake.Requests() {
		sizes = append(sizes, r.Items)
	}
	if !slices.Equal(sizes, []int{1000, 1000, 500}) {
		t.Errorf("request sizes = %v", sizes)
	}
	if res.Sent() != 2500 || len(e.fake.Events()) != 2500 || len(e.fake.Duplicates()) != 0 {
		t.Errorf("sent %d, recorded %d, duplicates %v", res.Sent(), len(e.fake.Events()), e.fake.Duplicates())
	}
	// Dedup keys are our ids.
	for i, ev := range e.fake.Events() {
		if ev.ID != fmt.Sprintf("apply-%d", i) {
			t.Fatalf("event %d has event_id %q", i, ev.ID)
		}
	}
}

func TestSendConversionsRefusesOldEventsLocally(t *testing.T) {
	e := setup(t)
	in := conversions(3)
	in[1].Time = t0.Add(-8 * 24 * time.Hour)
	in[2].User.Email = "mary@example.com" // plaintext: must never leave
	res, err := e.client.SendConversions(context.Background(), e.dest, in)
	if err == nil {
		t.Fatal("want an error for the refused events")
	}
	if res.Sent() != 1 || len(res.Rejected) != 2 || len(res.Batches) != 1 || res.Batches[0].Err != nil {
		t.Fatalf("result %+v", res)
	}
	old := res.Rejected[0]
	if old.Index != 1 || old.ID != "apply-1" || forward.Classify(old.Err) != forward.Permanent || !strings.Contains(old.Err.Error(), "older than 7 days") {
		t.Errorf("rejected %+v", old)
	}
	if _, ok := e.fake.Event("apply-1"); ok {
		t.Error("the old event was sent")
	}
	if _, ok := e.fake.Event("apply-2"); ok {
		t.Error("the unhashed event was sent")
	}
}

func TestSendConversionsRetryAfter(t *testing.T) {
	e := setup(t)
	e.fake.InjectN(2, metatest.Throttled(3*time.Second))
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(2))
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches[0].Attempts != 3 || e.fake.Hits() != 3 {
		t.Errorf("attempts %d hits %d", res.Batches[0].Attempts, e.fake.Hits())
	}
	if s := e.clock.Sleeps(); !slices.Equal(s, []time.Duration{3 * time.Second, 3 * time.Second}) {
		t.Errorf("sleeps %v", s)
	}
	if len(e.fake.Events()) != 2 || len(e.fake.Duplicates()) != 0 {
		t.Errorf("events %d duplicates %v", len(e.fake.Events()), e.fake.Duplicates())
	}
}

func TestSendConversionsCodeBeatsStatus(t *testing.T) {
	e := setup(t)
	// Code 17 is a throttle even on HTTP 400; code 2 with is_transient is
	// retryable; a 502 without an envelope is retryable.
	e.fake.Inject(metatest.Fault{Status: 400, Body: metatest.Envelope("OAuthException", 17, 0, false, "(#17) User request limit reached", "", "")},
		metatest.Transient(), metatest.ServerError())
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(1))
	if err != nil || res.Batches[0].Attempts != 4 {
		t.Fatalf("err %v attempts %d", err, res.Batches[0].Attempts)
	}
}

func TestSendConversionsPermanentNotRetried(t *testing.T) {
	e := setup(t)
	e.fake.InjectN(3, metatest.Permanent(190, 0, "Invalid OAuth access token"))
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(2))
	if !errors.Is(err, forward.Permanent) {
		t.Fatalf("err = %v", err)
	}
	var fe *forward.Error
	if !errors.As(err, &fe) || fe.Code != "190" || fe.Status != 400 {
		t.Errorf("error %+v", fe)
	}
	if e.fake.Hits() != 1 || res.Batches[0].Attempts != 1 || len(res.Failures()) != 2 {
		t.Errorf("hits %d, result %+v", e.fake.Hits(), res)
	}
}

func TestSendConversionsGivesUp(t *testing.T) {
	e := setup(t)
	e.fake.InjectN(10, metatest.Transient())
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(1))
	if forward.Classify(err) != forward.Retryable || !strings.Contains(err.Error(), "giving up after 4 attempts") {
		t.Fatalf("err = %v", err)
	}
	if e.fake.Hits() != 4 || len(res.Failures()) != 1 || forward.Classify(res.Failures()[0].Err) != forward.Retryable {
		t.Errorf("hits %d failures %+v", e.fake.Hits(), res.Failures())
	}
}

func TestSendConversionsTimeoutRetried(t *testing.T) {
	e := setup(t)
	// The hang lasts until the attempt times out; the retry must then be
	// answered within the timeout too, also on a loaded machine.
	e.client.EventTimeout = 2 * time.Second
	e.fake.Inject(metatest.Hang(time.Minute))
	res, err := e.client.SendConversions(context.Background(), e.dest, conversions(1))
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches[0].Attempts != 2 || len(e.fake.Events()) != 1 {
		t.Errorf("attempts %d events %d", res.Batches[0].Attempts, len(e.fake.Events()))
	}
}

func TestTokenNotInErrors(t *testing.T) {
	e := setup(t)
	e.client.Retry = forward.RetryPolicy{MaxAttempts: 1}
	e.fake.Close()
	_, err := e.client.SendConversions(context.Background(), e.dest, conversions(1))
	if err == nil || strings.Contains(err.Error(), token) {
		t.Fatalf("err = %v", err)
	}
	if forward.Classify(err) != forward.Retryable {
		t.Errorf("connection refused classified %v", forward.Classify(err))
	}
}

func TestInvalidDestination(t *testing.T) {
	e := setup(t)
	for _, d := range []forward.Destination{{ID: "act_1", Token: token}, {ID: pixel}} {
		res, err := e.client.SendConversions(context.Background(), d, conversions(2))
		if forward.Classify(err) != forward.Permanent || len(res.Rejected) != 2 {
			t.Errorf("%+v: err=%v res=%+v", d, err, res)
		}
	}
	if e.fake.Hits() != 0 {
		t.Error("an invalid destination reached the server")
	}
}

func members(n int) []forward.Member {
	out := make([]forward.Member, n)
	for i := range out {
		h := fmt.Sprintf("%064x", i+1)
		out[i] = forward.Member{ID: fmt.Sprintf("v%d", i), User: forward.Identity{Email: h}}
	}
	return out
}

func TestAddMembersSession(t *testing.T) {
	e := setup(t)
	e.client.SessionID = func() int64 { return 9778993 }
	audience := forward.Destination{ID: "23850000000000001", Token: token}
	ms := members(25000)
	ms[3].User.Phone = phoneHash
	ms[4].ExternalID = "crm-4"
	res, err := e.client.AddMembers(context.Background(), audience, ms)
	if err != nil {
		t.Fatal(err)
	}
	ups := e.fake.Uploads()
	if len(ups) != 3 {
		t.Fatalf("%d uploads", len(ups))
	}
	for i, u := range ups {
		wantRows := []int{10000, 10000, 5000}[i]
		if u.Method != "POST" || u.SessionID != 9778993 || u.BatchSeq != i+1 || u.Last != (i == 2) ||
			u.Rows != wantRows || u.EstimatedTotal == nil || *u.EstimatedTotal != 25000 ||
			!slices.Equal(u.Schema, []string{"EMAIL", "PHONE", "EXTERN_ID"}) {
			t.Errorf("upload %d: %+v", i, u)
		}
	}
	if res.Sent() != 25000 || len(e.fake.Audience(audience.ID)) != 25000 {
		t.Errorf("sent %d, audience size %d", res.Sent(), len(e.fake.Audience(audience.ID)))
	}
	if row, _ := e.fake.Member(audience.ID, ms[4].User.Email); row["EXTERN_ID"] != "crm-4" || row["PHONE"] != "" {
		t.Errorf("row 4 = %v", row)
	}

	e.client.SessionID = func() int64 { return 9778994 }
	if _, err := e.client.RemoveMembers(context.Background(), audience, ms[:2]); err != nil {
		t.Fatal(err)
	}
	if n := len(e.fake.Audience(audience.ID)); n != 24998 {
		t.Errorf("after remove: %d members", n)
	}
	if last := e.fake.Uploads()[3]; last.Method != "DELETE" || last.BatchSeq != 1 || !last.Last {
		t.Errorf("remove upload %+v", last)
	}
}

func TestAddMembersRetryReusesSession(t *testing.T) {
	e := setup(t)
	audience := forward.Destination{ID: "23850000000000001", Token: token}
	// 2650/1870145 (update in progress) is retryable.
	e.fake.Inject(metatest.Permanent(2650, meta.SubcodeUpdateInProgress, "Update in progress"))
	res, err := e.client.AddMembers(context.Background(), audience, members(12000))
	if err != nil {
		t.Fatal(err)
	}
	ups := e.fake.Uploads()
	if res.Batches[0].Attempts != 2 || len(ups) != 2 || ups[0].SessionID != ups[1].SessionID || ups[0].SessionID <= 0 {
		t.Errorf("attempts %d uploads %+v", res.Batches[0].Attempts, ups)
	}
}

func TestAddMembersFailedBatchEndsSession(t *testing.T) {
	e := setup(t)
	audience := forward.Destination{ID: "23850000000000001", Token: token}
	e.fake.Inject(metatest.Permanent(2650, meta.SubcodeSessionTimedOut, "Session timed out"))
	res, err := e.client.AddMembers(context.Background(), audience, members(15000))
	if forward.Classify(err) != forward.Permanent {
		t.Fatalf("err = %v", err)
	}
	if e.fake.Hits() != 1 || res.Batches[1].Attempts != 0 || len(res.Failures()) != 15000 {
		t.Errorf("hits %d batches %+v", e.fake.Hits(), res.Batches)
	}
}

func TestAddMembersRefusesUnhashed(t *testing.T) {
	e := setup(t)
	audience := forward.Destination{ID: "23850000000000001", Token: token}
	ms := members(3)
	ms[0].User.Email = "mary@example.com"
	ms[2] = forward.Member{ID: "empty"}
	res, err := e.client.AddMembers(context.Background(), audience, ms)
	if err == nil || len(res.Rejected) != 2 || res.Sent() != 1 {
		t.Fatalf("err %v res %+v", err, res)
	}
	if got := e.fake.Audience(audience.ID); len(got) != 1 || got[0] != ms[1].User.Email {
		t.Errorf("audience %v", got)
	}
}

func TestKindOf(t *testing.T) {
	f := func(status, code, sub int, transient bool, want forward.Kind) {
		t.Helper()
		if got := meta.KindOf(status, code, sub, transient); got != want {
			t.Errorf("KindOf(%d,%d,%d,%v) = %v, want %v", status, code, sub, transient, got, want)
		}
	}
	for _, c := range []int{100, 190, 3, 294, 1487301, 1487366, 2650, 105, 2655} {
		f(500, c, 0, true, forward.Permanent)
	}
	for _, c := range []int{1, 2, 341, 368, 5000, 21009} {
		f(400, c, 0, false, forward.Retryable)
	}
	for _, c := range []int{4, 17, 80003, 613} {
		f(400, c, 0, false, forward.Throttled)
	}
	f(400, 2650, 1870145, false, forward.Retryable)
	f(400, 2650, 1870158, false, forward.Permanent)
	f(400, 2650, 1870147, false, forward.Permanent)
	f(400, 99999, 0, true, forward.Retryable)
	f(503, 99999, 0, false, forward.Retryable)
	f(400, 99999, 0, false, forward.Permanent)
}

func TestRetryAfterHTTPDate(t *testing.T) {
	e := setup(t)
	date := t0.Add(45 * time.Second).Format(http.TimeFormat)
	e.fake.Inject(metatest.Fault{Status: 429, Header: http.Header{"Retry-After": {date}},
		Body: metatest.Envelope("OAuthException", 80003, 0, false, "There have been too many calls", "", "")})
	if _, err := e.client.SendConversions(context.Background(), e.dest, conversions(1)); err != nil {
		t.Fatal(err)
	}
	if s := e.clock.Sleeps(); !slices.Equal(s, []time.Duration{45 * time.Second}) {
		t.Errorf("sleeps %v", s)
	}
}

func TestRetryAfterBeyondBudgetGivesUpThrottled(t *testing.T) {
	e := setup(t)
	e.client.Retry.MaxElapsed = time.Minute
	e.fake.InjectN(2, metatest.Throttled(10*time.Minute))
	res, err := e.client.SendConversions(context.Background(), e.dest, append(conversions(1000), conversion(1000)))
	if !errors.Is(err, forward.Throttled) || e.fake.Hits() != 1 {
		t.Fatalf("err %v hits %d", err, e.fake.Hits())
	}
	// The second batch is not attempted once the first gave up throttled.
	if len(res.Batches) != 2 || res.Batches[1].Attempts != 0 || forward.RetryAfterOf(res.Batches[1].Err) != 10*time.Minute {
		t.Errorf("batches %+v", res.Batches)
	}
	if len(res.Failures()) != 1001 {
		t.Errorf("failures %d", len(res.Failures()))
	}
}

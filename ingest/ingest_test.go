package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

type fakeCampaigns []store.Campaign

func (f fakeCampaigns) Campaigns(context.Context) ([]store.Campaign, error) { return f, nil }

type fixedSalt [32]byte

func (s *fixedSalt) Current(time.Time) *[32]byte { return (*[32]byte)(s) }

type nopWriter struct{}

func (nopWriter) WriteMessages(context.Context, ...kafka.Message) error { return nil }

func newTestServer(t testing.TB) *Server {
	t.Helper()
	reg := NewRegistry(fakeCampaigns{{ID: "cmp_1", ClientID: "cl_1", Consentless: store.ConsentlessCount}}, slog.Default())
	if err := reg.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{}, Deps{Writer: nopWriter{}, Campaigns: reg, Salts: &fixedSalt{1, 2, 3}, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	s.ready.Store(true) // producers not started: the test drains the queue itself
	return s
}

func pixelCtx(uri string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.SetRequestURI(uri)
	req.Header.SetUserAgent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
	req.Header.Set("Referer", "https://www.google.com/")
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 77), Port: 5555}, nil)
	return &ctx
}

const pixelURI = "/p.gif?c=cmp_1&e=page_view&v=job-42&eid=abc123&u=https%3A%2F%2Fjobs.example.com%2Fgo%3Futm_source%3Dnews%26utm_medium%3Dmail%26email%3Djane%2540example.com&gdpr=1&gcs=G111"

func TestPixelQueuesHit(t *testing.T) {
	s := newTestServer(t)
	ctx := pixelCtx(pixelURI)
	s.pixel(ctx)
	if got := ctx.Response.Header.Peek(RejectHeader); len(got) != 0 {
		t.Fatalf("rejected: %s", got)
	}
	if string(ctx.Response.Body()) != string(gif) || len(gif) != 43 {
		t.Fatalf("body is not the 43-byte GIF")
	}
	if cc := string(ctx.Response.Header.Peek("Cache-Control")); cc != "no-store" {
		t.Fatalf("Cache-Control = %q", cc)
	}
	rec := <-s.dl.q.ch
	var h schemas.Hit
	if err := h.Decode(rec.buf); err != nil {
		t.Fatal(err)
	}
	if string(h.Campaign) != "cmp_1" || string(h.Client) != "cl_1" || h.Event != schemas.EventPageView ||
		string(h.Vacancy) != "job-42" || string(h.ClientEventID) != "abc123" || string(h.UTMSource) != "news" {
		t.Fatalf("hit = %+v", h)
	}
	if h.Visitor == ([16]byte{}) || rec.key != h.Visitor {
		t.Fatalf("visitor hash missing or not the partition key")
	}
	if h.ID == ([16]byte{}) || h.ReceivedMs == 0 {
		t.Fatalf("server id/time missing")
	}
}

// TestPixelAllocs proves the /p.gif hot path — parsing, consent, hashing,
// scrubbing, encoding and queueing — allocates nothing per request.
func TestPixelAllocs(t *testing.T) {
	s := newTestServer(t)
	ctx := pixelCtx(pixelURI)
	run := func() {
		s.pixel(ctx)
		if len(ctx.Response.Header.Peek(RejectHeader)) != 0 {
			t.Fatalf("rejected: %s", ctx.Response.Header.Peek(RejectHeader))
		}
		putRecord(<-s.dl.q.ch)
	}
	run() // warm pools
	if n := testing.AllocsPerRun(2000, run); n != 0 {
		t.Fatalf("pixel hot path allocates %.1f times per request, want 0", n)
	}
}

func BenchmarkPixel(b *testing.B) {
	s := newTestServer(b)
	ctx := pixelCtx(pixelURI)
	b.ReportAllocs()
	for b.Loop() {
		s.pixel(ctx)
		putRecord(<-s.dl.q.ch)
	}
}

func decodeQueued(t *testing.T, s *Server) schemas.Hit {
	t.Helper()
	select {
	case rec := <-s.dl.q.ch:
		var h schemas.Hit
		if err := h.Decode(append([]byte(nil), rec.buf...)); err != nil {
			t.Fatal(err)
		}
		return h
	default:
		t.Fatal("nothing queued")
	}
	return schemas.Hit{}
}

func TestConsentAtTheEdge(t *testing.T) {
	s := newTestServer(t)
	const base = "/p.gif?c=cmp_1&e=application&em=Jane.Doe%40Example.com&fbp=fb.1.1700000000000.42&gclid=abc&u=https%3A%2F%2Fj.example%2F%3Ffbclid%3DIwAR1x"
	// No consent: counted, truncated, no identifiers.
	ctx := pixelCtx(base)
	s.pixel(ctx)
	h := decodeQueued(t, s)
	ip := netip.AddrFrom16(h.IP).Unmap()
	if h.Flags&schemas.FlagFullIP != 0 || ip != netip.MustParseAddr("203.0.113.0") {
		t.Errorf("no consent: ip %s flags %b, want truncated 203.0.113.0", ip, h.Flags)
	}
	if len(h.EmailMeta)+len(h.EmailGoogle)+len(h.Fbp)+len(h.Fbc)+len(h.Gclid)+len(h.UserAgent) != 0 {
		t.Errorf("no consent: identifiers travel: %+v", h)
	}
	if consent.Decision(h.Consent).AllowsAds(consent.Google) || !consent.Decision(h.Consent).Has(consent.Measurement) {
		t.Errorf("no consent: decision %v", consent.Decision(h.Consent))
	}
	// Ad consent: full IP, hashed e-mails per platform, click ids, fbc built from fbclid.
	ctx = pixelCtx(base + "&ad_user_data=granted&ad_personalization=granted&ad_storage=granted")
	s.pixel(ctx)
	h = decodeQueued(t, s)
	if h.Flags&schemas.FlagFullIP == 0 || netip.AddrFrom16(h.IP).Unmap() != netip.MustParseAddr("203.0.113.77") {
		t.Errorf("ad consent: ip not carried in full")
	}
	if string(h.EmailMeta) != sha256hex("jane.doe@example.com") || string(h.EmailGoogle) != sha256hex("jane.doe@example.com") {
		t.Errorf("ad consent: e-mail hashes %s %s", h.EmailMeta, h.EmailGoogle)
	}
	if string(h.Fbp) != "fb.1.1700000000000.42" || string(h.Gclid) != "abc" || !strings.HasPrefix(string(h.Fbc), "fb.1.") || !strings.HasSuffix(string(h.Fbc), ".IwAR1x") {
		t.Errorf("ad consent: click ids %q %q %q", h.Fbp, h.Gclid, h.Fbc)
	}
	// GPC overrides the grant.
	ctx = pixelCtx(base + "&ad_user_data=granted&ad_personalization=granted")
	ctx.Request.Header.Set("Sec-GPC", "1")
	s.pixel(ctx)
	h = decodeQueued(t, s)
	if h.Flags&schemas.FlagFullIP != 0 || len(h.EmailMeta) != 0 || !consent.Decision(h.Consent).Has(consent.GPC) {
		t.Errorf("GPC: identifiers travel or GPC not recorded: %v", consent.Decision(h.Consent))
	}
	// So does the page's own GPC signal, sent as gpc=1.
	ctx = pixelCtx(base + "&ad_user_data=granted&ad_personalization=granted&gpc=1")
	s.pixel(ctx)
	if h = decodeQueued(t, s); len(h.EmailMeta) != 0 || !consent.Decision(h.Consent).Has(consent.GPC) {
		t.Errorf("gpc=1: identifiers travel or GPC not recorded: %v", consent.Decision(h.Consent))
	}
	// The explicit object, flattened on the pixel, can refuse counting.
	ctx = pixelCtx("/p.gif?c=cmp_1&e=page_view&consent_measurement=denied")
	s.pixel(ctx)
	if got := string(ctx.Response.Header.Peek(RejectHeader)); got != reasonNoConsent {
		t.Errorf("consent_measurement=denied: reason %q", got)
	}
	// The explicit object can refuse counting altogether.
	ctx = pixelCtx("/p.gif?c=cmp_1&e=page_view")
	var raw rawHit
	raw.v[fCampaign], raw.v[fEvent], raw.v[fExMeasurement] = []byte("cmp_1"), []byte("page_view"), []byte("denied")
	var meta reqMeta
	s.fillMeta(ctx, &meta)
	if r := s.accept(&raw, &meta); r != reasonNoConsent {
		t.Errorf("measurement denied: reason %q, want %q", r, reasonNoConsent)
	}
}

func TestConsentlessDrop(t *testing.T) {
	reg := NewRegistry(fakeCampaigns{{ID: "cmp_d", ClientID: "cl_1", Consentless: store.ConsentlessDrop}}, slog.Default())
	_ = reg.Refresh(context.Background())
	s, err := New(Config{}, Deps{Writer: nopWriter{}, Campaigns: reg, Salts: &fixedSalt{}, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	s.ready.Store(true)
	ctx := pixelCtx("/p.gif?c=cmp_d&e=page_view")
	s.pixel(ctx)
	if got := string(ctx.Response.Header.Peek(RejectHeader)); got != reasonNoConsent {
		t.Fatalf("consent-less hit on a drop campaign: reason %q", got)
	}
	ctx = pixelCtx("/p.gif?c=cmp_d&e=page_view&gcs=G100")
	s.pixel(ctx)
	if got := string(ctx.Response.Header.Peek(RejectHeader)); got != "" {
		t.Fatalf("hit with a (denying) signal on a drop campaign rejected: %q", got)
	}
	if h := decodeQueued(t, s); h.Event != schemas.EventPageView {
		t.Fatal("hit not queued")
	}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestDeploymentAnonymisation(t *testing.T) {
	reg := NewRegistry(fakeCampaigns{{ID: "cmp_1", ClientID: "cl_1"}}, slog.Default())
	_ = reg.Refresh(context.Background())
	tr, err := anonymize.NewTruncator(16, 48)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Truncation: tr, DenyParams: []string{"ref_code"}}, Deps{Writer: nopWriter{}, Campaigns: reg, Salts: &fixedSalt{}, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	s.ready.Store(true)
	ctx := pixelCtx("/p.gif?c=cmp_1&e=page_view&u=https%3A%2F%2Fj.example%2Fjob%3Fref_code%3Dabc%26utm_source%3Dx")
	s.pixel(ctx)
	h := decodeQueued(t, s)
	if ip := netip.AddrFrom16(h.IP).Unmap(); ip != netip.MustParseAddr("203.0.0.0") {
		t.Errorf("ip = %s, want 203.0.0.0 (/16)", ip)
	}
	if string(h.URL) != "https://j.example/job?utm_source=x" {
		t.Errorf("url = %q, want the configured parameter removed", h.URL)
	}
}

func BenchmarkEvents(b *testing.B) {
	s := newTestServer(b)
	body := []byte(`{"c":"cmp_1","gcs":"G111","events":[` + strings.Repeat(`{"e":"page_view","u":"https://jobs.example.com/go?utm_source=x","eid":"abc"},`, 9) +
		`{"e":"apply_click","eid":"def"}]}`)
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/e")
	req.Header.SetUserAgent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
	req.SetBody(body)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 77), Port: 5555}, nil)
	b.ReportAllocs()
	for b.Loop() {
		s.events(&ctx)
		if ctx.Response.StatusCode() != 202 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		for range 10 {
			putRecord(<-s.dl.q.ch)
		}
	}
}

// TestUTMDecoded: utm_* values are stored percent-decoded, so reports and
// the channel show "spring jobs", not "spring%20jobs".
func TestUTMDecoded(t *testing.T) {
	s := newTestServer(t)
	page := "https://jobs.example.com/job?utm_source=Linked%20In&utm_medium=paid+social&utm_campaign=spring%2Fjobs&utm_term=go&utm_content=%zz"
	ctx := pixelCtx("/p.gif?c=cmp_1&e=page_view&u=" + url.QueryEscape(page))
	s.pixel(ctx)
	h := decodeQueued(t, s)
	got := []string{string(h.UTMSource), string(h.UTMMedium), string(h.UTMCampaign), string(h.UTMTerm), string(h.UTMContent)}
	want := []string{"Linked In", "paid social", "spring/jobs", "go", "%zz"}
	if !slices.Equal(got, want) {
		t.Fatalf("utm values %q, want %q", got, want)
	}
}

// TestTCFInvalidByReason: a malformed TC string is counted by why it was
// rejected, without allocating on the hot path.
func TestTCFInvalidByReason(t *testing.T) {
	s := newTestServer(t)
	ctx := pixelCtx("/p.gif?c=cmp_1&e=page_view&gdpr=1&gdpr_consent=C%21%21%21")
	run := func() {
		s.pixel(ctx)
		putRecord(<-s.dl.q.ch)
	}
	run()
	if got := testutil.ToFloat64(s.m.tcfInvalid.WithLabelValues("invalid base64url")); got != 1 {
		t.Fatalf("tcf_invalid_total{reason=invalid base64url} = %v, want 1", got)
	}
	if n := testing.AllocsPerRun(500, run); n != 0 {
		t.Fatalf("a hit with a malformed TC string allocates %v times", n)
	}
}

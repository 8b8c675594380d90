package ingest

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

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
	rec := <-s.q.ch
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
		putRecord(<-s.q.ch)
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
		putRecord(<-s.q.ch)
	}
}

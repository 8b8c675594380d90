package ingest

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/jobpixel/jobpixel/ingest/tracker"
	"github.com/jobpixel/jobpixel/schemas"
)

// gif is the 43-byte transparent 1×1 GIF answered by /p.gif.
var gif = []byte{
	0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff,
	0x00, 0x00, 0x00, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
}

// RejectHeader carries the reason a hit was not counted.
const RejectHeader = "X-Jobpixel-Reject"

// Handler returns the request router of the public listener: only what a
// page needs (/p.gif, /e, /t.js), the signed server-to-server endpoint
// (/s2s), and the demo page with Config.Demo.
// Metrics, health and readiness are the ops listener's (package app; see
// Readiness).
func (s *Server) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/p.gif":
			s.pixel(ctx)
		case "/e":
			s.events(ctx)
		case "/s2s":
			s.s2s(ctx)
		case "/t.js":
			tracker.Script(ctx)
		case "/demo/vacancy":
			if !s.cfg.Demo {
				ctx.Error("not found\n", fasthttp.StatusNotFound)
				return
			}
			tracker.Demo(ctx, string(ctx.QueryArgs().Peek("c")))
		case "/demo/cmp.js":
			if !s.cfg.Demo {
				ctx.Error("not found\n", fasthttp.StatusNotFound)
				return
			}
			tracker.CMP(ctx)
		default:
			ctx.Error("not found\n", fasthttp.StatusNotFound)
		}
	}
}

// pixel answers GET /p.gif: always the GIF, at once. A hit that is not
// counted says why in RejectHeader.
func (s *Server) pixel(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.SetContentType("image/gif")
	h.Set("Cache-Control", "no-store")
	ctx.SetBody(gif)
	var raw rawHit
	parseQuery(ctx.QueryArgs(), &raw)
	if len(raw.v[fURL]) == 0 {
		// A <noscript> pixel cannot say where it is: the Referer header
		// names the page that embeds it (not the visitor's referrer).
		raw.v[fURL] = ctx.Request.Header.Referer()
	}
	var meta reqMeta
	s.fillMeta(ctx, &meta)
	if reason := s.accept(&raw, &meta); reason != "" {
		h.Set(RejectHeader, reason)
		return
	}
	s.m.acceptedPixel.Inc()
}

func (s *Server) fillMeta(ctx *fasthttp.RequestCtx, m *reqMeta) {
	rh := &ctx.Request.Header
	m.ip = clientIP(ctx.RemoteIP(), rh.Peek("X-Forwarded-For"), s.cfg.TrustedProxies)
	m.ua = rh.UserAgent()
	m.chUA = rh.Peek("Sec-CH-UA")
	m.origin = rh.Peek("Origin")
	m.referer = rh.Referer()
	m.gpc = bytes.Equal(rh.Peek("Sec-GPC"), []byte("1"))
	m.dnt = bytes.Equal(rh.Peek("DNT"), []byte("1"))
	m.now = time.Now()
}

// accept validates, enriches and enqueues one hit. It returns a reject
// reason, or "" when the hit was queued. It does not allocate in steady
// state.
func (s *Server) accept(raw *rawHit, meta *reqMeta) string {
	if reason := raw.validate(); reason != "" {
		s.m.rejectedBy[reason].Inc()
		return reason
	}
	if !s.ready.Load() {
		s.m.rejectedBy[reasonNotReady].Inc()
		return reasonNotReady
	}
	camp, ok := s.deps.Campaigns.lookup(raw.v[fCampaign])
	if !ok {
		s.m.rejectedBy[reasonUnknownCampaign].Inc()
		return reasonUnknownCampaign
	}
	if reason := guard(raw, meta, &camp); reason != "" {
		s.m.rejectedBy[reason].Inc()
		return reason
	}
	b := builderPool.Get().(*builder)
	defer builderPool.Put(b)
	if reason := s.build(b, raw, meta, &camp); reason != "" {
		s.m.rejectedBy[reason].Inc()
		return reason
	}
	rec := getRecord()
	rec.key = partitionKey(&b.hit)
	rec.buf = b.hit.Append(rec.buf[:0])
	if !s.dl.offer(rec) {
		putRecord(rec)
		reason := s.dl.shedReason()
		s.m.rejectedBy[reason].Inc()
		return reason
	}
	return ""
}

// partitionKey is a hit's Kafka key: its visitor hash, so that a visitor's
// hits keep their order and a page's repeated event (same eid) meets its
// first copy in the pipeline's per-partition dedup window. A hit without a
// visitor hash (a signed server-to-server hit, or no salt yet) is keyed by
// its campaign and client event id for the same reason, and without one
// spread by its event id. It does not allocate.
func partitionKey(h *schemas.Hit) [16]byte {
	if h.Visitor != ([16]byte{}) {
		return h.Visitor
	}
	if len(h.ClientEventID) == 0 {
		return h.ID
	}
	return schemas.ClientEventKey(h.Campaign, h.ClientEventID)
}

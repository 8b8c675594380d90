package ingest

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

var parsers fastjson.ParserPool

// rawPool recycles the raw hits of a batch (they alias the parser's buffer
// and are cleared before reuse).
var rawPool = sync.Pool{New: func() any { s := make([]rawHit, 0, 16); return &s }}

// fieldError names the JSON field that made a batch invalid.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// events answers POST /e: a JSON batch
//
//	{"c": "campaign", "gdpr": "1", "tcf": "...", "gcs": "G111",
//	 "consent_mode": {"ad_storage": "granted", ...},
//	 "consent": {"measurement": "granted", "ad_user_data": "denied", ...},
//	 "gclid": "...", "fbc": "...", "fbp": "...", "li_fat_id": "...",
//	 "events": [{"e": "page_view", "u": "...", "r": "...", "v": "...", "eid": "...", "em": "..."}]}
//
// Top-level fields apply to every event; an event may override c, u, r and
// v. The batch is all or nothing: 202 when every event was queued, 400 with
// {"error", "field"} naming the first bad field, 413 over the body limit,
// 503 when the hits could not be queued. sendBeacon posts it as text/plain,
// which is accepted (any content type is read as JSON), and CORS allows any origin (no credentials).
func (s *Server) events(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cache-Control", "no-store")
	if ctx.IsOptions() {
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if !ctx.IsPost() {
		h.Set("Allow", "POST, OPTIONS")
		jsonError(ctx, fasthttp.StatusMethodNotAllowed, "", "use POST")
		return
	}
	var meta reqMeta
	s.fillMeta(ctx, &meta)
	s.batch(ctx, &meta, nil, s.m.acceptedBatch)
}

// batch parses, checks and queues the JSON batch in the body of ctx and
// answers for /e and /s2s. signedFor is the campaign a signed request was
// verified for (nil for /e): every event must then be for it and carry an
// eid.
func (s *Server) batch(ctx *fasthttp.RequestCtx, meta *reqMeta, signedFor []byte, accepted prometheus.Counter) {
	h := &ctx.Response.Header
	body := ctx.PostBody()
	if len(body) > s.cfg.MaxBodyBytes {
		jsonError(ctx, fasthttp.StatusRequestEntityTooLarge, "", fmt.Sprintf("body larger than %d bytes", s.cfg.MaxBodyBytes))
		return
	}
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		jsonError(ctx, fasthttp.StatusBadRequest, "", "malformed JSON: "+err.Error())
		return
	}
	bp := rawPool.Get().(*[]rawHit)
	defer func() { clear(*bp); rawPool.Put(bp) }()
	raws, err := s.parseBatch(v, bp)
	if err != nil {
		fe := err.(*fieldError)
		jsonError(ctx, fasthttp.StatusBadRequest, fe.field, err.Error())
		return
	}
	if status, fe := s.checkBatch(raws, meta, signedFor); fe != nil {
		jsonError(ctx, status, fe.field, fe.Error())
		return
	}
	if s.dl.room() < len(raws) || !s.ready.Load() {
		reason := s.dl.shedReason()
		if !s.ready.Load() {
			reason = reasonNotReady
		}
		s.m.rejectedBy[reason].Add(float64(len(raws)))
		h.Set(RejectHeader, reason)
		h.Set("Retry-After", "5")
		jsonError(ctx, fasthttp.StatusServiceUnavailable, "", "overloaded, retry later")
		return
	}
	n, dropped := 0, 0
	for i := range raws {
		switch s.accept(&raws[i], meta) {
		case "":
			n++
		case reasonNoConsent:
			dropped++ // the campaign drops consent-less hits: not an error
		default:
			// Lost the race for queue space against other requests.
			accepted.Add(float64(n))
			h.Set(RejectHeader, s.dl.shedReason())
			h.Set("Retry-After", "5")
			jsonError(ctx, fasthttp.StatusServiceUnavailable, "", fmt.Sprintf("overloaded after %d of %d events: retry the batch later (events with an eid are counted once)", n, len(raws)))
			return
		}
	}
	accepted.Add(float64(n))
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"accepted":` + strconv.Itoa(n) + `,"dropped":` + strconv.Itoa(dropped) + "}\n")
}

func jsonError(ctx *fasthttp.RequestCtx, status int, field, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b := []byte(`{"error":`)
	b = strconv.AppendQuote(b, msg)
	if field != "" {
		b = append(b, `,"field":`...)
		b = strconv.AppendQuote(b, field)
	}
	b = append(b, "}\n"...)
	ctx.SetBody(b)
}

// checkBatch validates each event of a batch, resolves its campaign and
// applies the campaign's guards, counting and naming the first that fails
// with the status to answer (nil when all pass). For a signed batch
// (signedFor not nil) every event must be for that campaign and carry an
// eid.
func (s *Server) checkBatch(raws []rawHit, meta *reqMeta, signedFor []byte) (int, *fieldError) {
	for i := range raws {
		r := &raws[i]
		if signedFor != nil && len(r.v[fCampaign]) == 0 {
			r.v[fCampaign] = signedFor
		}
		if reason := r.validate(); reason != "" {
			field := fmt.Sprintf("events[%d]", i)
			switch reason {
			case reasonMissingCampaign, reasonBadCampaign:
				field += ".c"
			case reasonBadEvent:
				field += ".e"
			}
			s.m.rejectedBy[reason].Inc()
			return fasthttp.StatusBadRequest, &fieldError{field, reason}
		}
		if signedFor != nil && !bytes.Equal(r.v[fCampaign], signedFor) {
			return fasthttp.StatusBadRequest, &fieldError{fmt.Sprintf("events[%d].c", i), "not the campaign the request is signed for (" + CampaignHeader + ")"}
		}
		if signedFor != nil && len(r.v[fEID]) == 0 {
			return fasthttp.StatusBadRequest, &fieldError{fmt.Sprintf("events[%d].eid", i), "required in a signed request (a replay within the window then counts once)"}
		}
		camp, ok := s.deps.Campaigns.lookup(r.v[fCampaign])
		if !ok {
			s.m.rejectedBy[reasonUnknownCampaign].Inc()
			return fasthttp.StatusBadRequest, &fieldError{fmt.Sprintf("events[%d].c", i), "unknown campaign"}
		}
		if reason := guard(r, meta, &camp); reason != "" {
			s.m.rejectedBy[reason].Inc()
			return fasthttp.StatusForbidden, &fieldError{fmt.Sprintf("events[%d]", i), guardMessage[reason]}
		}
	}
	return 0, nil
}

var guardMessage = map[string]string{
	reasonForbiddenHost: reasonForbiddenHost + ": the page, Origin or Referer host is not among the campaign's allowed_hosts",
	reasonUnsigned:      reasonUnsigned + ": the campaign takes applications only from its signed server-to-server endpoint",
}

// s2s answers POST /s2s: a batch in /e's format from the client's own
// server (an applicant tracking system), signed with the campaign's secret
// (see Sign and verify). 401 for a bad or stale signature, 403 when the
// campaign has no secret; otherwise as /e. The request's address and user
// agent are the sender's, not a visitor's: the hits carry neither.
func (s *Server) s2s(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Cache-Control", "no-store")
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		jsonError(ctx, fasthttp.StatusMethodNotAllowed, "", "use POST")
		return
	}
	rh := &ctx.Request.Header
	campaign := rh.Peek(CampaignHeader)
	camp, ok := s.deps.Campaigns.lookup(campaign)
	if !ok {
		s.m.rejectedBy[reasonUnknownCampaign].Inc()
		jsonError(ctx, fasthttp.StatusBadRequest, "", CampaignHeader+": unknown campaign")
		return
	}
	if camp.secret == nil {
		jsonError(ctx, fasthttp.StatusForbidden, "", "the campaign has no secret: create one with POST /api/v1/campaigns/{id}/secret")
		return
	}
	if why := verify(camp.secret, rh.Peek(TimestampHeader), rh.Peek(SignatureHeader), ctx.PostBody(), time.Now()); why != "" {
		s.m.rejectedBy[reasonBadSignature].Inc()
		jsonError(ctx, fasthttp.StatusUnauthorized, "", why)
		return
	}
	meta := reqMeta{signed: true, now: time.Now()}
	s.batch(ctx, &meta, campaign, s.m.acceptedS2S)
}

// str returns the string (or, for numbers and booleans, the literal) at key
// of o, nil when absent or null.
func str(o *fastjson.Value, key, path string) ([]byte, error) {
	v := o.Get(key)
	if v == nil {
		return nil, nil
	}
	switch v.Type() {
	case fastjson.TypeString:
		return v.GetStringBytes(), nil
	case fastjson.TypeNull:
		return nil, nil
	case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		return v.MarshalTo(nil), nil
	}
	return nil, &fieldError{path + key, "must be a string"}
}

func obj(o *fastjson.Value, key, path string) (*fastjson.Value, error) {
	v := o.Get(key)
	if v == nil || v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	if v.Type() != fastjson.TypeObject {
		return nil, &fieldError{path + key, "must be an object"}
	}
	return v, nil
}

// parseBatch turns a /e body into raw hits. It checks shapes and types;
// validate checks values.
func (s *Server) parseBatch(v *fastjson.Value, dst *[]rawHit) ([]rawHit, error) {
	if v.Type() != fastjson.TypeObject {
		return nil, &fieldError{"", "body must be a JSON object with an events array"}
	}
	var shared rawHit
	if err := parseObject(v, "", &shared, inBody, inBodyOrEvent); err != nil {
		return nil, err
	}
	for _, sub := range [...]struct {
		key string
		in  scope
	}{{"consent_mode", inConsentMode}, {"consent", inConsent}} {
		o, err := obj(v, sub.key, "")
		if err != nil {
			return nil, err
		}
		if o != nil {
			if err := parseObject(o, sub.key+".", &shared, sub.in); err != nil {
				return nil, err
			}
		}
	}
	evs := v.Get("events")
	if evs == nil || evs.Type() != fastjson.TypeArray {
		return nil, &fieldError{"events", "must be an array of event objects"}
	}
	arr, _ := evs.Array()
	if len(arr) == 0 {
		return nil, &fieldError{"events", "is empty"}
	}
	if len(arr) > s.cfg.MaxBatch {
		return nil, &fieldError{"events", fmt.Sprintf("more than %d events", s.cfg.MaxBatch)}
	}
	out := (*dst)[:0]
	for i, e := range arr {
		if e.Type() != fastjson.TypeObject {
			return nil, &fieldError{fmt.Sprintf("events[%d]", i), "must be an object"}
		}
		r := shared
		if err := parseObject(e, "", &r, inBodyOrEvent, inEvent); err != nil {
			// Name the event only on error: no formatting per event.
			err.(*fieldError).field = fmt.Sprintf("events[%d].", i) + err.(*fieldError).field
			return nil, err
		}
		out = append(out, r)
	}
	*dst = out
	return out, nil
}

package ingest

import (
	"fmt"
	"strconv"
	"sync"

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
	if fe := s.checkBatch(raws); fe != nil {
		jsonError(ctx, fasthttp.StatusBadRequest, fe.field, fe.Error())
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
	var meta reqMeta
	s.fillMeta(ctx, &meta)
	accepted, dropped := 0, 0
	for i := range raws {
		switch s.accept(&raws[i], &meta) {
		case "":
			accepted++
		case reasonNoConsent:
			dropped++ // the campaign drops consent-less hits: not an error
		default:
			// Lost the race for queue space against other requests.
			s.m.acceptedBatch.Add(float64(accepted))
			h.Set(RejectHeader, s.dl.shedReason())
			h.Set("Retry-After", "5")
			jsonError(ctx, fasthttp.StatusServiceUnavailable, "", fmt.Sprintf("overloaded after %d of %d events: retry the batch later (events with an eid are counted once)", accepted, len(raws)))
			return
		}
	}
	s.m.acceptedBatch.Add(float64(accepted))
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"accepted":` + strconv.Itoa(accepted) + `,"dropped":` + strconv.Itoa(dropped) + "}\n")
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

// checkBatch validates each event of a batch and resolves its campaign,
// counting and naming the first that fails (nil when all pass).
func (s *Server) checkBatch(raws []rawHit) *fieldError {
	for i := range raws {
		if reason := raws[i].validate(); reason != "" {
			field := fmt.Sprintf("events[%d]", i)
			switch reason {
			case reasonMissingCampaign, reasonBadCampaign:
				field += ".c"
			case reasonBadEvent:
				field += ".e"
			}
			s.m.rejectedBy[reason].Inc()
			return &fieldError{field, reason}
		}
		if _, ok := s.deps.Campaigns.lookup(raws[i].v[fCampaign]); !ok {
			s.m.rejectedBy[reasonUnknownCampaign].Inc()
			return &fieldError{fmt.Sprintf("events[%d].c", i), "unknown campaign"}
		}
	}
	return nil
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

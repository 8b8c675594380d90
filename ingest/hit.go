package ingest

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/schemas"
)

// rawHit holds the untrusted fields of one hit as sent by a page, as
// sub-slices of the request (no copies). The same struct is filled from
// /p.gif query arguments and from /e JSON objects, both through hitFields
// (fields.go).
type rawHit struct {
	// v holds the values by field (fields.go); nil when absent.
	v [numFields][]byte
}

// reqMeta is what the request itself tells about the visitor.
type reqMeta struct {
	ip      netip.Addr
	ua      []byte
	chUA    []byte // Sec-CH-UA
	origin  []byte // Origin header
	referer []byte // Referer header
	gpc     bool
	dnt     bool
	signed  bool // a verified /s2s request: no visitor address or browser
	now     time.Time
}

// builder owns the scratch buffers a hit's derived fields live in until it
// is encoded. Builders are pooled; one serves one hit at a time.
type builder struct {
	hit      schemas.Hit
	url      []byte
	ref      []byte
	emMeta   []byte
	emGoogle []byte
	fbc      []byte
	region   []byte
	utm      []byte // the decoded utm_* values, back to back
}

// utmDecode sets the hit's utm_* fields to tr's values percent-decoded
// ("linked%20in" is stored and reported as "linked in"), in b.utm.
func (b *builder) utmDecode(tr *anonymize.Tracking) {
	src := [...][]byte{tr.UTMSource, tr.UTMMedium, tr.UTMCampaign, tr.UTMTerm, tr.UTMContent}
	var end [len(src)]int
	b.utm = b.utm[:0]
	for i, v := range src {
		b.utm = anonymize.Unescape(b.utm, v)
		end[i] = len(b.utm)
	}
	h, start := &b.hit, 0
	for i, dst := range [...]*[]byte{&h.UTMSource, &h.UTMMedium, &h.UTMCampaign, &h.UTMTerm, &h.UTMContent} {
		*dst = b.utm[start:end[i]:end[i]]
		start = end[i]
	}
}

var builderPool = sync.Pool{New: func() any {
	return &builder{url: make([]byte, 0, 512), ref: make([]byte, 0, 512), emMeta: make([]byte, 0, 64),
		emGoogle: make([]byte, 0, 64), fbc: make([]byte, 0, 128), region: make([]byte, 0, 16), utm: make([]byte, 0, 256)}
}}

// idSource makes server event ids: a random per-process prefix and a
// counter, unique without a syscall per hit.
type idSource struct {
	prefix [8]byte
	n      atomic.Uint64
}

func (s *idSource) next(dst *[16]byte) {
	copy(dst[:8], s.prefix[:])
	n := s.n.Add(1)
	for i := 0; i < 8; i++ {
		dst[8+i] = byte(n >> (8 * i))
	}
}

// validate checks the fields every hit needs and returns a reject reason,
// or "" when the hit is well-formed.
func (r *rawHit) validate() string {
	if len(r.v[fCampaign]) == 0 {
		return reasonMissingCampaign
	}
	if !validID(r.v[fCampaign]) {
		return reasonBadCampaign
	}
	if schemas.ParseEvent(r.v[fEvent]) == schemas.EventUnknown {
		return reasonBadEvent
	}
	if r.tooLong() {
		return reasonFieldTooLong
	}
	return ""
}

func validID(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

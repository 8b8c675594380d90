package ingest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/jobpixel/jobpixel/schemas"
)

// guard applies the campaign's protections against forged hits and returns
// a reject reason or "". A browser hit (not signed) must come from an
// allowed page host, when the campaign names any: the page URL, the Origin
// and the Referer header must each name one when present. A campaign that
// requires signed applications takes application events only from /s2s.
// It does not allocate.
func guard(raw *rawHit, meta *reqMeta, camp *campaignInfo) string {
	if meta.signed {
		return ""
	}
	if camp.requireSigned && schemas.ParseEvent(raw.v[fEvent]) == schemas.EventApplication {
		return reasonUnsigned
	}
	if len(camp.hosts) == 0 {
		return ""
	}
	for _, u := range [...][]byte{raw.v[fURL], meta.origin, meta.referer} {
		if len(u) > 0 && !hostAllowed(urlHost(u), camp.hosts) {
			return reasonForbiddenHost
		}
	}
	return ""
}

// urlHost returns the host of an absolute URL ("https://Host:8443/x" gives
// "Host"), or nil when u has none (a relative URL, an opaque "null" Origin).
func urlHost(u []byte) []byte {
	i := bytes.Index(u, []byte("://"))
	if i < 0 {
		return nil
	}
	h := u[i+3:]
	if j := bytes.IndexAny(h, "/?#"); j >= 0 {
		h = h[:j]
	}
	if j := bytes.LastIndexByte(h, '@'); j >= 0 {
		h = h[j+1:] // userinfo
	}
	if len(h) > 0 && h[0] == '[' {
		if j := bytes.IndexByte(h, ']'); j >= 0 {
			return h[1:j]
		}
		return nil
	}
	if j := bytes.LastIndexByte(h, ':'); j >= 0 {
		h = h[:j]
	}
	return h
}

// hostAllowed reports whether host (any case) is one of allowed, or a
// subdomain of a "*.domain" entry (not the domain itself).
func hostAllowed(host []byte, allowed [][]byte) bool {
	if len(host) == 0 {
		return false
	}
	for _, a := range allowed {
		if len(a) > 2 && a[0] == '*' && a[1] == '.' {
			d := a[1:] // ".domain"
			if len(host) > len(d) && bytes.EqualFold(host[len(host)-len(d):], d) {
				return true
			}
			continue
		}
		if bytes.EqualFold(host, a) {
			return true
		}
	}
	return false
}

// S2S request headers: the campaign, a Unix timestamp in seconds and the
// signature "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
const (
	CampaignHeader  = "X-Jobpixel-Campaign"
	TimestampHeader = "X-Jobpixel-Timestamp"
	SignatureHeader = "X-Jobpixel-Signature"
)

// ReplayWindow is how far a signed request's timestamp may be from the
// server's clock. A request replayed within it counts once: every signed
// event must carry an eid, and the pipeline drops repeated client event ids.
const ReplayWindow = 5 * time.Minute

// Sign returns the SignatureHeader value of body sent at ts with secret,
// for clients and tests.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte("."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// verify checks a signed request: the timestamp within ReplayWindow of now
// and the signature made with secret. It returns "" or why not.
func verify(secret []byte, tsHeader, sigHeader, body []byte, now time.Time) string {
	ts, err := strconv.ParseInt(string(tsHeader), 10, 64)
	if err != nil {
		return TimestampHeader + " must be the Unix time in seconds"
	}
	if d := now.Sub(time.Unix(ts, 0)); d > ReplayWindow || d < -ReplayWindow {
		return TimestampHeader + " is more than 5 minutes from the server's clock (replayed, or a clock off)"
	}
	if !hmac.Equal([]byte(Sign(secret, ts, body)), sigHeader) {
		return SignatureHeader + " does not match: sign timestamp + \".\" + body with the campaign's secret"
	}
	return ""
}

// Package tracker serves what a job page loads from the ingest server: the
// tracker script (GET /t.js), and the demo vacancy page (GET /demo/vacancy)
// with its IAB TCF consent banner (GET /demo/cmp.js).
//
// The scripts are built from src/ by build.mjs (`npm run build --prefix
// ingest/tracker`) into dist/, which is committed and embedded, so go build
// needs no npm. README.md documents the snippet a page embeds.
package tracker

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"html/template"
	"strconv"

	"github.com/valyala/fasthttp"
)

var (
	//go:embed dist/t.js
	scriptJS []byte
	//go:embed dist/cmp.js
	cmpJS []byte
	//go:embed demo.html
	demoHTML string
)

// ScriptCacheControl is how long browsers and CDNs keep /t.js. The URL is
// not versioned, so a changed script reaches every page within a day; the
// ETag makes revalidation a 304.
const ScriptCacheControl = "public, max-age=86400, stale-while-revalidate=604800"

// DemoVacancy is the vacancy id of the demo page.
const DemoVacancy = "demo-senior-go-engineer"

var (
	script = newAsset(scriptJS, "text/javascript; charset=utf-8", ScriptCacheControl)
	cmp    = newAsset(cmpJS, "text/javascript; charset=utf-8", "public, max-age=3600")
	demo   = template.Must(template.New("demo").Parse(demoHTML))
)

// asset is a static file with its gzip encoding and an entity tag per
// encoding, all computed once at start.
type asset struct {
	body, gz         []byte
	etag, etagGzip   string
	ctype, cacheCtrl string
}

func newAsset(body []byte, ctype, cacheCtrl string) *asset {
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:12])
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(body)
	zw.Close()
	return &asset{body: body, gz: buf.Bytes(), etag: `"` + tag + `"`, etagGzip: `"` + tag + `-gzip"`,
		ctype: ctype, cacheCtrl: cacheCtrl}
}

// serve answers GET and HEAD: gzip when the client accepts it, 304 when
// If-None-Match names the current version in either encoding.
func (a *asset) serve(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed) // resets headers: Allow after
		h.Set("Allow", "GET, HEAD")
		return
	}
	gz := ctx.Request.Header.HasAcceptEncoding("gzip")
	tag := a.etag
	if gz {
		tag = a.etagGzip
	}
	h.Set("Cache-Control", a.cacheCtrl)
	h.Set("Vary", "Accept-Encoding")
	h.Set("ETag", tag)
	h.Set("Access-Control-Allow-Origin", "*") // lets pages use integrity="..." crossorigin
	h.Set("X-Content-Type-Options", "nosniff")
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && (etagMatch(inm, a.etag) || etagMatch(inm, a.etagGzip)) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	h.SetContentType(a.ctype)
	if gz {
		h.Set("Content-Encoding", "gzip")
		ctx.SetBody(a.gz)
		return
	}
	ctx.SetBody(a.body)
}

// etagMatch reports whether an If-None-Match value (a list of entity tags,
// or *) matches tag by the weak comparison RFC 9110 prescribes for it.
func etagMatch(inm []byte, tag string) bool {
	for len(inm) > 0 {
		var t []byte
		if i := bytes.IndexByte(inm, ','); i >= 0 {
			t, inm = inm[:i], inm[i+1:]
		} else {
			t, inm = inm, nil
		}
		t = bytes.TrimSpace(t)
		t = bytes.TrimPrefix(t, []byte("W/"))
		if string(t) == "*" || string(t) == tag {
			return true
		}
	}
	return false
}

// Script answers GET /t.js with the tracker script.
func Script(ctx *fasthttp.RequestCtx) { script.serve(ctx) }

// CMP answers GET /demo/cmp.js with the demo page's consent banner.
func CMP(ctx *fasthttp.RequestCtx) { cmp.serve(ctx) }

// demoCSP lets the demo page load nothing but from its own origin: the
// banner and the tracker need no other network.
const demoCSP = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; " +
	"img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Demo answers GET /demo/vacancy?c=CAMPAIGN: a job page with the snippet,
// an apply button, an application form, an e-mail-me-this-job form, and a
// TCF consent banner. The optional consent_timeout query argument (ms) sets
// the snippet's data-consent-timeout. campaign is not looked up: hits for an
// unknown campaign are rejected by ingest as usual.
func Demo(ctx *fasthttp.RequestCtx, campaign string) {
	h := &ctx.Response.Header
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed) // resets headers: Allow after
		h.Set("Allow", "GET, HEAD")
		return
	}
	if !validID(campaign) {
		ctx.Error("demo: add ?c=CAMPAIGN_ID (make run prints the demo campaign)\n", fasthttp.StatusBadRequest)
		return
	}
	var timeout string
	if t := ctx.QueryArgs().Peek("consent_timeout"); len(t) > 0 {
		n, err := strconv.ParseUint(string(t), 10, 32)
		if err != nil {
			ctx.Error("demo: consent_timeout must be milliseconds\n", fasthttp.StatusBadRequest)
			return
		}
		timeout = strconv.FormatUint(n, 10)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", demoCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.SetContentType("text/html; charset=utf-8")
	var buf bytes.Buffer
	if err := demo.Execute(&buf, struct{ Campaign, Vacancy, Timeout string }{campaign, DemoVacancy, timeout}); err != nil {
		ctx.Error("demo: "+err.Error()+"\n", fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetBody(buf.Bytes())
}

// validID is ingest's campaign id syntax: 1 to 64 of [A-Za-z0-9_-].
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

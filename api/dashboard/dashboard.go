// Package dashboard serves the client dashboard on the API listener: one
// page (GET /dashboard/) with one script and one style sheet, embedded in
// the binary. The page asks for the client's API token, keeps it in the
// tab's memory only, and reads the client API (package api) with it:
// the campaign list, then a campaign's conversion report.
//
// Everything is served with a strict Content-Security-Policy (nothing but
// this origin's own script, style and API; no inline script or style), and
// the script inserts every value with textContent, never as HTML.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed static
var static embed.FS

// Path is where the page is served; Path without its trailing slash
// redirects to it.
const Path = "/dashboard/"

// CSP is the Content-Security-Policy of every dashboard response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// asset is an embedded file with its entity tag, computed once at start.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

func load(name, ctype string) *asset {
	b, err := static.ReadFile("static/" + name)
	if err != nil {
		panic("dashboard: " + err.Error()) // embedded: cannot happen
	}
	sum := sha256.Sum256(b)
	return &asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// assets maps request paths to the files.
var assets = map[string]*asset{
	Path:             load("index.html", "text/html; charset=utf-8"),
	Path + "app.js":  load("app.js", "text/javascript; charset=utf-8"),
	Path + "app.css": load("app.css", "text/css; charset=utf-8"),
}

// Handler serves Path and everything under it (mount it on both "/dashboard"
// and "/dashboard/"): the three files, a redirect from "/dashboard", 404 for
// any other path. Assets are revalidated on every load (Cache-Control:
// no-cache) with an ETag, so a new release shows at once.
func Handler() http.Handler { return http.HandlerFunc(serve) }

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.URL.Path == Path[:len(Path)-1] {
		http.Redirect(w, r, Path, http.StatusMovedPermanently)
		return
	}
	a := assets[r.URL.Path]
	if a == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	// ServeContent answers If-None-Match with 304, and HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, req)
	resp := w.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestHeaders checks every answer carries the security headers, the assets
// their types and validators, and that nothing else is served.
func TestHeaders(t *testing.T) {
	for path, ctype := range map[string]string{
		"/dashboard/":        "text/html; charset=utf-8",
		"/dashboard/app.js":  "text/javascript; charset=utf-8",
		"/dashboard/app.css": "text/css; charset=utf-8",
	} {
		resp, body := get(t, "GET", path, nil)
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Content-Type") != ctype || len(body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes)", path, resp.StatusCode, h.Get("Content-Type"), len(body))
		}
		checkSecurity(t, path, h)
		etag := h.Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(etag) || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: ETag %q Cache-Control %q", path, etag, h.Get("Cache-Control"))
		}
		resp, body = get(t, "GET", path, map[string]string{"If-None-Match": etag})
		if resp.StatusCode != http.StatusNotModified || body != "" || resp.Header.Get("ETag") != etag {
			t.Errorf("revalidating %s: %d, %d bytes, ETag %q", path, resp.StatusCode, len(body), resp.Header.Get("ETag"))
		}
		if resp, _ := get(t, "GET", path, map[string]string{"If-None-Match": `"stale"`}); resp.StatusCode != 200 {
			t.Errorf("stale ETag for %s: %d", path, resp.StatusCode)
		}
		if resp, body := get(t, "HEAD", path, nil); resp.StatusCode != 200 || body != "" {
			t.Errorf("HEAD %s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
		if resp, _ := get(t, "POST", path, nil); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s: %d Allow %q", path, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	resp, _ := get(t, "GET", "/dashboard", nil)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/dashboard/" {
		t.Errorf("GET /dashboard: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	checkSecurity(t, "/dashboard", resp.Header)
	for _, p := range []string{"/dashboard/index.html", "/dashboard/static/app.js", "/dashboard/x", "/dashboard/app.js/"} {
		resp, _ := get(t, "GET", p, nil)
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
		checkSecurity(t, p, resp.Header)
	}
}

func checkSecurity(t *testing.T, path string, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", path, k, got, want)
		}
	}
}

// TestNoUnsafeMarkup holds the sources to the rules the CSP cannot check
// by itself: data never goes in as HTML, the token never into storage,
// and the page loads nothing from elsewhere.
func TestNoUnsafeMarkup(t *testing.T) {
	js, _ := static.ReadFile("static/app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(",
		"localStorage", "sessionStorage", "indexedDB", "document.cookie", "caches.", "history.pushState", "location.hash",
		"setAttribute('style'", "setAttribute(\"style\"", "setAttribute('on", "setAttribute(\"on"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	html, _ := static.ReadFile("static/index.html")
	scripts := regexp.MustCompile(`(?i)<script\b[^>]*>`).FindAllString(string(html), -1)
	if len(scripts) != 1 || scripts[0] != `<script src="app.js" defer>` {
		t.Errorf("scripts %q, want only app.js", scripts)
	}
	if m := regexp.MustCompile(`(?i)<style|\sstyle=|\son[a-z]+=|https?:|//[a-z]|<input[^>]*\sname=`).FindString(string(html)); m != "" {
		t.Errorf("index.html has %q (inline style or handler, external resource, or a named input)", m)
	}
	css, _ := static.ReadFile("static/app.css")
	if m := regexp.MustCompile(`(?i)url\(|@import|https?:`).FindString(string(css)); m != "" {
		t.Errorf("app.css loads something: %q", m)
	}
}

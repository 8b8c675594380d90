package tracker

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// ScriptBudget is the most bytes /t.js may take gzipped.
const ScriptBudget = 3 << 10

// TestScriptSize keeps the tracker under its budget at gzip's default level
// (what a CDN that recompresses would use; /t.js itself is served at the
// best level).
func TestScriptSize(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(scriptJS)
	zw.Close()
	t.Logf("t.js: %d bytes, %d gzipped (default level), %d as served (best level); budget %d",
		len(scriptJS), buf.Len(), len(script.gz), ScriptBudget)
	if buf.Len() >= ScriptBudget {
		t.Errorf("t.js is %d bytes gzipped, over the %d-byte budget", buf.Len(), ScriptBudget)
	}
}

func get(h func(*fasthttp.RequestCtx), method, uri string, header ...string) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	for i := 0; i+1 < len(header); i += 2 {
		ctx.Request.Header.Set(header[i], header[i+1])
	}
	h(&ctx)
	var r fasthttp.Response
	ctx.Response.CopyTo(&r)
	return &r
}

func TestScriptCaching(t *testing.T) {
	r := get(Script, "GET", "/t.js")
	if r.StatusCode() != 200 || !bytes.Equal(r.Body(), scriptJS) {
		t.Fatalf("GET: %d, %d bytes", r.StatusCode(), len(r.Body()))
	}
	if ct := string(r.Header.ContentType()); ct != "text/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	cc := string(r.Header.Peek("Cache-Control"))
	if !strings.HasPrefix(cc, "public, max-age=") || cc == "public, max-age=0" {
		t.Errorf("Cache-Control %q, want public with a max-age", cc)
	}
	etag := string(r.Header.Peek("ETag"))
	if len(etag) < 10 || etag[0] != '"' {
		t.Fatalf("ETag %q", etag)
	}

	gz := get(Script, "GET", "/t.js", "Accept-Encoding", "br, gzip")
	if string(gz.Header.Peek("Content-Encoding")) != "gzip" || string(gz.Header.Peek("Vary")) != "Accept-Encoding" {
		t.Fatalf("gzip: encoding %q vary %q", gz.Header.Peek("Content-Encoding"), gz.Header.Peek("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz.Body()))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, scriptJS) {
		t.Fatal("gzip body does not decode to the script")
	}
	gzTag := string(gz.Header.Peek("ETag"))
	if gzTag == etag {
		t.Errorf("identity and gzip share the strong ETag %s", etag)
	}

	for _, c := range []struct {
		inm  string
		want int
	}{
		{etag, 304},
		{gzTag, 304},
		{"W/" + etag, 304},
		{`"old", ` + etag, 304},
		{"*", 304},
		{`"old"`, 200},
		{`"` + etag + `"`, 200},
	} {
		r := get(Script, "GET", "/t.js", "If-None-Match", c.inm)
		if r.StatusCode() != c.want {
			t.Errorf("If-None-Match %s: %d, want %d", c.inm, r.StatusCode(), c.want)
		}
		if c.want == 304 && (len(r.Body()) != 0 || string(r.Header.Peek("ETag")) != etag || string(r.Header.Peek("Cache-Control")) != cc) {
			t.Errorf("304 for %s: body %d bytes, ETag %q, Cache-Control %q", c.inm, len(r.Body()), r.Header.Peek("ETag"), r.Header.Peek("Cache-Control"))
		}
	}
	if r := get(Script, "POST", "/t.js"); r.StatusCode() != 405 || string(r.Header.Peek("Allow")) != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", r.StatusCode(), r.Header.Peek("Allow"))
	}
	if r := get(CMP, "GET", "/demo/cmp.js"); r.StatusCode() != 200 || !bytes.Equal(r.Body(), cmpJS) {
		t.Errorf("cmp.js: %d", r.StatusCode())
	}
}

func TestDemo(t *testing.T) {
	demo := func(campaign, query string) *fasthttp.Response {
		return get(func(ctx *fasthttp.RequestCtx) { Demo(ctx, campaign) }, "GET", "/demo/vacancy?"+query)
	}
	r := demo("cmp_Demo-1", "c=cmp_Demo-1&consent_timeout=1500")
	body := string(r.Body())
	if r.StatusCode() != 200 || !strings.HasPrefix(string(r.Header.ContentType()), "text/html") {
		t.Fatalf("demo: %d %s", r.StatusCode(), r.Header.ContentType())
	}
	for _, want := range []string{
		`<script async src="/t.js" data-campaign="cmp_Demo-1" data-vacancy="` + DemoVacancy + `" data-consent-timeout="1500"></script>`,
		`<noscript><img src="/p.gif?c=cmp_Demo-1&amp;e=page_view&amp;v=` + DemoVacancy + `"`,
		`<script src="/demo/cmp.js"></script>`,
		`data-jobpixel="apply"`,
		`id="jp-accept"`, `id="jp-refuse"`, `id="apply-form"`, `id="email-form"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("demo page lacks %s", want)
		}
	}
	if csp := string(r.Header.Peek("Content-Security-Policy")); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(demo("cmp_x", "c=cmp_x").String(), "data-consent-timeout") {
		t.Error("data-consent-timeout without consent_timeout")
	}
	for _, c := range []struct{ campaign, query string }{
		{"", ""},
		{`x"><script>alert(1)</script>`, ""},
		{strings.Repeat("a", 65), ""},
		{"cmp_x", "consent_timeout=soon"},
	} {
		if r := demo(c.campaign, c.query); r.StatusCode() != 400 {
			t.Errorf("demo(%q, %q): %d, want 400", c.campaign, c.query, r.StatusCode())
		}
	}
}

// TestBundleUpToDate rebuilds dist/ from src/ in memory with the pinned
// esbuild and fails when the committed files differ. It needs the npm
// packages (`make deps`); without them it skips, except under CI.
func TestBundleUpToDate(t *testing.T) {
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(filepath.Join("node_modules", "esbuild")); err != nil || statErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node or ingest/tracker/node_modules missing: run make deps")
		}
		t.Skip("node or ingest/tracker/node_modules missing: run make deps to check dist/ against src/")
	}
	out, err := exec.Command(node, "build.mjs", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("dist/ is stale: %v\n%s", err, out)
	}
}

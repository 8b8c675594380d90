package systemtest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jobpixel/jobpixel/app"
)

// TestOpsListener: metrics, health, readiness and pprof are served on the
// ops listener only; the public ingest and api listeners serve what pages
// and clients need, and the demo page only with -demo.
func TestOpsListener(t *testing.T) {
	a := startApp(t, func(c *app.Config) { c.OpsAddr = "127.0.0.1:0" })
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ops, in, api := "http://"+a.OpsAddr(), "http://"+a.IngestAddr(), "http://"+a.APIAddr()
	for path, want := range map[string]string{
		"/metrics":      "jobpixel_ingest_accepted_total",
		"/healthz":      "ok",
		"/readyz":       "ready",
		"/debug/pprof/": "goroutine",
	} {
		if code, body := get(ops + path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("ops %s: %d, body lacks %q", path, code, want)
		}
	}
	for _, base := range []string{in, api} {
		for _, path := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/", "/demo/vacancy?c=x", "/demo/cmp.js"} {
			if code, _ := get(base + path); code != 404 {
				t.Errorf("public %s%s: %d, want 404", base, path, code)
			}
		}
	}
	if code, _ := get(in + "/t.js"); code != 200 {
		t.Errorf("ingest /t.js: %d", code)
	}
}

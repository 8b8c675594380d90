package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/jobpixel/jobpixel/internal/store"
)

func TestURLHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://jobs.example.com/vacancy?x=1": "jobs.example.com",
		"https://Jobs.Example.com":             "Jobs.Example.com",
		"https://jobs.example.com:8443/a":      "jobs.example.com",
		"https://user:pw@jobs.example.com/":    "jobs.example.com",
		"http://[2001:db8::1]:8080/x":          "2001:db8::1",
		"https://jobs.example.com#frag":        "jobs.example.com",
		"/relative/path":                       "",
		"null":                                 "",
		"https://[broken":                      "",
	} {
		if got := string(urlHost([]byte(in))); got != want {
			t.Errorf("urlHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzURLHost: urlHost never panics and returns a part of its input.
func FuzzURLHost(f *testing.F) {
	for _, s := range []string{"https://a.example/x", "http://[::1]:1/", "x://@", "://", "https://u@h:p/?#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := urlHost([]byte(s))
		if len(h) > 0 && !bytes.Contains([]byte(s), h) {
			t.Fatalf("urlHost(%q) = %q, not part of the input", s, h)
		}
	})
}

func TestHostAllowed(t *testing.T) {
	allowed := [][]byte{[]byte("jobs.example.com"), []byte("*.careers.example.org")}
	for host, want := range map[string]bool{
		"jobs.example.com":        true,
		"JOBS.example.COM":        true,
		"www.jobs.example.com":    false, // exact entries allow no subdomain
		"a.careers.example.org":   true,
		"a.b.careers.example.org": true,
		"careers.example.org":     false, // *.d is d's subdomains, not d
		"evilcareers.example.org": false,
		"example.com":             false,
		"":                        false,
	} {
		if got := hostAllowed([]byte(host), allowed); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestVerify(t *testing.T) {
	secret := []byte("jps_secret")
	body := []byte(`{"c":"cmp_1","events":[{"e":"application","eid":"a1"}]}`)
	now := time.Unix(1_800_000_000, 0)
	ts := now.Unix()
	good := Sign(secret, ts, body)
	tsb := func(ts int64) []byte { return strconv.AppendInt(nil, ts, 10) }
	for _, c := range []struct {
		name      string
		ts, sig   []byte
		body      []byte
		wantOK    bool
		wantInWhy string
	}{
		{"valid", tsb(ts), []byte(good), body, true, ""},
		{"4 minutes old", tsb(ts - 240), []byte(Sign(secret, ts-240, body)), body, true, ""},
		{"6 minutes old", tsb(ts - 360), []byte(Sign(secret, ts-360, body)), body, false, "5 minutes"},
		{"6 minutes ahead", tsb(ts + 360), []byte(Sign(secret, ts+360, body)), body, false, "5 minutes"},
		{"body changed", tsb(ts), []byte(good), append(body[:len(body):len(body)], ' '), false, "does not match"},
		{"timestamp changed", tsb(ts + 1), []byte(good), body, false, "does not match"},
		{"other secret", tsb(ts), []byte(Sign([]byte("other"), ts, body)), body, false, "does not match"},
		{"no timestamp", nil, []byte(good), body, false, "Unix time"},
		{"no signature", tsb(ts), nil, body, false, "does not match"},
	} {
		why := verify(secret, c.ts, c.sig, c.body, now)
		if (why == "") != c.wantOK || !bytes.Contains([]byte(why), []byte(c.wantInWhy)) {
			t.Errorf("%s: verify = %q", c.name, why)
		}
	}
}

// TestGuardedCampaign: a campaign with allowed hosts and signed
// applications, through the pixel, /e and /s2s handlers.
func TestGuardedCampaign(t *testing.T) {
	reg := NewRegistry(fakeCampaigns{{ID: "cmp_g", ClientID: "cl_1", Guards: store.Guards{
		AllowedHosts: []string{"jobs.example.com"}, S2SSecret: "jps_k", RequireSigned: true}}}, slog.Default())
	if err := reg.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{}, Deps{Writer: nopWriter{}, Campaigns: reg, Salts: &fixedSalt{1}, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	s.ready.Store(true)
	h := s.Handler()
	drain := func() {
		for s.dl.q.len() > 0 {
			putRecord(<-s.dl.q.ch)
		}
	}
	pixel := func(uri, referer, origin string) string {
		ctx := pixelCtx(uri)
		ctx.Request.Header.Del("Referer")
		if referer != "" {
			ctx.Request.Header.Set("Referer", referer)
		}
		if origin != "" {
			ctx.Request.Header.Set("Origin", origin)
		}
		h(ctx)
		drain()
		return string(ctx.Response.Header.Peek(RejectHeader))
	}
	ok := "https%3A%2F%2Fjobs.example.com%2Fjob%2F1"
	for _, c := range []struct {
		name, uri, referer, origin, want string
	}{
		{"allowed page", "/p.gif?c=cmp_g&e=page_view&u=" + ok, "", "", ""},
		{"allowed page and referer", "/p.gif?c=cmp_g&e=page_view&u=" + ok, "https://jobs.example.com/", "", ""},
		{"noscript pixel on an allowed page", "/p.gif?c=cmp_g&e=page_view", "https://jobs.example.com/job/1", "", ""},
		{"other page", "/p.gif?c=cmp_g&e=page_view&u=https%3A%2F%2Fevil.example%2F", "", "", reasonForbiddenHost},
		{"allowed page, other referer", "/p.gif?c=cmp_g&e=page_view&u=" + ok, "https://evil.example/", "", reasonForbiddenHost},
		{"allowed page, other origin", "/p.gif?c=cmp_g&e=apply_click&u=" + ok, "", "https://evil.example", reasonForbiddenHost},
		{"browser application", "/p.gif?c=cmp_g&e=application&u=" + ok, "", "", reasonUnsigned},
	} {
		if got := pixel(c.uri, c.referer, c.origin); got != c.want {
			t.Errorf("%s: reject %q, want %q", c.name, got, c.want)
		}
	}

	post := func(path, body string, hdr map[string]string) (int, string) {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.SetRequestURI(path)
		req.Header.SetMethod("POST")
		req.SetBodyString(body)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		ctx.Init(&req, nil, nil)
		h(&ctx)
		drain()
		return ctx.Response.StatusCode(), string(ctx.Response.Body())
	}
	if code, body := post("/e", `{"c":"cmp_g","u":"https://evil.example/","events":[{"e":"page_view"}]}`, nil); code != 403 || !bytes.Contains([]byte(body), []byte(reasonForbiddenHost)) {
		t.Errorf("/e from another host: %d %s", code, body)
	}
	if code, body := post("/e", `{"c":"cmp_g","u":"https://jobs.example.com/","events":[{"e":"application","em":"a@example.com"}]}`, nil); code != 403 || !bytes.Contains([]byte(body), []byte(reasonUnsigned)) {
		t.Errorf("/e application of a signed-only campaign: %d %s", code, body)
	}
	signed := func(body string, ts int64) map[string]string {
		return map[string]string{CampaignHeader: "cmp_g", TimestampHeader: strconv.FormatInt(ts, 10),
			SignatureHeader: Sign([]byte("jps_k"), ts, []byte(body))}
	}
	now := time.Now().Unix()
	app := `{"events":[{"e":"application","eid":"ats-1","em":"a@example.com"}]}`
	if code, body := post("/s2s", app, signed(app, now)); code != 202 {
		t.Errorf("/s2s signed application: %d %s", code, body)
	}
	if code, _ := post("/s2s", app, signed(app, now-600)); code != 401 {
		t.Errorf("/s2s with a stale timestamp: %d, want 401", code)
	}
	forged := signed(app, now)
	forged[SignatureHeader] = Sign([]byte("guess"), now, []byte(app))
	if code, _ := post("/s2s", app, forged); code != 401 {
		t.Errorf("/s2s with a wrong signature: %d, want 401", code)
	}
	noEID := `{"events":[{"e":"application"}]}`
	if code, body := post("/s2s", noEID, signed(noEID, now)); code != 400 || !bytes.Contains([]byte(body), []byte("eid")) {
		t.Errorf("/s2s event without eid: %d %s", code, body)
	}
	other := `{"c":"cmp_other","events":[{"e":"application","eid":"x"}]}`
	if code, _ := post("/s2s", other, signed(other, now)); code != 400 {
		t.Errorf("/s2s event for another campaign than signed for: %d, want 400", code)
	}
}

package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/jobpixel/jobpixel/app"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/jobpixel/jobpixel/internal/store"
)

// TestDashboardHTTP follows the dashboard line `make run` prints and checks
// the headers of the page and its assets, the redirect and a 404.
func TestDashboardHTTP(t *testing.T) {
	dir := t.TempDir()
	a := startApp(t, func(c *app.Config) { c.Roles = "api"; c.Demo = true; c.DataDir = dir })
	var out strings.Builder
	a.PrintDemo(&out)
	var page string
	lines := strings.Split(out.String(), "\n")
	for i, line := range lines {
		if l := strings.TrimSpace(line); strings.HasSuffix(l, "/dashboard/") {
			page = l
			if i == 0 || !strings.Contains(lines[i-1], "JOBPIXEL_DEMO_TOKEN") || !strings.Contains(lines[i-1], filepath.Join(dir, "demo.env")) {
				t.Errorf("the dashboard line lacks the hint to the demo token in demo.env:\n%s", out.String())
			}
		}
	}
	if page != "http://"+a.APIAddr()+"/dashboard/" {
		t.Fatalf("printed instructions name no dashboard at %s:\n%s", a.APIAddr(), out.String())
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, u string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, u, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	security := func(u string, h http.Header) {
		t.Helper()
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", u, k, got, want)
			}
		}
	}
	for _, f := range []struct{ path, ctype, has string }{
		{"", "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"app.js", "text/javascript; charset=utf-8", "textContent"},
		{"app.css", "text/css; charset=utf-8", "[hidden]"},
	} {
		u := page + f.path
		resp, body := do("GET", u, nil) // no token: the page itself is public
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != f.ctype || !strings.Contains(body, f.has) {
			t.Errorf("GET %s: %d %q, body has %q: %v", u, resp.StatusCode, resp.Header.Get("Content-Type"), f.has, strings.Contains(body, f.has))
		}
		security(u, resp.Header)
		etag := resp.Header.Get("ETag")
		if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: ETag %q, Cache-Control %q; want an ETag and no-cache", u, etag, resp.Header.Get("Cache-Control"))
		}
		if resp, body := do("GET", u, map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("GET %s with If-None-Match %s: %d, %d bytes; want 304", u, etag, resp.StatusCode, len(body))
		}
	}
	base := "http://" + a.APIAddr()
	resp, _ := do("GET", base+"/dashboard", nil)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/dashboard/" {
		t.Errorf("GET /dashboard: %d Location %q, want a redirect to /dashboard/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/dashboard/nope", "/dashboard/index.html", "/dashboard/static/app.js"} {
		resp, _ := do("GET", base+p, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
		security(p, resp.Header)
	}
	if resp, _ := do("POST", page, nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /dashboard/: %d, want 405", resp.StatusCode)
	}
	// The API next to it is unchanged: still behind the token.
	if code, _ := apiCall(t, a, "GET", "/api/v1/campaigns", "", ""); code != 401 {
		t.Errorf("GET /api/v1/campaigns without a token: %d, want 401", code)
	}
}

// dashView is what the dashboard shows, read from its DOM.
type dashView struct {
	Campaign string            `json:"campaign"` // data-campaign of the report on screen
	From     string            `json:"from"`
	To       string            `json:"to"`
	Title    string            `json:"title"`
	Options  [][]string        `json:"options"` // [id, text] of the campaign list
	Totals   map[string]string `json:"totals"`
	Days     [][]string        `json:"days"`
	Sources  [][]string        `json:"sources"`
	DaysNone bool              `json:"daysNone"` // "No hits in this range." shown
	Error    string            `json:"error"`
}

const readDash = `(function () {
  function $(id) { return document.getElementById(id); }
  function rows(id) {
    return [].map.call($(id).tBodies[0].rows, function (r) {
      return [].map.call(r.cells, function (c) { return c.textContent; });
    });
  }
  var totals = {};
  ['page_views', 'apply_clicks', 'applications', 'vacancy_emails', 'visitors', 'bots'].forEach(function (k) {
    totals[k] = $('t-' + k).textContent;
  });
  totals.rate_apply_clicks = $('r-apply_clicks').textContent;
  totals.rate_applications = $('r-applications').textContent;
  var r = $('report');
  return {
    campaign: r.dataset.campaign || '', from: r.dataset.from || '', to: r.dataset.to || '',
    title: $('report-title').textContent,
    options: [].map.call($('campaign').options, function (o) { return [o.value, o.textContent]; }),
    totals: totals, days: rows('days'), sources: rows('sources'),
    daysNone: !$('days-empty').hidden,
    error: $('error').hidden ? '' : $('error').textContent
  };
})()`

// dashWatch records, before any script of the page runs, what an injection
// would leave: CSP violations, dialogs, and elements that are images,
// inline scripts or carry an on* handler attribute.
const dashWatch = `window.__dash = {csp: [], dialogs: [], injected: []};
document.addEventListener('securitypolicyviolation', function (e) { __dash.csp.push(e.violatedDirective + ' ' + e.blockedURI); });
['alert', 'confirm', 'prompt'].forEach(function (f) { window[f] = function (m) { __dash.dialogs.push(f + ': ' + m); }; });
new MutationObserver(function (ms) {
  ms.forEach(function (m) {
    m.addedNodes.forEach(function check(n) {
      if (n.nodeType !== 1) return;
      if (n.tagName === 'IMG' || n.tagName === 'IFRAME' || (n.tagName === 'SCRIPT' && !n.src) ||
          [].some.call(n.attributes, function (a) { return /^on/i.test(a.name); })) {
        __dash.injected.push(n.outerHTML.slice(0, 200));
      }
      [].forEach.call(n.children, check);
    });
  });
}).observe(document, {childList: true, subtree: true});`

// dashReport reads the report API as a client would, for the range given.
func dashReport(t *testing.T, a *app.App, token, campaign, from, to string) (store.Report, string) {
	t.Helper()
	u := "/api/v1/campaigns/" + campaign + "/report"
	if from != "" {
		u += "?" + url.Values{"from": {from}, "to": {to}}.Encode()
	}
	code, b := rawCall(t, a, "GET", u, token, "")
	if code != 200 {
		t.Fatalf("report %s: %d %s", u, code, b)
	}
	var r store.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report %s: %v", b, err)
	}
	return r, string(b)
}

func countCells(first string, c store.Counts) []string {
	return []string{first, fmt.Sprint(c.PageViews), fmt.Sprint(c.ApplyClicks), fmt.Sprint(c.Applications),
		fmt.Sprint(c.VacancyEmails), fmt.Sprint(c.Visitors)}
}

func pct(n, d uint64) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", float64(n)/float64(d)*100)
}

// wantView is what the dashboard must show for a report.
func wantView(r store.Report) (totals map[string]string, days, sources [][]string) {
	t := r.Totals
	totals = map[string]string{
		"page_views": fmt.Sprint(t.PageViews), "apply_clicks": fmt.Sprint(t.ApplyClicks),
		"applications": fmt.Sprint(t.Applications), "vacancy_emails": fmt.Sprint(t.VacancyEmails),
		"visitors": fmt.Sprint(t.Visitors), "bots": fmt.Sprint(r.Bots),
		"rate_apply_clicks": pct(t.ApplyClicks, t.PageViews), "rate_applications": pct(t.Applications, t.PageViews),
	}
	days, sources = [][]string{}, [][]string{}
	for _, d := range r.Days {
		days = append(days, countCells(d.Date, d.Counts))
	}
	for _, s := range r.Sources {
		sources = append(sources, countCells(s.Source, s.Counts))
	}
	return totals, days, sources
}

func equalRows(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// TestDashboardBrowser drives the dashboard in headless Chromium against
// the whole system: known hits go through ingest, Kafka and ClickHouse, and
// the page must show exactly what the report API answers, only to the
// token's client, with names as text and the token in memory only.
func TestDashboardBrowser(t *testing.T) {
	chromiumPath(t) // skip (fail under CI) before starting the app when there is no browser
	a := startApp(t, nil)
	ctx := context.Background()
	st := a.Store()
	_, token, err := st.CreateClient(ctx, "Dashboard Client")
	if err != nil {
		t.Fatal(err)
	}
	const xssName = `<img src=x onerror=alert(1)>`
	const plainName = `Nurses & "Care" Q4`
	created := func(tok, name string) string {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"name": name})
		code, m := apiCall(t, a, "POST", "/api/v1/campaigns", tok, string(body))
		if code != 201 || m["name"] != name {
			t.Fatalf("create campaign %q: %d %v", name, code, m)
		}
		return m["id"].(string)
	}
	xss := created(token, xssName)
	plain := created(token, plainName) // no hits
	_, otherToken, err := st.CreateClient(ctx, "Other Client")
	if err != nil {
		t.Fatal(err)
	}
	otherCamp := created(otherToken, "Other client's secret campaign")
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}

	// Known hits: 7 page views (4 from a newsletter, 2 with a hostile
	// utm_source, 1 from LinkedIn), 3 apply clicks, 2 applications, 1
	// vacancy e-mail, 2 bot page views; one page view for the other client.
	const chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
	const bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	const hostileSource = `<svg onload=alert(2)>`
	newsletter := "https://jobs.example.com/nurse?utm_source=newsletter"
	hits := []struct {
		c, e, u, r, ua, ip string
	}{
		{xss, "page_view", newsletter, "", chrome, "203.0.113.10"},
		{xss, "page_view", newsletter, "", chrome, "198.51.100.20"},
		{xss, "page_view", newsletter, "", chrome, "192.0.2.30"},
		{xss, "page_view", newsletter, "", chrome, "203.0.113.10"},
		{xss, "page_view", "https://jobs.example.com/nurse?utm_source=" + hostileSource, "", chrome, "198.51.100.20"},
		{xss, "page_view", "https://jobs.example.com/nurse?utm_source=" + hostileSource, "", chrome, "192.0.2.30"},
		{xss, "page_view", "https://jobs.example.com/nurse", "https://www.linkedin.com/feed/", chrome, "203.0.113.10"},
		{xss, "apply_click", newsletter, "", chrome, "203.0.113.10"},
		{xss, "apply_click", newsletter, "", chrome, "198.51.100.20"},
		{xss, "apply_click", newsletter, "", chrome, "192.0.2.30"},
		{xss, "application", newsletter, "", chrome, "203.0.113.10"},
		{xss, "application", newsletter, "", chrome, "198.51.100.20"},
		{xss, "vacancy_email", newsletter, "", chrome, "203.0.113.10"},
		{xss, "page_view", newsletter, "", bot, "66.249.66.1"},
		{xss, "page_view", newsletter, "", bot, "66.249.66.1"},
		{otherCamp, "page_view", newsletter, "", chrome, "203.0.113.99"},
	}
	for _, h := range hits {
		q := url.Values{"c": {h.c}, "e": {h.e}, "v": {"job-1"}, "u": {h.u}}
		if h.r != "" {
			q.Set("r", h.r)
		}
		req, _ := http.NewRequest("GET", "http://"+a.IngestAddr()+"/p.gif?"+q.Encode(), nil)
		req.Header.Set("User-Agent", h.ua)
		req.Header.Set("X-Forwarded-For", h.ip)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Jobpixel-Reject") != "" {
			t.Fatalf("hit %+v: %d %q", h, resp.StatusCode, resp.Header.Get("X-Jobpixel-Reject"))
		}
	}
	// Wait until every query of the report sees every hit (they are
	// separate reads).
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, body := dashReport(t, a, token, xss, "", "")
		var srcViews, dayViews, dayApps uint64
		for _, s := range r.Sources {
			srcViews += s.PageViews
		}
		for _, d := range r.Days { // one day, or two across midnight (UTC)
			dayViews += d.PageViews
			dayApps += d.Applications
		}
		tot := r.Totals
		if tot.PageViews == 7 && tot.ApplyClicks == 3 && tot.Applications == 2 && tot.VacancyEmails == 1 && r.Bots == 2 &&
			dayViews == 7 && dayApps == 2 && len(r.Sources) == 3 && srcViews == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the report does not show the hits after 60 s: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	b := newBrowser(t)
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: dashWatch}); err != nil {
		t.Fatal(err)
	}
	// The Authorization header of every API request, and any dialog.
	var mu sync.Mutex
	var auths []string
	var dialogs int
	if err := chromedp.Listen(b.ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if e.Request != nil && strings.Contains(e.Request.URL, "/api/") {
				v, _ := e.Request.Headers["Authorization"].(string)
				mu.Lock()
				auths = append(auths, v)
				mu.Unlock()
			}
		case *page.EventJavascriptDialogOpening:
			mu.Lock()
			dialogs++
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	apiBase := "http://" + a.APIAddr()
	view := func() dashView { t.Helper(); return eval[dashView](b, readDash) }
	// wait polls a condition in the page; on timeout it reports what the
	// page shows.
	wait := func(cond string) {
		t.Helper()
		if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(45*time.Second))); err != nil {
			t.Fatalf("waiting for %s: %v; the page shows %+v (status %q)", cond, err, view(),
				eval[string](b, `document.getElementById('status').textContent`))
		}
	}
	// shows waits until the report of campaign is on screen and loaded.
	shows := func(campaign string) {
		t.Helper()
		wait(fmt.Sprintf(`(function () { var r = document.getElementById('report');
			return !r.hidden && r.dataset.campaign === %q && !r.hasAttribute('aria-busy'); })()`, campaign))
	}
	choose := func(campaign string) {
		t.Helper()
		eval[bool](b, fmt.Sprintf(`(function () { var s = document.getElementById('campaign'); s.value = %q;
			s.dispatchEvent(new Event('change')); return s.value === %q; })()`, campaign, campaign))
		shows(campaign)
	}
	errorShows := func(text string) {
		t.Helper()
		wait(fmt.Sprintf(`(function () { var e = document.getElementById('error');
			return !e.hidden && e.textContent.indexOf(%q) >= 0; })()`, text))
	}

	b.do(chromedp.Navigate(apiBase+"/dashboard/"), chromedp.WaitVisible(chromedp.ID("token")))
	if note := eval[string](b, `document.getElementById('token-note').textContent`); !strings.Contains(note, "memory only") ||
		!strings.Contains(note, "never put in a URL, a cookie or") {
		t.Errorf("the page does not say the token stays in memory: %q", note)
	}
	if typ := eval[string](b, `document.getElementById('token').type`); typ != "password" {
		t.Errorf("token input type %q, want password", typ)
	}

	// A wrong token: the error, and nothing shown.
	const wrong = "jpt_not_a_valid_token_123"
	b.do(chromedp.SendKeys(chromedp.ID("token"), wrong), chromedp.Click(chromedp.ID("connect")))
	errorShows("Token not accepted")
	if v := view(); len(v.Options) != 0 || v.Campaign != "" {
		t.Errorf("after a wrong token the page shows %+v", v)
	}

	// The right token: the client's campaigns only, and a report.
	eval[bool](b, `document.getElementById('token').value = '', true`)
	b.do(chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("connect")))
	wait(`(function () { var r = document.getElementById('report'); return !r.hidden && !r.hasAttribute('aria-busy'); })()`)
	v := view()
	wantOptions := [][]string{{xss, xssName}, {plain, plainName}}
	slices.SortFunc(wantOptions, func(x, y []string) int { return strings.Compare(x[0], y[0]) })
	if !equalRows(v.Options, wantOptions) {
		t.Errorf("campaign list %q, want this client's %q", v.Options, wantOptions)
	}
	if v.Error != "" {
		t.Errorf("error shown after a valid token: %q", v.Error)
	}
	if text := eval[string](b, `document.body.textContent`); strings.Contains(text, "secret campaign") || strings.Contains(text, otherCamp) {
		t.Error("the page shows the other client's campaign")
	}

	// The XSS-named campaign: its report equals the API's JSON.
	choose(xss)
	v = view()
	rep, body := dashReport(t, a, token, xss, v.From, v.To)
	today := time.Now().UTC()
	if v.To != rep.To || v.From != rep.From || (v.To != today.Format(time.DateOnly) && v.To != today.AddDate(0, 0, -1).Format(time.DateOnly)) ||
		v.From != mustDay(t, v.To).AddDate(0, 0, -29).Format(time.DateOnly) {
		t.Errorf("range shown %s to %s, want the last 30 days (UTC) ending today", v.From, v.To)
	}
	wantTotals, wantDays, wantSources := wantView(rep)
	if !mapsEqualString(v.Totals, wantTotals) {
		t.Errorf("totals shown %v, want %v (API: %s)", v.Totals, wantTotals, body)
	}
	if rep.Totals.PageViews != 7 || v.Totals["rate_apply_clicks"] != "42.9%" || v.Totals["rate_applications"] != "28.6%" {
		t.Errorf("rates shown %q and %q, want 42.9%% and 28.6%% of 7 page views", v.Totals["rate_apply_clicks"], v.Totals["rate_applications"])
	}
	if !equalRows(v.Days, wantDays) || v.DaysNone {
		t.Errorf("day rows %q, want %q", v.Days, wantDays)
	}
	if !equalRows(v.Sources, wantSources) || !slices.ContainsFunc(v.Sources, func(r []string) bool { return r[0] == hostileSource }) {
		t.Errorf("source rows %q, want %q (with %s as text)", v.Sources, wantSources, hostileSource)
	}
	if v.Title != xssName {
		t.Errorf("report title %q, want the campaign name as text %q", v.Title, xssName)
	}
	if n := eval[int](b, `document.querySelectorAll('#chart svg rect.pv').length`); n != len(rep.Days) {
		t.Errorf("%d page-view bars in the chart, want %d", n, len(rep.Days))
	}

	// The second campaign has no hits: zeros and no rates.
	choose(plain)
	v = view()
	if v.Title != plainName || v.Totals["page_views"] != "0" || v.Totals["bots"] != "0" || v.Totals["rate_apply_clicks"] != "–" ||
		v.Totals["rate_applications"] != "–" || len(v.Days) != 0 || !v.DaysNone || len(v.Sources) != 0 {
		t.Errorf("empty campaign shows %+v", v)
	}

	// A refused request shows the API's message; a network error says so.
	from, to := v.From, v.To
	setRange := func(from, to string) {
		t.Helper()
		eval[bool](b, fmt.Sprintf(`(function () { document.getElementById('from').value = %q;
			var to = document.getElementById('to'); to.value = %q; to.dispatchEvent(new Event('change')); return true; })()`, from, to))
	}
	setRange(to, from)
	errorShows("The API refused the request (400): from: after to")
	setRange(from, to)
	choose(xss)
	if _, err := chromedp.Call(b.ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{
		URLPatterns: []*network.BlockPattern{{URLPattern: apiBase + "/api/*", Block: true}}}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Click(chromedp.ID("refresh")))
	errorShows("Network error")
	if _, err := chromedp.Call(b.ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: []*network.BlockPattern{}}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Click(chromedp.ID("refresh")))
	wait(`document.getElementById('error').hidden`)
	shows(xss)

	// Download CSV: the day rows, as a file.
	dl := t.TempDir()
	if _, err := chromedp.Call(b.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Click(chromedp.ID("csv")))
	csvPath := filepath.Join(dl, "jobpixel-"+xss+"-"+rep.From+"-"+rep.To+".csv")
	wantCSV := "date,page_views,apply_clicks,applications,vacancy_emails,visitors\r\n"
	for _, d := range wantDays {
		wantCSV += strings.Join(d, ",") + "\r\n"
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		got, err := os.ReadFile(csvPath)
		if err == nil && string(got) == wantCSV {
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(dl)
			t.Fatalf("CSV download %s: %q %v (directory: %v), want %q", csvPath, got, err, entries, wantCSV)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Nothing was injected, stored, or put in a URL.
	if got := eval[map[string][]string](b, `window.__dash`); len(got["csp"])+len(got["dialogs"])+len(got["injected"]) != 0 {
		t.Errorf("CSP violations %q, dialogs %q, injected elements %q", got["csp"], got["dialogs"], got["injected"])
	}
	if n := eval[int](b, `document.getElementsByTagName('img').length`); n != 0 {
		t.Errorf("%d img elements in the page", n)
	}
	if c := eval[string](b, `document.cookie`); c != "" {
		t.Errorf("document.cookie = %q", c)
	}
	if c := b.cookies(); len(c) != 0 {
		t.Errorf("the browser holds cookies %v", keys(c))
	}
	b.checkPage() // no page errors, Web Storage empty
	if html := eval[string](b, `location.href + document.documentElement.outerHTML + [].map.call(document.querySelectorAll('input'), function (i) { return i.value; }).join()`); strings.Contains(html, token) {
		t.Error("the page holds the token in its URL or DOM")
	}
	reqs := b.requests("")
	if len(reqs) == 0 {
		t.Fatal("no requests recorded")
	}
	for _, r := range reqs {
		if strings.Contains(r.URL, token) || strings.Contains(r.URL, wrong) || strings.Contains(r.Body, token) {
			t.Errorf("a request carries the token in its URL or body: %s %s", r.Method, r.URL)
		}
		// (data: is Chromium's own date-picker icon.)
		if !strings.HasPrefix(r.URL, apiBase+"/") && !strings.HasPrefix(r.URL, "blob:"+apiBase+"/") && !strings.HasPrefix(r.URL, "data:") {
			t.Errorf("request to another origin: %s %s", r.Method, r.URL)
		}
	}
	mu.Lock()
	gotAuths, gotDialogs := slices.Clone(auths), dialogs
	mu.Unlock()
	if len(gotAuths) < 5 || gotAuths[0] != "Bearer "+wrong {
		t.Errorf("Authorization headers %q, want the wrong token first", gotAuths)
	}
	for _, h := range gotAuths[1:] {
		if h != "Bearer "+token {
			t.Errorf("API request with Authorization %q, want the token", h)
		}
	}
	if gotDialogs != 0 {
		t.Errorf("%d JavaScript dialogs opened", gotDialogs)
	}

	// Forget token: back to the form, nothing of the client left.
	b.do(chromedp.Click(chromedp.ID("forget")), chromedp.WaitVisible(chromedp.ID("token")))
	if v := view(); len(v.Options) != 0 || !eval[bool](b, `document.getElementById('report').hidden`) {
		t.Errorf("after Forget token the page still shows %+v", v)
	}
}

func mustDay(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t.Fatalf("date %q: %v", s, err)
	}
	return d
}

func mapsEqualString(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

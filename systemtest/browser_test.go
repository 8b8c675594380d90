package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/jobpixel/jobpixel/app"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/ingest/tracker"
	"github.com/jobpixel/jobpixel/internal/store"
)

// The browser tests drive the tracker (ingest/tracker) in headless Chromium
// against the whole system: ingest, Kafka, pipeline, ClickHouse. They assert
// the exact events that reach the events table, what the page sent, and the
// cookies the browser holds.

// chromiumPath finds the browser: $JOBPIXEL_CHROMIUM or chromium on PATH
// (Debian's package; make deps installs it). Without it the test skips,
// except under CI, where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("JOBPIXEL_CHROMIUM"), "chromium", "/usr/bin/chromium"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "chromium not found: install it with `apt-get install -y chromium` (make deps does) or set JOBPIXEL_CHROMIUM"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// sentRequest is a request the page made, as the browser reports it.
type sentRequest struct {
	Method, URL string
	Body        string
}

// browser is one headless Chromium with a fresh profile and one tab, which
// records every request the tab sends and every error that reaches the
// page's window.onerror or unhandledrejection.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu   sync.Mutex
	reqs []sentRequest
}

// pageErrors records what reaches the page's global error handlers; it runs
// before any script of every document.
const pageErrors = `window.__jpErrors = [];
window.addEventListener('error', function (e) { window.__jpErrors.push('error: ' + e.message); });
window.addEventListener('unhandledrejection', function (e) { window.__jpErrors.push('rejection: ' + e.reason); });`

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("window-size", "1280,1000"),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelTab := chromedp.NewContext(actx)
	// A budget for the whole session (every wait below has its own, and
	// a loaded machine may need several of them): it only matters when a
	// test hangs.
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // start the browser and the tab
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatal(err)
	}
	maxPost := int64(64 << 10)
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{MaxPostDataSize: &maxPost}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: pageErrors}); err != nil {
		t.Fatal(err)
	}
	return b
}

// record runs in chromedp's event loop: it must be fast and must not call
// the browser.
func (b *browser) record(ev any) {
	e, ok := ev.(*network.EventRequestWillBeSent)
	if !ok || e.Request == nil {
		return
	}
	var body strings.Builder
	for _, p := range e.Request.PostDataEntries {
		body.Write(p.Bytes)
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, sentRequest{Method: e.Request.Method, URL: e.Request.URL, Body: body.String()})
	b.mu.Unlock()
}

// requests returns the recorded requests whose URL starts with prefix.
func (b *browser) requests(prefix string) []sentRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []sentRequest
	for _, r := range b.reqs {
		if strings.HasPrefix(r.URL, prefix) {
			out = append(out, r)
		}
	}
	return out
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page.
func (b *browser) waitFor(cond string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		b.t.Fatalf("waiting for %s: %v", cond, err)
	}
}

// waitRequests waits until at least n requests start with prefix.
func (b *browser) waitRequests(prefix string, n int) []sentRequest {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := b.requests(prefix)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%d requests to %s, want %d", len(got), prefix, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cookies returns every cookie of the browser, whatever its site.
func (b *browser) cookies() map[string]*network.Cookie {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, storage.GetCookies, storage.GetCookiesParams{})
	if err != nil {
		b.t.Fatal(err)
	}
	m := map[string]*network.Cookie{}
	for _, c := range res.Cookies {
		m[c.Name] = c
	}
	return m
}

// checkPage asserts that nothing reached the page's error handlers and that
// the page keeps nothing in Web Storage.
func (b *browser) checkPage() {
	b.t.Helper()
	if errs := eval[[]string](b, `window.__jpErrors`); len(errs) > 0 {
		b.t.Errorf("errors reached the page: %q", errs)
	}
	if n := eval[int](b, `localStorage.length + sessionStorage.length`); n != 0 {
		b.t.Errorf("Web Storage holds %d items, want none", n)
	}
}

// beacon is a POST /e body as the tracker sends it.
type beacon struct {
	C           string            `json:"c"`
	GDPR        string            `json:"gdpr"`
	TCF         string            `json:"tcf"`
	ConsentMode map[string]string `json:"consent_mode"`
	Consent     map[string]string `json:"consent"`
	GPC         string            `json:"gpc"`
	Vid         string            `json:"vid"`
	Gclid       string            `json:"gclid"`
	Gbraid      string            `json:"gbraid"`
	Wbraid      string            `json:"wbraid"`
	Fbc         string            `json:"fbc"`
	Fbp         string            `json:"fbp"`
	LiFatID     string            `json:"li_fat_id"`
	Events      []struct {
		E, U, R, V, Eid, Em string
	} `json:"events"`
}

func beacons(t *testing.T, reqs []sentRequest) []beacon {
	t.Helper()
	var out []beacon
	for _, r := range reqs {
		if r.Method != "POST" {
			t.Errorf("%s %s, want POST", r.Method, r.URL)
			continue
		}
		var b beacon
		if err := json.Unmarshal([]byte(r.Body), &b); err != nil {
			t.Fatalf("beacon body %q: %v", r.Body, err)
		}
		out = append(out, b)
	}
	return out
}

// eventRow is a row of the events table.
type eventRow struct {
	Event     string `ch:"event"`
	EID       string `ch:"client_event_id"`
	Vacancy   string `ch:"vacancy"`
	UTMSource string `ch:"utm_source"`
	URL       string `ch:"url"`
	Consent   uint32 `ch:"consent"`
}

// waitEvents waits until the campaign has exactly the events in want
// (kind → count) in ClickHouse, and checks that no more arrive.
func waitEvents(t *testing.T, a *app.App, campaign string, want map[string]int) []eventRow {
	t.Helper()
	total := 0
	for _, n := range want {
		total += n
	}
	query := func() []eventRow {
		var rows []eventRow
		err := a.Store().Conn().Select(context.Background(), &rows,
			"SELECT toString(event) AS event, client_event_id, vacancy, utm_source, url, consent FROM events WHERE campaign_id = ? ORDER BY received", campaign)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	count := func(rows []eventRow) map[string]int {
		m := map[string]int{}
		for _, r := range rows {
			m[r.Event]++
		}
		return m
	}
	deadline := time.Now().Add(30 * time.Second)
	var rows []eventRow
	for {
		rows = query()
		if len(rows) >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events in ClickHouse %v, want %v", count(rows), want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // a straggler or a double count would show now
	rows = query()
	if got := count(rows); !mapsEqual(got, want) {
		t.Fatalf("events in ClickHouse %v, want exactly %v", got, want)
	}
	return rows
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// checkEIDs asserts that every stored event carries a distinct random
// client event id, and that they are exactly the ids the page sent.
func checkEIDs(t *testing.T, rows []eventRow, sent []string) {
	t.Helper()
	var stored []string
	for _, r := range rows {
		if !hexID.MatchString(r.EID) {
			t.Errorf("%s: client_event_id %q, want 32 hex digits", r.Event, r.EID)
		}
		stored = append(stored, r.EID)
	}
	sort.Strings(stored)
	sent = slices.Clone(sent)
	sort.Strings(sent)
	if !slices.Equal(stored, sent) {
		t.Errorf("stored client event ids %q, sent %q", stored, sent)
	}
	if len(slices.Compact(slices.Clone(stored))) != len(stored) {
		t.Errorf("client event ids repeat: %q", stored)
	}
}

func newCampaign(t *testing.T, a *app.App, name string) string {
	t.Helper()
	ctx := context.Background()
	client, _, err := a.Store().CreateClient(ctx, "Browser "+name)
	if err != nil {
		t.Fatal(err)
	}
	camp, err := a.Store().CreateCampaign(ctx, client.ID, name, store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	return camp.ID
}

// TestBrowser runs the tracker in headless Chromium: the demo vacancy page
// with its TCF banner (accept, refuse, no decision), and test pages on
// another origin for Google Consent Mode with the pixel fallback, the
// explicit consent call with Global Privacy Control, and a hostile page.
func TestBrowser(t *testing.T) {
	chromiumPath(t)                                         // skip before starting the app when there is no browser
	a := startApp(t, func(c *app.Config) { c.Demo = true }) // the demo page is served only with -demo
	ingest := "http://" + a.IngestAddr()
	const email = "jane.doe@example.com"
	const gclid, fbclid = "TeSt-GCLID_1", "IwAR_FbClId-XyZ"
	demoURL := func(campaign, extra string) string {
		return ingest + "/demo/vacancy?c=" + campaign + "&utm_source=newsletter&gclid=" + gclid + "&fbclid=" + fbclid + extra
	}
	// fillAndSend clicks apply, submits the application and the
	// e-mail-me-this-job forms of the demo page.
	fillAndSend := func(b *browser) {
		b.do(
			chromedp.Click(chromedp.ID("apply-button")),
			chromedp.SendKeys(chromedp.ID("apply-name"), "Jane Doe"),
			chromedp.SendKeys(chromedp.ID("apply-email"), email),
			chromedp.Click(chromedp.ID("apply-submit")),
			chromedp.WaitVisible(chromedp.ID("apply-done")),
			chromedp.SendKeys(chromedp.ID("email-address"), email),
			chromedp.Click(chromedp.ID("email-submit")),
			chromedp.WaitVisible(chromedp.ID("email-done")),
		)
		// The page keeps no copy of the address.
		if html := eval[string](b, `document.documentElement.outerHTML + [].map.call(document.querySelectorAll('input'), function (i) { return i.value }).join()`); strings.Contains(html, "jane.doe") {
			t.Error("the page still holds the e-mail address after sending")
		}
	}
	allEvents := map[string]int{"page_view": 1, "apply_click": 1, "application": 1, "vacancy_email": 1}

	t.Run("demo_accept", func(t *testing.T) {
		campaign := newCampaign(t, a, "accept")
		b := newBrowser(t)
		b.do(chromedp.Navigate(demoURL(campaign, "&consent_timeout=60000")), chromedp.WaitVisible(chromedp.ID("jp-consent")))
		b.waitFor(`!!(window.jobpixel && window.jobpixel.loaded)`)
		time.Sleep(500 * time.Millisecond)
		if n := len(b.requests(ingest + "/e")); n != 0 {
			t.Fatalf("%d beacons before consent, want the page view held in memory", n)
		}
		if c := b.cookies(); len(c) != 0 {
			t.Fatalf("cookies before consent: %v", keys(c))
		}
		b.do(chromedp.Click(chromedp.ID("jp-accept")), chromedp.WaitNotVisible(chromedp.ID("jp-consent")))
		b.waitRequests(ingest+"/e", 1)
		fillAndSend(b)
		rows := waitEvents(t, a, campaign, allEvents)

		sent := beacons(t, b.requests(ingest+"/e"))
		cookies := b.cookies()
		vid := cookies["_jpx_vid"]
		if vid == nil || !hexID.MatchString(vid.Value) || vid.Path != "/" || vid.HTTPOnly || vid.SameSite != network.CookieSameSiteLax {
			t.Fatalf("visitor cookie %+v, want _jpx_vid=<32 hex>; Path=/; SameSite=Lax", vid)
		}
		clk := cookies["_jpx_clk"]
		if clk == nil || !strings.Contains(clk.Value, gclid) || !strings.Contains(clk.Value, fbclid) {
			t.Fatalf("click id cookie %+v, want gclid and fbc", clk)
		}
		if len(cookies) != 2 {
			t.Errorf("cookies %v, want _jpx_vid and _jpx_clk only", keys(cookies))
		}
		var eids []string
		fbc := regexp.MustCompile(`^fb\.1\.\d{13}\.` + regexp.QuoteMeta(fbclid) + `$`)
		for _, s := range sent {
			if s.C != campaign || s.GDPR != "1" || s.Vid != vid.Value || s.Gclid != gclid || !fbc.MatchString(s.Fbc) {
				t.Errorf("beacon c=%s gdpr=%q vid=%q gclid=%q fbc=%q; want campaign, gdpr 1, the cookie's vid, gclid and fbc", s.C, s.GDPR, s.Vid, s.Gclid, s.Fbc)
			}
			tc, err := consent.Parse(s.TCF)
			if err != nil {
				t.Fatalf("tcf %q: %v", s.TCF, err)
			}
			for p := 1; p <= 10; p++ {
				if !tc.PurposesConsent.Has(p) {
					t.Errorf("TC string lacks consent for purpose %d", p)
				}
			}
			if !tc.VendorConsents.Has(755) {
				t.Errorf("TC string lacks consent for Google (755): %v", tc.VendorConsents.IDs())
			}
			for _, e := range s.Events {
				eids = append(eids, e.Eid)
				if e.V != tracker.DemoVacancy || !strings.Contains(e.U, "utm_source=newsletter") {
					t.Errorf("%s: v=%q u=%q", e.E, e.V, e.U)
				}
				if wantEm := e.E == "application" || e.E == "vacancy_email"; wantEm != (e.Em == email) {
					t.Errorf("%s: em=%q", e.E, e.Em)
				}
			}
		}
		checkEIDs(t, rows, eids)
		for _, r := range rows {
			if r.Vacancy != tracker.DemoVacancy || r.UTMSource != "newsletter" {
				t.Errorf("stored %s: vacancy %q utm_source %q", r.Event, r.Vacancy, r.UTMSource)
			}
		}
		checkConsent(t, rows, consent.Measurement|consent.AnalyticsStorage|consent.AdStorage|consent.AdUserData|
			consent.AdPersonalization|consent.VendorGoogle|consent.AudienceGoogle|consent.SourceTCF|consent.GDPRInScope, consent.GPC|consent.TCFInvalid)
		// The banner and the tracker used nothing but the jobpixel server.
		for _, r := range b.requests("") {
			if !strings.HasPrefix(r.URL, ingest+"/") {
				t.Errorf("request to another origin: %s %s", r.Method, r.URL)
			}
		}
		b.checkPage()
	})

	t.Run("demo_refuse", func(t *testing.T) {
		campaign := newCampaign(t, a, "refuse")
		b := newBrowser(t)
		b.do(chromedp.Navigate(demoURL(campaign, "&consent_timeout=60000")), chromedp.WaitVisible(chromedp.ID("jp-consent")))
		b.waitFor(`!!(window.jobpixel && window.jobpixel.loaded)`)
		b.do(chromedp.Click(chromedp.ID("jp-refuse")), chromedp.WaitNotVisible(chromedp.ID("jp-consent")))
		b.waitRequests(ingest+"/e", 1)
		fillAndSend(b)
		rows := waitEvents(t, a, campaign, allEvents)
		if c := b.cookies(); len(c) != 0 {
			t.Errorf("cookies after refusal: %v, want none", keys(c))
		}
		var eids []string
		for _, s := range beacons(t, b.requests(ingest+"/e")) {
			if s.GDPR != "1" || s.Vid+s.Gclid+s.Gbraid+s.Wbraid+s.Fbc+s.Fbp+s.LiFatID != "" {
				t.Errorf("beacon after refusal: %+v; want gdpr 1 and no identifier", s)
			}
			tc, err := consent.Parse(s.TCF)
			if err != nil {
				t.Fatalf("tcf %q: %v", s.TCF, err)
			}
			if tc.PurposesConsent != 0 || tc.PurposesLITransparency != 0 || tc.VendorConsents.Len() != 0 || tc.VendorLegitimateInterests.Len() != 0 {
				t.Errorf("refusal TC string grants purposes %v LI %v vendors %v", tc.PurposesConsent.IDs(), tc.PurposesLITransparency.IDs(), tc.VendorConsents.IDs())
			}
			for _, e := range s.Events {
				eids = append(eids, e.Eid)
				if e.Em != "" {
					t.Errorf("%s carries the e-mail address without consent", e.E)
				}
			}
		}
		checkEIDs(t, rows, eids)
		checkConsent(t, rows, consent.Measurement|consent.SourceTCF|consent.GDPRInScope, permissions|consent.TCFInvalid)
		b.checkPage()
	})

	t.Run("demo_consent_timeout", func(t *testing.T) {
		campaign := newCampaign(t, a, "timeout")
		b := newBrowser(t)
		b.do(chromedp.Navigate(demoURL(campaign, "&consent_timeout=300")), chromedp.WaitVisible(chromedp.ID("jp-consent")))
		// No decision: after 300 ms the page view goes anonymously.
		first := beacons(t, b.waitRequests(ingest+"/e", 1))[0]
		if len(first.Events) != 1 || first.Events[0].E != "page_view" || first.GDPR != "1" || first.TCF != "" ||
			first.Vid+first.Gclid+first.Fbc+first.Fbp != "" {
			t.Errorf("anonymous beacon %+v; want the page view, gdpr 1, no TC string, no identifier", first)
		}
		if c := b.cookies(); len(c) != 0 {
			t.Errorf("cookies without a decision: %v", keys(c))
		}
		// A decision after the timeout applies to what comes next.
		b.do(chromedp.Click(chromedp.ID("jp-accept")), chromedp.WaitNotVisible(chromedp.ID("jp-consent")),
			chromedp.Click(chromedp.ID("apply-button")))
		second := beacons(t, b.waitRequests(ingest+"/e", 2))[1]
		if len(second.Events) != 1 || second.Events[0].E != "apply_click" || second.TCF == "" || second.Vid == "" || second.Gclid != gclid {
			t.Errorf("beacon after late consent %+v; want apply_click with TC string, vid and gclid", second)
		}
		rows := waitEvents(t, a, campaign, map[string]int{"page_view": 1, "apply_click": 1})
		checkEIDs(t, rows, []string{first.Events[0].Eid, second.Events[0].Eid})
		for _, r := range rows {
			if r.Event == "page_view" { // gdpr=1 without a TC string: no consent (PRECEDENCE rule 5)
				checkConsent(t, []eventRow{r}, consent.Measurement|consent.GDPRInScope, permissions|consent.SourceTCF)
			} else {
				checkConsent(t, []eventRow{r}, consent.Measurement|consent.AnalyticsStorage|consent.AdUserData|consent.VendorGoogle|consent.SourceTCF, 0)
			}
		}
		b.checkPage()
	})

	// Test pages on another origin, as a customer's job site would be.
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, testPages[r.URL.Path], q.Get("setup"), ingest, q.Get("c"))
	}))
	t.Cleanup(site.Close)

	t.Run("consent_mode_pixel_fallback", func(t *testing.T) {
		campaign := newCampaign(t, a, "consent-mode")
		b := newBrowser(t)
		for i, setup := range []string{
			`delete Navigator.prototype.sendBeacon;`,
			`Navigator.prototype.sendBeacon = function () { window.__beaconCalls = (window.__beaconCalls || 0) + 1; return false; };`,
		} {
			u := site.URL + "/gtag?" + url.Values{"c": {campaign}, "setup": {setup}, "gclid": {gclid}, "utm_source": {"jobboard"}}.Encode()
			b.do(chromedp.Navigate(u))
			b.waitFor(`!!(window.jobpixel && window.jobpixel.loaded)`)
			time.Sleep(400 * time.Millisecond)
			if n := len(b.requests(ingest + "/p.gif")); n != 3*i {
				t.Fatalf("%d pixels before the Consent Mode update, want %d", n, 3*i)
			}
			b.do(chromedp.Click(chromedp.ID("grant")), chromedp.Click(chromedp.ID("apply-inner")))
			eval[bool](b, `jobpixel('track', 'vacancy_email', {em: '`+email+`'}), true`)
			b.waitRequests(ingest+"/p.gif", 3*(i+1))
			if i == 1 && eval[int](b, `window.__beaconCalls`) == 0 {
				t.Error("sendBeacon was not tried")
			}
		}
		if n := len(b.requests(ingest + "/e")); n != 0 {
			t.Errorf("%d beacons, want pixels only", n)
		}
		var eids []string
		for _, r := range b.requests(ingest + "/p.gif") {
			u, err := url.Parse(r.URL)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			eids = append(eids, q.Get("eid"))
			for k, want := range map[string]string{"c": campaign, "v": "job-7", "gclid": gclid, "ad_storage": "granted",
				"analytics_storage": "granted", "ad_user_data": "granted", "ad_personalization": "granted"} {
				if q.Get(k) != want {
					t.Errorf("pixel %s: %s=%q, want %q", q.Get("e"), k, q.Get(k), want)
				}
			}
			if q.Has("em") || strings.Contains(r.URL, "jane") {
				t.Errorf("pixel URL carries the e-mail address: %s", r.URL)
			}
		}
		rows := waitEvents(t, a, campaign, map[string]int{"page_view": 2, "apply_click": 2, "vacancy_email": 2})
		checkEIDs(t, rows, eids)
		for _, r := range rows {
			if r.UTMSource != "jobboard" {
				t.Errorf("stored %s: utm_source %q", r.Event, r.UTMSource)
			}
		}
		if c := b.cookies(); c["_jpx_vid"] == nil || c["_jpx_clk"] == nil {
			t.Errorf("cookies %v after Consent Mode granted storage, want _jpx_vid and _jpx_clk", keys(c))
		}
		checkConsent(t, rows, consent.Measurement|consent.AnalyticsStorage|consent.AdStorage|consent.AdUserData|
			consent.AdPersonalization|consent.VendorGoogle|consent.SourceConsentMode, consent.SourceTCF|consent.GPC)
		b.checkPage()
	})

	t.Run("explicit_consent_and_gpc", func(t *testing.T) {
		campaign := newCampaign(t, a, "explicit")
		b := newBrowser(t)
		load := func(setup string, header network.Headers) beacon {
			n := len(b.requests(ingest + "/e"))
			if _, err := chromedp.Call(b.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: header}); err != nil {
				t.Fatal(err)
			}
			u := site.URL + "/explicit?" + url.Values{"c": {campaign}, "setup": {setup}, "gclid": {gclid}, "fbclid": {fbclid},
				"li_fat_id": {"li-123"}}.Encode()
			b.do(chromedp.Navigate(u))
			got := beacons(t, b.waitRequests(ingest+"/e", n+1))
			return got[n]
		}
		// Global Privacy Control (a GPC browser has the property and sends
		// the header): counted with a visitor id (storage was granted) but
		// no ad identifier and no e-mail address.
		s := load(`Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: function () { return true; }});`,
			network.Headers{"Sec-GPC": "1"})
		gpcEIDs := map[string]bool{}
		for _, e := range s.Events {
			gpcEIDs[e.Eid] = true
		}
		if s.GPC != "1" || s.Vid == "" || s.Gclid+s.Fbc+s.Fbp+s.LiFatID != "" || s.Consent["ad_user_data"] != "granted" || s.Consent["measurement"] != "granted" {
			t.Errorf("beacon under GPC %+v; want gpc 1, the explicit consent, vid, and no ad identifier", s)
		}
		for _, e := range s.Events {
			if e.Em != "" {
				t.Errorf("%s carries the e-mail address under GPC", e.E)
			}
		}
		vid := s.Vid
		if c := b.cookies(); c["_jpx_vid"] == nil || c["_jpx_vid"].Value != vid || c["_jpx_clk"] != nil {
			t.Errorf("cookies under GPC %v; want _jpx_vid only", keys(b.cookies()))
		}
		// Without GPC the same consent lets identifiers travel, and the
		// visitor id survives the reload.
		s = load(``, network.Headers{})
		fbc := regexp.MustCompile(`^fb\.1\.\d{13}\.` + regexp.QuoteMeta(fbclid) + `$`)
		if s.GPC != "" || s.Vid != vid || s.Gclid != gclid || !fbc.MatchString(s.Fbc) || s.Fbp != "fb.1.1700000000000.1234567890" || s.LiFatID != "li-123" {
			t.Errorf("beacon with consent %+v; want the same vid, gclid, fbc, fbp and li_fat_id", s)
		}
		var app int
		for _, e := range s.Events {
			if e.E == "application" {
				app++
				if e.Em != email {
					t.Errorf("application em=%q, want the address", e.Em)
				}
			}
		}
		if app != 1 {
			t.Errorf("%d applications in the first beacon, want the one queued before the script loaded", app)
		}
		rows := waitEvents(t, a, campaign, map[string]int{"page_view": 2, "application": 2})
		for _, r := range rows {
			if gpcEIDs[r.EID] {
				checkConsent(t, []eventRow{r}, consent.Measurement|consent.AnalyticsStorage|consent.SourceExplicit|consent.GPC, consent.AdStorage|consent.AdUserData|consent.VendorGoogle)
			} else {
				checkConsent(t, []eventRow{r}, consent.Measurement|consent.AnalyticsStorage|consent.AdStorage|consent.AdUserData|consent.VendorGoogle|consent.SourceExplicit, consent.GPC)
			}
		}
		b.checkPage()
	})

	t.Run("errors_contained", func(t *testing.T) {
		campaign := newCampaign(t, a, "hostile")
		b := newBrowser(t)
		b.do(chromedp.Navigate(site.URL + "/hostile?" + url.Values{"c": {campaign}}.Encode()))
		b.waitFor(`!!(window.jobpixel && window.jobpixel.loaded) && window.__ownError`)
		b.do(chromedp.Click(chromedp.ID("hostile")), chromedp.Click(chromedp.ID("apply")))
		eval[bool](b, `jobpixel('track', 'application', {get em() { throw new Error('hostile props'); }}), true`)
		eval[bool](b, `jobpixel('track', 'vacancy_email', {em: 'x@example.com'}), true`)
		// sendBeacon throws here, so the events come as pixels.
		b.waitRequests(ingest+"/p.gif", 3)
		waitEvents(t, a, campaign, map[string]int{"page_view": 1, "apply_click": 1, "vacancy_email": 1})
		// The page's own error reached window.onerror (the handler works);
		// nothing from the tracker did.
		if got := eval[[]string](b, `window.__onerror`); !slices.Equal(got, []string{"Uncaught Error: the page's own error"}) {
			t.Errorf("window.onerror saw %q, want only the page's own error", got)
		}
		if got := eval[[]string](b, `window.__jpErrors`); len(got) != 1 {
			t.Errorf("error events %q, want only the page's own error", got)
		}
	})
}

// permissions are the Decision bits that grant something beyond counting.
const permissions = consent.AnalyticsStorage | consent.AdStorage | consent.AdUserData | consent.AdPersonalization |
	consent.VendorGoogle | consent.VendorMeta | consent.VendorLinkedIn |
	consent.AudienceGoogle | consent.AudienceMeta | consent.AudienceLinkedIn

// checkConsent asserts the consent column (the consent.Decision ingest
// resolved) of rows: every bit of want set, no bit of deny set.
func checkConsent(t *testing.T, rows []eventRow, want, deny consent.Decision) {
	t.Helper()
	for _, r := range rows {
		d := consent.Decision(r.Consent)
		if !d.Has(want) || d&deny != 0 {
			t.Errorf("stored %s: consent %v; want %v set and %v clear", r.Event, d, want, deny)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// testPages are the pages of the customer site. Each is a format with the
// page's setup script (%[1]s), the ingest base URL (%[2]s) and the campaign
// (%[3]s).
var testPages = map[string]string{
	// Google Consent Mode: denied by default, granted by the #grant button
	// through gtag, read by the tracker from dataLayer.
	"/gtag": `<!doctype html><html><head><script>%[1]s
window.dataLayer = window.dataLayer || [];
function gtag() { dataLayer.push(arguments); }
gtag('consent', 'default', {ad_storage: 'denied', analytics_storage: 'denied', ad_user_data: 'denied', ad_personalization: 'denied'});
</script>
<script>window.jobpixel=window.jobpixel||function(){(jobpixel.q=jobpixel.q||[]).push(arguments)};</script><script async src="%[2]s/t.js" data-campaign="%[3]s" data-vacancy="job-7" data-consent-timeout="60000"></script>
</head><body>
<button id="grant" onclick="gtag('consent', 'update', {ad_storage: 'granted', analytics_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted'})">Accept</button>
<a href="#" id="apply" data-jobpixel="apply"><span id="apply-inner">Apply</span></a>
</body></html>`,

	// The page's own consent call, and an application tracked, both before
	// the script loads; Meta's _fbp cookie is already there.
	"/explicit": `<!doctype html><html><head><script>%[1]s
document.cookie = '_fbp=fb.1.1700000000000.1234567890; Path=/';
window.jobpixel=window.jobpixel||function(){(jobpixel.q=jobpixel.q||[]).push(arguments)};
jobpixel('consent', {measurement: 'granted', analytics_storage: 'granted', ad_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted'});
jobpixel('track', 'application', {em: 'jane.doe@example.com'});
</script><script async src="%[2]s/t.js" data-campaign="%[3]s" data-vacancy="job-9"></script>
</head><body><p>Job</p></body></html>`,

	// Everything the tracker touches is broken: the CMP, dataLayer,
	// document.cookie, sendBeacon, the properties handed to it, and an
	// element it inspects on click.
	"/hostile": `<!doctype html><html><head><script>%[1]s
window.__onerror = [];
window.onerror = function (msg) { window.__onerror.push(String(msg)); };
window.__tcfapi = function () { throw new Error('broken CMP'); };
var dl = []; Object.defineProperty(dl, 0, {get: function () { throw new Error('broken dataLayer'); }});
window.dataLayer = dl;
Object.defineProperty(document, 'cookie', {get: function () { throw new Error('no cookies'); }, set: function () { throw new Error('no cookies'); }});
Navigator.prototype.sendBeacon = function () { throw new Error('broken beacon'); };
window.jobpixel=window.jobpixel||function(){(jobpixel.q=jobpixel.q||[]).push(arguments)};
jobpixel('consent', {measurement: 'granted', analytics_storage: 'granted', ad_storage: 'granted', ad_user_data: 'granted'});
jobpixel('consent', {get ad_storage() { throw new Error('hostile consent'); }});
jobpixel('track', 'apply_click', {get v() { throw new Error('hostile props'); }});
jobpixel(null);
setTimeout(function () { window.__ownError = true; throw new Error("the page's own error"); }, 0);
</script><script async src="%[2]s/t.js" data-campaign="%[3]s" data-vacancy="job-13"></script>
</head><body>
<span id="hostile" data-jobpixel="apply">hostile</span>
<a href="#" id="apply" data-jobpixel="apply">Apply</a>
<script>document.getElementById('hostile').getAttribute = function () { throw new Error('hostile element'); };</script>
</body></html>`,
}

package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/jobpixel/jobpixel/app"
	"github.com/jobpixel/jobpixel/internal/store"
)

// geoDB writes a GeoIP2-layout City database mapping each CIDR to
// "CC/REGION" and returns its path.
func geoDB(t *testing.T, nets map[string]string) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, loc := range nets {
		cc, region, _ := strings.Cut(loc, "/")
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(cc)},
			"subdivisions": mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(region)}}}
		if err := w.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBreakdowns sends hits with known countries, devices, vacancies and
// sources through ingest and reads every breakdown, the funnel and the
// CSV files through the client API.
func TestBreakdowns(t *testing.T) {
	awayFromMidnight(t, 2*time.Minute)
	geo := geoDB(t, map[string]string{"203.0.113.0/24": "NL/NH", "198.51.100.0/24": "DE/BE", "192.0.2.0/24": "DE/BY"})
	a := startApp(t, func(c *app.Config) { c.GeoIPDB = geo })
	ctx := context.Background()
	st := a.Store()
	cl, token, err := st.CreateClient(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	camp, err := st.CreateCampaign(ctx, cl.ID, "Nurses", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	const (
		desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
		iphone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
		bot     = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
		page    = "https://jobs.example.com/job"
		hostile = `=HYPERLINK("https://evil.example","x")`
		vacancy = `v,"1"`
	)
	send := func(ip, ua, event, vac, pageURL, ref string, extra url.Values) {
		t.Helper()
		q := url.Values{"c": {camp.ID}, "e": {event}, "v": {vac}, "u": {pageURL}, "r": {ref},
			"ad_storage": {"granted"}, "analytics_storage": {"granted"}, "ad_user_data": {"granted"}, "ad_personalization": {"granted"}}
		for k, v := range extra {
			q[k] = v
		}
		req, _ := http.NewRequest("GET", "http://"+a.IngestAddr()+"/p.gif?"+q.Encode(), nil)
		req.Header.Set("X-Forwarded-For", ip)
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Jobpixel-Reject") != "" {
			t.Fatalf("hit %s from %s: %d %q", event, ip, resp.StatusCode, resp.Header.Get("X-Jobpixel-Reject"))
		}
	}
	// A Google ad click (NL, desktop) that applies.
	ad := page + "?utm_source=google&utm_medium=cpc&utm_campaign=winter"
	gclid := url.Values{"gclid": {"Cj0KCQ"}}
	send("203.0.113.10", desktop, "page_view", vacancy, ad, "", gclid)
	send("203.0.113.10", desktop, "apply_click", vacancy, ad, "", gclid)
	send("203.0.113.10", desktop, "application", vacancy, ad, "", gclid)
	// From a job board (DE/BE, mobile).
	send("198.51.100.20", iphone, "page_view", "v2", page, "https://de.indeed.com/viewjob", nil)
	// A newsletter with a hostile utm_source (DE/BY, mobile) that clicks apply.
	mail := page + "?utm_source=" + url.QueryEscape(hostile) + "&utm_medium=email"
	send("192.0.2.30", iphone, "page_view", "v2", mail, "", nil)
	send("192.0.2.30", iphone, "apply_click", "v2", mail, "", nil)
	// Direct, no GeoIP entry (desktop), and a bot.
	send("100.64.0.1", desktop, "page_view", "", page, "", nil)
	send("100.64.0.2", bot, "page_view", "v2", page, "", nil)
	waitReport(t, st, cl.ID, camp.ID, 4)

	get := func(query string, accept string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+a.APIAddr()+"/api/v1/campaigns/"+camp.ID+"/report"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	monday := mondayOf(time.Now()).Format(time.DateOnly)
	rates := func(f store.Funnel) string {
		r := func(p *float64) string {
			if p == nil {
				return "-"
			}
			return fmt.Sprint(*p)
		}
		return r(f.ViewToClick) + " " + r(f.ClickToApplication) + " " + r(f.ViewToApplication)
	}
	line := func(v string, c store.Counts, f store.Funnel) string {
		return fmt.Sprintf("%s %d/%d/%d/%d v%d [%s]; ", v, c.PageViews, c.ApplyClicks, c.Applications, c.VacancyEmails, c.Visitors, rates(f))
	}
	const all = "bots 1 totals 4/2/1/0 v4 [0.5 0.5 0.25]; "
	for query, want := range map[string]string{
		"dimension=day":                       all + today + " 4/2/1/0 v4 [0.5 0.5 0.25]; ",
		"dimension=week":                      all + monday + " 4/2/1/0 v4 [0.5 0.5 0.25]; ",
		"dimension=country":                   all + "DE 2/1/0/0 v2 [0.5 0 0]; (none) 1/0/0/0 v1 [0 - 0]; NL 1/1/1/0 v1 [1 1 1]; ",
		"dimension=region":                    all + "(none) 1/0/0/0 v1 [0 - 0]; BE 1/0/0/0 v1 [0 - 0]; BY 1/1/0/0 v1 [1 0 0]; NH 1/1/1/0 v1 [1 1 1]; ",
		"dimension=device":                    all + "desktop 2/1/1/0 v2 [0.5 1 0.5]; mobile 2/1/0/0 v2 [0.5 0 0]; ",
		"dimension=browser":                   all + "chrome 2/1/1/0 v2 [0.5 1 0.5]; safari 2/1/0/0 v2 [0.5 0 0]; ",
		"dimension=vacancy":                   all + "v2 2/1/0/0 v2 [0.5 0 0]; (none) 1/0/0/0 v1 [0 - 0]; " + vacancy + " 1/1/1/0 v1 [1 1 1]; ",
		"dimension=vacancy&limit=1":           all + "v2 2/1/0/0 v2 [0.5 0 0]; (other) 2/1/1/0 v2 [0.5 1 0.5]; ",
		"dimension=utm_source":                all + "(none) 2/0/0/0 v2 [0 - 0]; " + hostile + " 1/1/0/0 v1 [1 0 0]; google 1/1/1/0 v1 [1 1 1]; ",
		"dimension=utm_medium":                all + "(none) 2/0/0/0 v2 [0 - 0]; cpc 1/1/1/0 v1 [1 1 1]; email 1/1/0/0 v1 [1 0 0]; ",
		"dimension=utm_campaign":              all + "(none) 3/1/0/0 v3 [0.3333 0 0]; winter 1/1/1/0 v1 [1 1 1]; ",
		"dimension=channel":                   all + "direct 1/0/0/0 v1 [0 - 0]; email 1/1/0/0 v1 [1 0 0]; job_board 1/0/0/0 v1 [0 - 0]; paid_google 1/1/1/0 v1 [1 1 1]; ",
		"dimension=channel&vacancy=v2":        "bots 1 totals 2/1/0/0 v2 [0.5 0 0]; email 1/1/0/0 v1 [1 0 0]; job_board 1/0/0/0 v1 [0 - 0]; ",
		"dimension=country&channel=job_board": "bots 0 totals 1/0/0/0 v1 [0 - 0]; DE 1/0/0/0 v1 [0 - 0]; ",
	} {
		status, _, body := get("/breakdown?"+query, "")
		var b store.Breakdown
		if status != 200 || json.Unmarshal([]byte(body), &b) != nil {
			t.Fatalf("%s: %d %s", query, status, body)
		}
		got := fmt.Sprintf("bots %d ", b.Bots) + line("totals", b.Totals, b.Funnel)
		for _, r := range b.Rows {
			got += line(r.Value, r.Counts, r.Funnel)
		}
		if b.Other != nil {
			got += line(b.Other.Value, b.Other.Counts, b.Other.Funnel)
		}
		if got != want {
			t.Errorf("%s:\n got %s\nwant %s", query, got, want)
		}
	}

	for query, want := range map[string]string{
		"?dimension=city":            `{"error":"dimension: unknown \"city\" (want day, week, country, region, device, browser, vacancy, utm_source, utm_medium, utm_campaign, channel)"}`,
		"?dimension=day&source=x":    `{"error":"source: unknown parameter (want dimension, from, to, limit, vacancy, channel, format)"}`,
		"?dimension=day&channel=tv":  `{"error":"channel: unknown \"tv\" (want paid_google, paid_meta, paid_linkedin, paid_other, organic_search, social, email, job_board, referral, internal, direct, (unknown))"}`,
		"?dimension=day&limit=9999":  `{"error":"limit: want 1 to 500"}`,
		"?dimension=day&format=xlsx": `{"error":"format: want json or csv"}`,
	} {
		if status, _, body := get("/breakdown"+query, ""); status != 400 || strings.TrimSpace(body) != want {
			t.Errorf("%s: %d %s, want 400 %s", query, status, body, want)
		}
	}

	// CSV, byte for byte: hostile values stay text.
	status, h, body := get("/breakdown?dimension=vacancy&format=csv", "")
	wantCSV := "vacancy,page_views,apply_clicks,applications,vacancy_emails,visitors,view_to_click,click_to_application,view_to_application\r\n" +
		"v2,2,1,0,0,2,0.5,0,0\r\n(none),1,0,0,0,1,0,,0\r\n\"v,\"\"1\"\"\",1,1,1,0,1,1,1,1\r\n(total),4,2,1,0,4,0.5,0.5,0.25\r\n"
	if status != 200 || body != wantCSV || h.Get("Content-Type") != "text/csv; charset=utf-8" ||
		h.Get("Content-Disposition") != fmt.Sprintf(`attachment; filename="%s-vacancy-%s-%s.csv"`, camp.ID,
			time.Now().UTC().AddDate(0, 0, -29).Format(time.DateOnly), today) {
		t.Errorf("vacancy CSV: %d %v\n%q\nwant\n%q", status, h, body, wantCSV)
	}
	status, _, body = get("/breakdown?dimension=utm_source", "text/csv")
	wantCSV = "utm_source,page_views,apply_clicks,applications,vacancy_emails,visitors,view_to_click,click_to_application,view_to_application\r\n" +
		"(none),2,0,0,0,2,0,,0\r\n\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"x\"\")\",1,1,0,0,1,1,0,0\r\ngoogle,1,1,1,0,1,1,1,1\r\n" +
		"(total),4,2,1,0,4,0.5,0.5,0.25\r\n"
	if status != 200 || body != wantCSV {
		t.Errorf("utm_source CSV (Accept: text/csv): %d\n%q\nwant\n%q", status, body, wantCSV)
	}
	status, h, body = get("?format=csv", "")
	wantCSV = "section,value,page_views,apply_clicks,applications,vacancy_emails,visitors,bots\r\n" +
		"total,,4,2,1,0,4,1\r\nday," + today + ",4,2,1,0,4,\r\n" +
		"source,(direct),1,0,0,0,1,\r\nsource,\"'=hyperlink(\"\"https://evil.example\"\",\"\"x\"\")\",1,1,0,0,1,\r\n" +
		"source,de.indeed.com,1,0,0,0,1,\r\nsource,google,1,1,1,0,1,\r\n"
	if status != 200 || body != wantCSV || !strings.HasSuffix(h.Get("Content-Disposition"), `-report-`+
		time.Now().UTC().AddDate(0, 0, -29).Format(time.DateOnly)+"-"+today+`.csv"`) {
		t.Errorf("report CSV: %d %v\n%q\nwant\n%q", status, h, body, wantCSV)
	}
}

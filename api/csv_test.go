package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

func TestCSVCell(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := csvCell(in); got != want {
			t.Errorf("csvCell(%q) = %q, want %q", in, got, want)
		}
	}
	f(`=HYPERLINK("https://evil.example","x")`, `'=HYPERLINK("https://evil.example","x")`)
	f("+1", "'+1")
	f("-2+3", "'-2+3")
	f("@SUM(A1)", "'@SUM(A1)")
	f("\tx", "'\tx")
	f("\rx", "'\rx")
	f("news=letter", "news=letter")
	f("", "")
	f("bad\xffbyte", "bad\uFFFDbyte")
}

func TestBreakdownCSV(t *testing.T) {
	half, one := 0.5, 1.0
	b := store.Breakdown{Dimension: "vacancy", Rows: []store.BreakdownRow{
		{Value: `job "7", nights`, Counts: store.Counts{PageViews: 2, ApplyClicks: 1, Visitors: 2},
			Funnel: store.Funnel{ViewToClick: &half, ClickToApplication: new(float64), ViewToApplication: new(float64)}},
		{Value: "=HYPERLINK(\"x\")\n", Counts: store.Counts{PageViews: 1, ApplyClicks: 1, Applications: 1, Visitors: 1},
			Funnel: store.Funnel{ViewToClick: &one, ClickToApplication: &one, ViewToApplication: &one}},
	}, Other: &store.BreakdownRow{Value: "(other)", Counts: store.Counts{VacancyEmails: 1, Visitors: 1}},
		Totals: store.Counts{PageViews: 3, ApplyClicks: 2, Applications: 1, VacancyEmails: 1, Visitors: 4}}
	b.Funnel = store.FunnelOf(b.Totals)
	w := httptest.NewRecorder()
	writeCSV(w, "cmp_x-vacancy-2026-11-01-2026-11-30.csv", breakdownCSV(b))
	want := "vacancy,page_views,apply_clicks,applications,vacancy_emails,visitors,view_to_click,click_to_application,view_to_application\r\n" +
		"\"job \"\"7\"\", nights\",2,1,0,0,2,0.5,0,0\r\n" +
		"\"'=HYPERLINK(\"\"x\"\")\r\n\",1,1,1,0,1,1,1,1\r\n" + // a newline in a cell is CRLF too
		"(other),0,0,0,1,1,,,\r\n" +
		"(total),3,2,1,1,4,0.6667,0.5,0.3333\r\n"
	if got := w.Body.String(); got != want {
		t.Errorf("body:\n%q\nwant\n%q", got, want)
	}
	h := w.Header()
	if h.Get("Content-Type") != "text/csv; charset=utf-8" ||
		h.Get("Content-Disposition") != `attachment; filename="cmp_x-vacancy-2026-11-01-2026-11-30.csv"` {
		t.Errorf("headers %v", h)
	}
}

func TestWantCSV(t *testing.T) {
	f := func(query, accept string, want bool, wantErr bool) {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/x?"+query, nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		got, err := wantCSV(r)
		if got != want || (err != nil) != wantErr {
			t.Errorf("wantCSV(%q, Accept %q) = %v, %v", query, accept, got, err)
		}
	}
	f("", "", false, false)
	f("format=csv", "", true, false)
	f("format=json", "text/csv", false, false)
	f("", "application/json, text/csv;q=0.9", true, false)
	f("", "text/csvx", false, false)
	f("format=xml", "", false, true)
}

func TestBreakdownQuery(t *testing.T) {
	a := &API{now: func() time.Time { return time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC) }}
	f := func(query, wantErr string) store.BreakdownQuery {
		t.Helper()
		q, err := a.breakdownQuery(httptest.NewRequest(http.MethodGet, "/x?"+query, nil))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != wantErr {
			t.Errorf("%q: error %q, want %q", query, got, wantErr)
		}
		return q
	}
	const dims = "day, week, country, region, device, browser, vacancy, utm_source, utm_medium, utm_campaign, channel"
	f("", `dimension: unknown "" (want `+dims+`)`)
	f("dimension=city", `dimension: unknown "city" (want `+dims+`)`)
	f("dimension=day&sort=x", "sort: unknown parameter (want dimension, from, to, limit, vacancy, channel, format)")
	f("dimension=day&limit=0", "limit: want 1 to 500")
	f("dimension=day&limit=501", "limit: want 1 to 500")
	f("dimension=day&channel=tv", `channel: unknown "tv" (want paid_google, paid_meta, paid_linkedin, paid_other, organic_search, social, email, job_board, referral, internal, direct, (unknown))`)
	f("dimension=day&from=2026-13-01", "from: want YYYY-MM-DD")
	f("dimension=day&vacancy="+strings.Repeat("v", 257), "vacancy: longer than 256 bytes")
	f("dimension=day&vacancy="+strings.Repeat("v", 256), "")
	q := f("dimension=channel&limit=500&vacancy=v,1&channel=(unknown)&from=2026-11-01&to=2026-11-30&format=csv", "")
	if q.Dimension != "channel" || q.Limit != 500 || q.Vacancy != "v,1" || q.Channel != store.ChannelUnknown ||
		q.From.Format(time.DateOnly) != "2026-11-01" || q.To.Format(time.DateOnly) != "2026-11-30" {
		t.Errorf("query %+v", q)
	}
}

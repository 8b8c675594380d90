package api

import (
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

func day(s string) time.Time {
	d, err := parseDay(s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestPartnerAnonymise(t *testing.T) {
	weeks := []time.Time{day("2026-11-02"), day("2026-11-09"), day("2026-11-16"), day("2026-11-23")}
	rows := []store.WeekCounts{
		{Week: day("2026-10-26"), PageViews: 500, Visitors: 400},                                 // not asked for
		{Week: day("2026-11-02"), PageViews: 37, ApplyClicks: 8, Applications: 4, Visitors: 12},  // published
		{Week: day("2026-11-09"), PageViews: 90, ApplyClicks: 30, Applications: 20, Visitors: 9}, // one short: suppressed
		// 2026-11-16: no traffic at all: suppressed just the same
		{Week: day("2026-11-23"), PageViews: 10, ApplyClicks: 5, Applications: 1, Visitors: 10}, // exactly k
	}
	pub, suppressed, totals := anonymise(weeks, rows, 10)
	want := []partnerWeek{
		{Week: "2026-11-02", partnerCounts: partnerCounts{PageViews: 35, ApplyClicks: 5, Applications: 0, Visitors: 10}},
		{Week: "2026-11-23", partnerCounts: partnerCounts{PageViews: 10, ApplyClicks: 5, Applications: 0, Visitors: 10}},
	}
	if !reflect.DeepEqual(pub, want) {
		t.Fatalf("published %+v, want %+v", pub, want)
	}
	if suppressed != 2 {
		t.Fatalf("suppressed %d, want 2 (one small week, one empty week)", suppressed)
	}
	if want := (partnerCounts{PageViews: 45, ApplyClicks: 10, Applications: 0, Visitors: 20}); totals != want {
		t.Fatalf("totals %+v, want %+v (the sum of the published rounded weeks)", totals, want)
	}

	// A higher k publishes a subset of the same week values: two shares of
	// one campaign with different thresholds cannot be differenced.
	pub20, sup20, _ := anonymise(weeks, rows, 20)
	if len(pub20) != 0 || sup20 != 4 {
		t.Fatalf("k=20: %+v, %d suppressed", pub20, sup20)
	}
	pub11, _, _ := anonymise(weeks, rows, 11)
	if len(pub11) != 1 || pub11[0] != want[0] {
		t.Fatalf("k=11: %+v", pub11)
	}

	// No weeks: an empty list, not null.
	if pub, sup, tot := anonymise(nil, rows, 10); pub == nil || len(pub) != 0 || sup != 0 || tot != (partnerCounts{}) {
		t.Fatalf("no weeks: %+v %d %+v", pub, sup, tot)
	}
}

// TestPartnerAnonymiseInvariants checks, over many crafted weeks, that
// every published figure is a multiple of the rounding, never above the
// raw figure, that no week under the threshold is published, and that the
// totals are exactly the sum of the published weeks.
func TestPartnerAnonymiseInvariants(t *testing.T) {
	var weeks []time.Time
	var rows []store.WeekCounts
	w := day("2025-01-06")
	for i := range 60 {
		weeks = append(weeks, w)
		if i%7 != 3 { // some weeks have no rows
			rows = append(rows, store.WeekCounts{Week: w, PageViews: uint64(i * 7), ApplyClicks: uint64(i * 3),
				Applications: uint64(i), Visitors: uint64(i)})
		}
		w = w.AddDate(0, 0, 7)
	}
	for _, k := range []uint32{10, 13, 25, 1000} {
		pub, sup, tot := anonymise(weeks, rows, k)
		if len(pub)+sup != len(weeks) {
			t.Fatalf("k=%d: %d published + %d suppressed != %d weeks", k, len(pub), sup, len(weeks))
		}
		var sum partnerCounts
		for _, p := range pub {
			raw := rows[0]
			for _, r := range rows {
				if r.Week.Format(time.DateOnly) == p.Week {
					raw = r
				}
			}
			if raw.Visitors < uint64(k) {
				t.Fatalf("k=%d: week %s with %d visitors published", k, p.Week, raw.Visitors)
			}
			for _, v := range [][2]uint64{{p.PageViews, raw.PageViews}, {p.ApplyClicks, raw.ApplyClicks},
				{p.Applications, raw.Applications}, {p.Visitors, raw.Visitors}} {
				if v[0]%PartnerRounding != 0 || v[0] > v[1] || v[1]-v[0] >= PartnerRounding {
					t.Fatalf("k=%d: week %s: %d published for %d", k, p.Week, v[0], v[1])
				}
			}
			sum.PageViews += p.PageViews
			sum.ApplyClicks += p.ApplyClicks
			sum.Applications += p.Applications
			sum.Visitors += p.Visitors
		}
		if sum != tot {
			t.Fatalf("k=%d: totals %+v, sum of weeks %+v", k, tot, sum)
		}
	}
}

func TestPartnerSettledWeeks(t *testing.T) {
	for _, c := range []struct {
		from, to string
		now      time.Time
		want     []string
	}{
		// A Wednesday start still reports its whole week; the week of to
		// is not over, the week before only settles on Tuesday.
		{"2026-11-04", "2026-11-24", day("2026-11-24"), []string{"2026-11-02", "2026-11-09", "2026-11-16"}},
		{"2026-11-04", "2026-11-24", day("2026-11-24").Add(-time.Second), []string{"2026-11-02", "2026-11-09"}},
		// A range inside one week reports that whole week.
		{"2026-11-11", "2026-11-11", day("2026-12-01"), []string{"2026-11-09"}},
		// Sunday to Monday spans two weeks.
		{"2026-11-08", "2026-11-09", day("2026-12-01"), []string{"2026-11-02", "2026-11-09"}},
		// Nothing settled yet.
		{"2026-11-23", "2026-11-25", day("2026-11-25"), nil},
	} {
		var got []string
		for _, w := range settledWeeks(day(c.from), day(c.to), c.now) {
			if w.Weekday() != time.Monday {
				t.Fatalf("%v is not a Monday", w)
			}
			got = append(got, w.Format(time.DateOnly))
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("settledWeeks(%s, %s, %v) = %v, want %v", c.from, c.to, c.now, got, c.want)
		}
	}
}

func TestPartnerDateRange(t *testing.T) {
	now := day("2026-11-25").Add(15 * time.Hour)
	from, to, err := dateRange(url.Values{}, now)
	if err != nil || from.Format(time.DateOnly) != "2026-10-27" || to.Format(time.DateOnly) != "2026-11-25" {
		t.Fatalf("defaults: %v %v %v", from, to, err)
	}
	for _, q := range []string{"from=2026-13-01", "to=yesterday", "from=2026-11-25&to=2026-11-24", "from=2025-01-01&to=2026-11-24"} {
		v, _ := url.ParseQuery(q)
		if _, _, err := dateRange(v, now); err == nil {
			t.Errorf("%s accepted", q)
		}
	}
}

func TestPartnerShareInput(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(n int64) *int64 { return &n }
	long := ""
	for range 101 {
		long += "é"
	}
	for _, c := range []struct {
		in    shareInput
		field string // "" when valid
		k     uint32
	}{
		{shareInput{Name: str("Jobboard X")}, "", 10},
		{shareInput{Name: str(" Jobboard X "), MinVisitors: num(25)}, "", 25},
		{shareInput{Name: str(long[:200])}, "", 10}, // 100 characters
		{shareInput{Name: str(long)}, "name", 0},
		{shareInput{Name: str("  ")}, "name", 0},
		{shareInput{Name: str("a\nb")}, "name", 0},
		{shareInput{}, "name", 0},
		{shareInput{Name: str("x"), MinVisitors: num(5)}, "min_visitors", 0},
		{shareInput{Name: str("x"), MinVisitors: num(-1)}, "min_visitors", 0},
		{shareInput{Name: str("x"), MinVisitors: num(1 << 40)}, "min_visitors", 0},
	} {
		_, k, err := c.in.validate()
		switch {
		case c.field == "" && (err != nil || k != c.k):
			t.Errorf("%+v: %d %v", c.in, k, err)
		case c.field != "" && (err == nil || err.Error()[:len(c.field)+1] != c.field+":"):
			t.Errorf("%+v: %v, want an error about %s", c.in, err, c.field)
		}
	}
}

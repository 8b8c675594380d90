package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
	"github.com/jobpixel/jobpixel/schemas"
)

// TestBreakdown stores known events and checks each dimension's rows, the
// "other" row, the filters, the funnel and the bots.
func TestBreakdown(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	cl, _, err := st.CreateClient(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	cmp, err := st.CreateCampaign(ctx, cl.ID, "Nurses", store.CampaignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mon := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // a Monday
	type ev struct {
		day             int // days after mon
		event, country  string
		device, vacancy string
		channel, utm    string
		visitor         byte
		bot             bool
	}
	devices := map[string]uint8{"desktop": 1, "mobile": 2}
	evs := []ev{
		{0, "page_view", "NL", "desktop", "v1", store.ChannelEmail, "news", 1, false},
		{0, "apply_click", "NL", "desktop", "v1", store.ChannelEmail, "news", 1, false},
		{0, "application", "NL", "desktop", "v1", store.ChannelEmail, "news", 1, false},
		{1, "page_view", "NL", "mobile", "v1", store.ChannelPaidGoogle, "", 2, false},
		{1, "page_view", "DE", "mobile", "v2", store.ChannelPaidGoogle, "", 3, false},
		{7, "page_view", "DE", "mobile", "v2", "", "=HYPERLINK(1)", 4, false},
		{7, "apply_click", "DE", "mobile", "v2", "", "=HYPERLINK(1)", 4, false},
		{8, "page_view", "", "desktop", "", store.ChannelDirect, "", 5, false},
		{8, "vacancy_email", "BE", "desktop", "v3", store.ChannelDirect, "", 6, false},
		{8, "page_view", "NL", "bot", "v1", store.ChannelDirect, "", 0, true},
	}
	var rows []store.Event
	for i, e := range evs {
		r := store.Event{Received: mon.AddDate(0, 0, e.day), ClientID: cl.ID, CampaignID: cmp.ID, Event: e.event,
			Vacancy: e.vacancy, Channel: e.channel, UTMSource: e.utm, Device: devices[e.device], Bot: e.bot, KafkaOffset: int64(i)}
		if e.device == "bot" {
			r.Device = 4
		}
		copy(r.Country[:], e.country)
		r.ID[0], r.Visitor[0] = byte(i+1), e.visitor
		rows = append(rows, r)
	}
	if err := st.InsertEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	from, to := mon.Truncate(24*time.Hour), mon.AddDate(0, 0, 13)
	f := func(q store.BreakdownQuery, want string) {
		t.Helper()
		q.From, q.To = from, to
		b, err := st.Breakdown(ctx, cl.ID, cmp.ID, q)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("bots %d totals %s;", b.Bots, counts(b.Totals, b.Funnel))
		for _, r := range b.Rows {
			got += fmt.Sprintf(" %s %s;", r.Value, counts(r.Counts, r.Funnel))
		}
		if b.Other != nil {
			got += fmt.Sprintf(" other %s;", counts(b.Other.Counts, b.Other.Funnel))
		}
		if got != want {
			t.Errorf("%+v:\n got %s\nwant %s", q, got, want)
		}
	}
	const all = "bots 1 totals 5/2/1/1 v6 [0.4 0.5 0.2];"
	f(store.BreakdownQuery{Dimension: "day"}, all+" 2026-11-23 1/1/1/0 v1 [1 1 1]; 2026-11-24 2/0/0/0 v2 [0 - 0];"+
		" 2026-11-30 1/1/0/0 v1 [1 0 0]; 2026-12-01 1/0/0/1 v2 [0 - 0];")
	f(store.BreakdownQuery{Dimension: "week", Limit: 1}, all+" 2026-11-23 3/1/1/0 v3 [0.3333 1 0.3333]; 2026-11-30 2/1/0/1 v3 [0.5 0 0];")
	f(store.BreakdownQuery{Dimension: "country"}, all+" DE 2/1/0/0 v2 [0.5 0 0]; NL 2/1/1/0 v2 [0.5 1 0.5]; (none) 1/0/0/0 v1 [0 - 0]; BE 0/0/0/1 v1 [- - -];")
	f(store.BreakdownQuery{Dimension: "country", Limit: 2}, all+" DE 2/1/0/0 v2 [0.5 0 0]; NL 2/1/1/0 v2 [0.5 1 0.5]; other 1/0/0/1 v2 [0 - 0];")
	f(store.BreakdownQuery{Dimension: "device"}, all+" mobile 3/1/0/0 v3 [0.3333 0 0]; desktop 2/1/1/1 v3 [0.5 1 0.5];")
	f(store.BreakdownQuery{Dimension: "vacancy", Limit: 1}, all+" v1 2/1/1/0 v2 [0.5 1 0.5]; other 3/1/0/1 v4 [0.3333 0 0];")
	f(store.BreakdownQuery{Dimension: "channel"}, all+" paid_google 2/0/0/0 v2 [0 - 0]; (unknown) 1/1/0/0 v1 [1 0 0]; direct 1/0/0/1 v2 [0 - 0]; email 1/1/1/0 v1 [1 1 1];")
	f(store.BreakdownQuery{Dimension: "utm_source", Channel: store.ChannelUnknown}, "bots 0 totals 1/1/0/0 v1 [1 0 0]; =HYPERLINK(1) 1/1/0/0 v1 [1 0 0];")
	f(store.BreakdownQuery{Dimension: "channel", Vacancy: "v1"}, "bots 1 totals 2/1/1/0 v2 [0.5 1 0.5]; email 1/1/1/0 v1 [1 1 1]; paid_google 1/0/0/0 v1 [0 - 0];")
	f(store.BreakdownQuery{Dimension: "browser", Vacancy: "nope"}, "bots 0 totals 0/0/0/0 v0 [- - -];")
}

// counts prints c as views/clicks/applications/e-mails, visitors and the
// funnel's three rates ("-" for none).
func counts(c store.Counts, f store.Funnel) string {
	r := func(p *float64) string {
		if p == nil {
			return "-"
		}
		b, _ := json.Marshal(*p)
		return string(b)
	}
	return fmt.Sprintf("%d/%d/%d/%d v%d [%s %s %s]", c.PageViews, c.ApplyClicks, c.Applications, c.VacancyEmails, c.Visitors,
		r(f.ViewToClick), r(f.ClickToApplication), r(f.ViewToApplication))
}

// TestAddColumnMigrationReruns: an ADD COLUMN migration interrupted after
// its statement ran (the version not yet recorded) applies again.
func TestAddColumnMigrationReruns(t *testing.T) {
	st := testenv.Store(t)
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var stmt string
	for _, m := range ms {
		if m.Name == "channel" {
			stmt = m.Statements[0]
		}
	}
	err = st.Conn().Exec(context.Background(), stmt)
	if err == nil || !store.ColumnAdded(stmt, err) {
		t.Fatalf("re-running %q: %v, want the column-exists error taken as applied", stmt, err)
	}
	if store.ColumnAdded("ALTER TABLE events DROP COLUMN nope", err) {
		t.Fatal("another statement's error taken as applied")
	}
}

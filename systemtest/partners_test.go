package systemtest

import (
	"context"
	"encoding/json"
	"github.com/jobpixel/jobpixel/app"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

func jsonKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sameKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := jsonKeys(m); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s has keys %v, want exactly %v", what, got, want)
	}
}

// mondayOf returns the Monday (UTC) of t's ISO week.
func mondayOf(t time.Time) time.Time {
	d := t.UTC().Truncate(24 * time.Hour)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// seedWeek inserts, for campaignID, visitors distinct visitors spread over
// the days of the week starting at monday: each has a page view, every
// visitor i also has extra page views, apply clicks and applications as
// the counts ask. seed makes visitor hashes and event ids distinct across
// calls.
func seedWeek(t *testing.T, st *store.Store, clientID, campaignID string, monday time.Time, seed byte, visitors, extraViews, clicks, applications int) {
	t.Helper()
	var rows []store.Event
	n := 0
	add := func(i int, event string, bot bool) {
		at := monday.Add(time.Duration(i%7)*24*time.Hour + 10*time.Hour + time.Duration(n)*time.Minute)
		rows = append(rows, store.Event{Received: at, ID: [16]byte{seed, byte(n), byte(n >> 8), 7}, ClientID: clientID,
			CampaignID: campaignID, Event: event, Source: "jobboard-x", Country: [2]byte{'D', 'E'},
			Visitor: [16]byte{seed, byte(i), 0xaa}, Bot: bot})
		n++
	}
	for i := range visitors {
		add(i, "page_view", false)
	}
	for i := range extraViews {
		add(i%visitors, "page_view", false)
	}
	for i := range clicks {
		add(i%visitors, "apply_click", false)
	}
	for i := range applications {
		add(i%visitors, "application", false)
	}
	// Bots are never counted, and a bot's hash is not a visitor.
	for i := range 5 {
		add(100+i, "page_view", true)
	}
	if err := st.InsertEvents(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
}

// TestPartnerShares: a client shares a campaign with a partner; the
// partner reads weekly aggregates with its own token, k-thresholded and
// rounded, and nothing else; revocation, erasure and the client's end stop
// the token at once; retention removes the share records with the client's.
func TestPartnerShares(t *testing.T) {
	a := startApp(t, func(c *app.Config) { c.Roles = "api" })
	st := a.Store()
	ctx := context.Background()
	cl, token, err := st.CreateClient(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	other, otherToken, _ := st.CreateClient(ctx, "Other")
	camp, _ := st.CreateCampaign(ctx, cl.ID, "Nurses Q4", store.CampaignOptions{})
	otherCamp, _ := st.CreateCampaign(ctx, other.ID, "Theirs", store.CampaignOptions{})

	// Two settled weeks whatever the weekday today: A, two weeks before
	// this one (12 distinct visitors), and B before it (3 visitors).
	weekA := mondayOf(time.Now()).AddDate(0, 0, -14)
	weekB := weekA.AddDate(0, 0, -7)
	seedWeek(t, st, cl.ID, camp.ID, weekA, 1, 12, 15, 8, 4) // 27 views, 8 clicks, 4 applications
	seedWeek(t, st, cl.ID, camp.ID, weekB, 2, 3, 6, 3, 3)
	seedWeek(t, st, other.ID, otherCamp.ID, weekA, 3, 40, 0, 0, 0)
	// This week: enough visitors, but a week is published only once over.
	seedWeek(t, st, cl.ID, camp.ID, mondayOf(time.Now()), 4, 30, 0, 0, 0)

	base := "/api/v1/campaigns/" + camp.ID + "/partners"
	// Creation: validated, the owner's only.
	for _, bad := range []struct{ body, want string }{
		{`{"name":"Jobboard X","min_visitors":5}`, "min_visitors"},
		{`{"name":"Jobboard X","min_visitors":9}`, "min_visitors"},
		{`{"name":""}`, "name"},
		{`{"name":"` + strings.Repeat("x", 101) + `"}`, "name"},
		{`{"min_visitors":10}`, "name"},
		{`{"name":"x","token":"mine"}`, "unknown field"},
	} {
		code, b := rawCall(t, a, "POST", base, token, bad.body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if msg, _ := m["error"].(string); code != 400 || !strings.HasPrefix(msg, bad.want) && !strings.Contains(msg, bad.want) {
			t.Errorf("create %s: %d %s, want 400 naming %s", bad.body, code, b, bad.want)
		}
	}
	if code, _ := rawCall(t, a, "POST", base, otherToken, `{"name":"Jobboard X"}`); code != 404 {
		t.Fatalf("another client's campaign: %d, want 404", code)
	}
	if code, _ := rawCall(t, a, "POST", base, "", `{"name":"Jobboard X"}`); code != 401 {
		t.Fatalf("no token: %d, want 401", code)
	}
	create := func(body string) (string, string) {
		t.Helper()
		code, b := rawCall(t, a, "POST", base, token, body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || code != 201 {
			t.Fatalf("create %s: %d %s", body, code, b)
		}
		sameKeys(t, "creation answer", m, "id", "name", "min_visitors", "created_at", "created_by", "revoked_at", "token")
		tok, _ := m["token"].(string)
		if !strings.HasPrefix(tok, store.PartnerTokenPrefix) || len(tok) != len(store.PartnerTokenPrefix)+43 || m["revoked_at"] != nil {
			t.Fatalf("create: %v", m)
		}
		return m["id"].(string), tok
	}
	share1, ptoken1 := create(`{"name":"Jobboard X"}`)
	share2, ptoken2 := create(`{"name":"Agency Y","min_visitors":20}`)

	// The token is stored only as its hash, and audited by id only.
	var n []struct {
		N uint64 `ch:"n"`
	}
	count := func(q string, args ...any) uint64 {
		t.Helper()
		if err := st.Conn().Select(ctx, &n, q, args...); err != nil {
			t.Fatal(err)
		}
		return n[0].N
	}
	if c := count(`SELECT count() AS n FROM partner_shares WHERE token_hash = ?`, store.HashToken(ptoken1)); c != 1 {
		t.Fatalf("%d rows with the token's hash", c)
	}
	for _, tok := range []string{ptoken1, ptoken2} {
		if c := count(`SELECT count() AS n FROM partner_shares WHERE position(concat(share_id, name, token_hash, created_by, revoked_by), ?) > 0`, tok); c != 0 {
			t.Fatal("partner token stored in the clear")
		}
		if c := count(`SELECT count() AS n FROM audit_log WHERE position(concat(actor, action, detail), ?) > 0`, tok); c != 0 {
			t.Fatal("partner token in the audit log")
		}
	}
	if c := count(`SELECT count() AS n FROM audit_log WHERE action = 'partner_share_created' AND client_id = ? AND campaign_id = ? AND position(detail, ?) > 0`, cl.ID, camp.ID, share1); c != 1 {
		t.Fatalf("%d creation audit rows for %s", c, share1)
	}

	// Listing: never a token.
	code, b := rawCall(t, a, "GET", base, token, "")
	var list struct {
		Campaign string           `json:"campaign"`
		Partners []map[string]any `json:"partners"`
	}
	if err := json.Unmarshal(b, &list); err != nil || code != 200 || len(list.Partners) != 2 {
		t.Fatalf("list: %d %s", code, b)
	}
	for _, p := range list.Partners {
		sameKeys(t, "listed share", p, "id", "name", "min_visitors", "created_at", "created_by", "revoked_at")
	}
	listed := func(id string) map[string]any {
		t.Helper()
		for _, p := range list.Partners {
			if p["id"] == id {
				return p
			}
		}
		t.Fatalf("share %s not listed: %v", id, list.Partners)
		return nil
	}
	if p := listed(share1); p["name"] != "Jobboard X" || p["min_visitors"] != 10.0 || p["created_by"] != "client:"+cl.ID {
		t.Fatalf("listed: %v", p)
	}
	if p := listed(share2); p["name"] != "Agency Y" || p["min_visitors"] != 20.0 {
		t.Fatalf("listed: %v", p)
	}
	if code, _ := rawCall(t, a, "GET", base, otherToken, ""); code != 404 {
		t.Fatalf("another client's list: %d, want 404", code)
	}

	// The partner report.
	rng := "?from=" + weekB.Format(time.DateOnly) + "&to=" + weekA.AddDate(0, 0, 6).Format(time.DateOnly)
	partnerReport := func(tok, query string) (int, []byte, map[string]any) {
		t.Helper()
		code, b := rawCall(t, a, "GET", "/api/v1/partner/report"+query, tok, "")
		var m map[string]any
		if code == 200 {
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("partner report %s: %v", b, err)
			}
		}
		return code, b, m
	}
	code, b, m := partnerReport(ptoken1, rng)
	if code != 200 {
		t.Fatalf("partner report: %d %s", code, b)
	}
	sameKeys(t, "partner report", m, "share", "name", "from", "to", "min_visitors", "rounding", "suppressed_weeks", "weeks", "totals")
	weeks, _ := m["weeks"].([]any)
	if len(weeks) != 1 {
		t.Fatalf("weeks %v: want week A only (B has 3 visitors)", m["weeks"])
	}
	w := weeks[0].(map[string]any)
	sameKeys(t, "week", w, "week", "page_views", "apply_clicks", "applications", "visitors")
	sameKeys(t, "totals", m["totals"].(map[string]any), "page_views", "apply_clicks", "applications", "visitors")
	want := map[string]any{"week": weekA.Format(time.DateOnly), "page_views": 25.0, "apply_clicks": 5.0, "applications": 0.0, "visitors": 10.0}
	if !reflect.DeepEqual(w, want) {
		t.Fatalf("week A = %v, want %v (27, 8, 4, 12 rounded down to fives)", w, want)
	}
	wantTotals := map[string]any{"page_views": 25.0, "apply_clicks": 5.0, "applications": 0.0, "visitors": 10.0}
	if !reflect.DeepEqual(m["totals"], wantTotals) {
		t.Fatalf("totals %v, want the sum of the published weeks %v", m["totals"], wantTotals)
	}
	if m["share"] != share1 || m["name"] != "Jobboard X" || m["min_visitors"] != 10.0 || m["rounding"] != 5.0 || m["suppressed_weeks"] != 1.0 {
		t.Fatalf("partner report: %v", m)
	}
	for _, secret := range []string{cl.ID, camp.ID, "Nurses Q4", "Acme", "jobboard-x", "DE"} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("partner report reveals %q: %s", secret, b)
		}
	}
	// A higher threshold: nothing published, both weeks suppressed.
	if code, b, m := partnerReport(ptoken2, rng); code != 200 || len(m["weeks"].([]any)) != 0 || m["suppressed_weeks"] != 2.0 ||
		!reflect.DeepEqual(m["totals"], map[string]any{"page_views": 0.0, "apply_clicks": 0.0, "applications": 0.0, "visitors": 0.0}) {
		t.Fatalf("k=20: %d %s", code, b)
	}
	// The default range (30 days to today) never publishes this week.
	code, b, m = partnerReport(ptoken1, "")
	if code != 200 {
		t.Fatalf("default range: %d %s", code, b)
	}
	for _, x := range m["weeks"].([]any) {
		if wk := x.(map[string]any)["week"].(string); wk >= mondayOf(time.Now()).Format(time.DateOnly) {
			t.Fatalf("the running week %s was published: %s", wk, b)
		}
	}
	for _, q := range []string{"?from=2026-13-01", "?to=x", "?from=2024-01-01&to=2026-01-01", "?from=2026-11-20&to=2026-11-19"} {
		if code, b, _ := partnerReport(ptoken1, q); code != 400 {
			t.Errorf("partner report %s: %d %s, want 400", q, code, b)
		}
	}

	// Tokens open only their own side.
	for _, tok := range []string{token, otherToken, "", "jpp_nope", ptoken1 + "x"} {
		if code, b, _ := partnerReport(tok, rng); code != 401 {
			t.Fatalf("partner report with %q: %d %s, want 401", tok, code, b)
		}
	}
	for _, p := range []string{"/api/v1/campaigns", "/api/v1/campaigns/" + camp.ID, "/api/v1/campaigns/" + camp.ID + "/report", base} {
		if code, _ := rawCall(t, a, "GET", p, ptoken1, ""); code != 401 {
			t.Fatalf("partner token on %s: %d, want 401", p, code)
		}
	}
	if code, _ := rawCall(t, a, "DELETE", base+"/"+share1, ptoken1, ""); code != 401 {
		t.Fatalf("a partner revoking with its own token: %d, want 401", code)
	}

	// Revocation: the owner's only, idempotent, at once, audited once.
	if code, _ := rawCall(t, a, "DELETE", base+"/"+share1, otherToken, ""); code != 404 {
		t.Fatalf("another client revokes: %d, want 404", code)
	}
	if code, _ := rawCall(t, a, "DELETE", "/api/v1/campaigns/"+otherCamp.ID+"/partners/"+share1, otherToken, ""); code != 404 {
		t.Fatalf("revoke through another campaign: %d, want 404", code)
	}
	if code, _, _ := partnerReport(ptoken1, rng); code != 200 {
		t.Fatalf("share stopped working after a refused revocation: %d", code)
	}
	for range 2 {
		if code, b := rawCall(t, a, "DELETE", base+"/"+share1, token, ""); code != 204 || len(b) != 0 {
			t.Fatalf("revoke: %d %s, want 204", code, b)
		}
	}
	if code, _ := rawCall(t, a, "DELETE", base+"/ps_unknown", token, ""); code != 404 {
		t.Fatalf("revoke unknown share: %d, want 404", code)
	}
	if code, _, _ := partnerReport(ptoken1, rng); code != 401 {
		t.Fatalf("revoked share: %d, want 401", code)
	}
	if c := count(`SELECT count() AS n FROM audit_log WHERE action = 'partner_share_revoked' AND position(detail, ?) > 0`, share1); c != 1 {
		t.Fatalf("%d revocation audit rows, want 1", c)
	}
	_, b = rawCall(t, a, "GET", base, token, "")
	_ = json.Unmarshal(b, &list)
	if len(list.Partners) != 2 || listed(share1)["revoked_at"] == nil || listed(share2)["revoked_at"] != nil {
		t.Fatalf("list after revocation: %s", b)
	}

	// Erasure of the campaign revokes its shares at once.
	if code, _, _ := partnerReport(ptoken2, rng); code != 200 {
		t.Fatalf("share 2 before erasure: %d", code)
	}
	if code, b := rawCall(t, a, "DELETE", "/api/v1/campaigns/"+camp.ID+"/data", token, ""); code != 202 {
		t.Fatalf("erase: %d %s", code, b)
	}
	if code, _, _ := partnerReport(ptoken2, rng); code != 401 {
		t.Fatalf("share of an erased campaign: %d, want 401", code)
	}
	if c := count(`SELECT count() AS n FROM audit_log WHERE action = 'partner_share_revoked' AND position(detail, ?) > 0 AND position(detail, 'erasure') > 0`, share2); c != 1 {
		t.Fatalf("%d erasure revocation audit rows for %s, want 1", c, share2)
	}

	// Ending the client stops its shares at once; five years on, retention
	// deletes the share records with the client's.
	camp2, _ := st.CreateCampaign(ctx, cl.ID, "Drivers", store.CampaignOptions{})
	code, b = rawCall(t, a, "POST", "/api/v1/campaigns/"+camp2.ID+"/partners", token, `{"name":"Jobboard X"}`)
	var created map[string]any
	if err := json.Unmarshal(b, &created); err != nil || code != 201 {
		t.Fatalf("create on second campaign: %d %s", code, b)
	}
	ptoken3 := created["token"].(string)
	if code, _, _ := partnerReport(ptoken3, ""); code != 200 {
		t.Fatalf("share 3: %d", code)
	}
	if err := st.EndClient(ctx, "operator:test", cl.ID); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := partnerReport(ptoken3, ""); code != 401 {
		t.Fatalf("share of an ended client: %d, want 401", code)
	}
	otherShare, otherPToken, err := st.CreateShare(ctx, "client:"+other.ID, other.ID, otherCamp.ID, "Jobboard X", 10)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.EnforceRetention(ctx, time.Now().Add(5*366*24*time.Hour))
	if err != nil || len(res.PurgedClients) != 1 || res.PurgedClients[0] != cl.ID {
		t.Fatalf("retention: %+v %v", res, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := st.WaitMutations(wctx); err != nil {
		t.Fatal(err)
	}
	if c := count(`SELECT count() AS n FROM partner_shares WHERE client_id = ?`, cl.ID); c != 0 {
		t.Fatalf("%d share rows kept after the client record was purged", c)
	}
	if code, _, _ := partnerReport(ptoken3, ""); code != 401 {
		t.Fatalf("share of a purged client: %d, want 401", code)
	}
	// The active client's share is untouched.
	if c := count(`SELECT count() AS n FROM partner_shares WHERE share_id = ?`, otherShare.ID); c != 1 {
		t.Fatalf("active client's share rows: %d", c)
	}
	if code, b, _ := partnerReport(otherPToken, ""); code != 200 {
		t.Fatalf("active client's share after retention: %d %s", code, b)
	}
}

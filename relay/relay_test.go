package relay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward/google/googletest"
	"github.com/jobpixel/jobpixel/forward/linkedin/linkedintest"
	"github.com/jobpixel/jobpixel/forward/meta/metatest"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// tcfFixture is the public TC string of the platform reference: purposes
// {1,3,4,7} consented, vendors {2,37,61}. Google (755) is not among them.
const tcfFixture = "COvzTO5OvzTO5BRAAAENAPCoALIAADgAAAAAAewAwABAAlAB6ABBFADBQAQA9hAAAcAA"

// signals enumerates consent signals: Consent Mode ad_user_data and
// ad_personalization (absent, granted, denied), GPC, a TC string (none,
// the fixture, malformed) and gdpr (absent, 1). Decisions come from the
// real consent.Resolve, with LinkedIn as TCF vendor 37 and Meta not a TCF
// vendor.
func signals() []consent.Decision {
	states := []consent.State{consent.Unknown, consent.Granted, consent.Denied}
	tcfs := []string{"", tcfFixture, "not-a-tc-string"}
	vendors := consent.Vendors{LinkedIn: 37}
	var out []consent.Decision
	for _, aud := range states {
		for _, ap := range states {
			for _, gpc := range []bool{false, true} {
				for _, tcf := range tcfs {
					for _, gdpr := range []consent.GDPR{0, consent.GDPRApplies} {
						sig := consent.Signals{AdUserData: aud, AdPersonalization: ap, AdStorage: consent.Granted,
							GPC: gpc, TCF: []byte(tcf), GDPR: gdpr}
						out = append(out, consent.Resolve(&sig, vendors))
					}
				}
			}
		}
	}
	return out
}

// TestEligibility forwards one application per (instruction state ×
// consent signals) visitor to all three platforms and checks that a
// visitor's data reaches a platform — as conversions and as an audience
// member — if and only if the instruction covers that platform and
// purpose AND the visitor's consent allows it, and that the ledger
// accounts for every item the fakes received.
func TestEligibility(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	type campaignCase struct {
		name string
		camp store.Campaign
		// covers[platform] = {conversions, audiences}
		covers map[consent.Platform][2]bool
	}
	all := map[consent.Platform][2]bool{consent.Google: {true, true}, consent.Meta: {true, true}, consent.LinkedIn: {true, true}}
	none := map[consent.Platform][2]bool{}
	cases := []*campaignCase{
		{name: "present", covers: all},
		{name: "partial", covers: map[consent.Platform][2]bool{consent.Meta: {true, false}, consent.Google: {false, true}}},
		{name: "revoked", covers: none},
		{name: "absent", covers: none},
		{name: "sensitive", covers: none},
		{name: "reinstated", covers: all}, // revoked, then instructed again
	}
	for _, c := range cases {
		c.camp = e.campaign(c.name)
	}
	partial := fmt.Sprintf(`{
	  "meta": {"endpoint": %q, "access_token": %q,
	    "conversions": [{"event": "application", "pixel_id": %q, "event_name": "SubmitApplication"}]},
	  "google": {"data_manager_endpoint": %q, "ads_endpoint": %q, "customer_id": %q, "access_token": %q,
	    "customer_match_terms_accepted": true,
	    "audiences": [{"user_list_id": "556", "segment": {"preset": "applied"}}]}
	}`, e.meta.URL(), metaToken, "112", e.google.URL(), e.google.URL(), customerID, googleToken)
	// Each campaign has its own destinations, so arrivals are attributable.
	full := func(i int) string {
		return e.fullBodyWith(fmt.Sprint(200 + i))
	}
	for i, c := range cases {
		switch c.name {
		case "present", "reinstated":
			if c.name == "reinstated" {
				e.instruct(c.camp.ID, full(i))
				e.revoke(c.camp.ID)
			}
			e.instruct(c.camp.ID, full(i))
		case "partial":
			e.instruct(c.camp.ID, partial)
		case "revoked":
			e.instruct(c.camp.ID, full(i))
			e.revoke(c.camp.ID)
		case "sensitive":
			e.instruct(c.camp.ID, full(i))
			c.camp.Sensitive = true
			if _, err := e.st.UpdateCampaign(ctx, c.camp); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range cases {
		e.linkedin.AddSegment(fmt.Sprint(200+i)+"9", 0)
	}

	decisions := signals()
	type sent struct {
		c   *campaignCase
		v   visitor
		h   schemas.Hit
		d   consent.Decision
		idx int
	}
	var hits []schemas.Hit
	var all2 []sent
	n := 0
	for ci, c := range cases {
		for _, d := range decisions {
			v := newVisitor(n)
			e.register(v)
			h := hit(c.camp, v, schemas.EventApplication, d)
			hits = append(hits, h)
			all2 = append(all2, sent{c: c, v: v, h: h, d: d, idx: ci})
			n++
		}
	}
	// Non-vacuous: the grid has visitors on both sides for every platform
	// and purpose.
	for _, p := range []consent.Platform{consent.Google, consent.Meta, consent.LinkedIn} {
		var ads, noAds, aud, noAud int
		for _, d := range decisions {
			if d.AllowsAds(p) {
				ads++
			} else {
				noAds++
			}
			if d.AllowsAudience(p) {
				aud++
			} else {
				noAud++
			}
		}
		if ads == 0 || noAds == 0 || aud == 0 || noAud == 0 || aud == ads {
			t.Fatalf("%v: signal grid is degenerate: ads %d/%d audience %d/%d", p, ads, noAds, aud, noAud)
		}
		t.Logf("%v: %d of %d decisions allow conversions, %d audiences", p, ads, len(decisions), aud)
	}
	e.startAll("fwd")
	e.produce(hits...)

	// Expected arrivals, by the rule: instruction covers it AND consent allows it.
	type dest struct{ conv, aud bool }
	want := func(s sent, p consent.Platform) dest {
		cov := s.c.covers[p]
		return dest{conv: cov[0] && s.d.AllowsAds(p), aud: cov[1] && s.d.AllowsAudience(p)}
	}
	var wantConv, wantAud [4]int // by platform
	for _, s := range all2 {
		for _, p := range []consent.Platform{consent.Google, consent.Meta, consent.LinkedIn} {
			w := want(s, p)
			if w.conv {
				wantConv[p]++
			}
			if w.aud {
				wantAud[p]++
			}
		}
	}
	audSize := func(p consent.Platform) int {
		n := 0
		for i, c := range cases {
			d := fmt.Sprint(200 + i)
			switch p {
			case consent.Meta:
				n += len(e.meta.Audience(d + "2"))
			case consent.Google:
				n += len(e.google.Members(d + "5"))
			case consent.LinkedIn:
				n += len(e.linkedin.Segment(d + "9"))
			}
			if c.name == "partial" && p == consent.Google {
				n += len(e.google.Members("556"))
			}
		}
		return n
	}
	got := func() (bool, string) {
		gc := [4]int{0, len(e.google.Events()) + len(e.google.Clicks()), len(e.meta.Events()), len(e.linkedin.Events())}
		// Google has two conversion destinations in "full".
		wc := wantConv
		for _, s := range all2 {
			if want(s, consent.Google).conv && s.c.name != "partial" {
				wc[consent.Google]++ // the Ads click conversion too
			}
		}
		ga := [4]int{0, audSize(consent.Google), audSize(consent.Meta), audSize(consent.LinkedIn)}
		return gc == wc && ga == wantAud, fmt.Sprintf("conversions %v want %v, audiences %v want %v", gc[1:], wc[1:], ga[1:], wantAud[1:])
	}
	waitFor(t, 90*time.Second, "every eligible item at the fakes", got)
	time.Sleep(2 * time.Second) // nothing more arrives
	if ok, state := got(); !ok {
		t.Fatalf("after settling: %s", state)
	}

	// Per visitor and platform: arrived if and only if allowed.
	for _, s := range all2 {
		eid := id(s.h)
		d := fmt.Sprint(200 + s.idx)
		for _, p := range []consent.Platform{consent.Google, consent.Meta, consent.LinkedIn} {
			w := want(s, p)
			var conv, aud bool
			switch p {
			case consent.Meta:
				ev, ok := e.meta.Event(eid)
				conv = ok
				if ok {
					if len(ev.User.Em) != 1 || ev.User.Em[0] != s.v.emMeta || ev.User.Fbc != s.v.fbc {
						t.Errorf("meta event %s: user %+v", eid, ev.User)
					}
					ldu := slices.Equal(ev.DataProcessingOptions, []string{"LDU"})
					if ldu == s.d.AllowsAudience(consent.Meta) {
						t.Errorf("meta event %s: LDU %v with decision %v", eid, ev.DataProcessingOptions, s.d)
					}
				}
				aud = contains(e.meta.Audience(d+"2"), s.v.emMeta)
			case consent.Google:
				ev, ok := e.google.Event(eid)
				conv = ok
				if ok {
					if len(ev.Emails) != 1 || ev.Emails[0] != s.v.emGoogle || ev.Gclid != s.v.gclid {
						t.Errorf("google event %s: %+v", eid, ev)
					}
					wantCons := googletest.Consent{AdUserData: "CONSENT_GRANTED", AdPersonalization: "CONSENT_DENIED"}
					if s.d.AllowsAudience(consent.Google) {
						wantCons.AdPersonalization = "CONSENT_GRANTED"
					}
					if ev.Consent != wantCons {
						t.Errorf("google event %s: consent %+v, want %+v (decision %v)", eid, ev.Consent, wantCons, s.d)
					}
				}
				if s.c.name != "partial" {
					if _, ok := e.google.Click(eid); ok != conv {
						t.Errorf("google click %s arrived %v, event %v", eid, ok, conv)
					}
				}
				aud = contains(e.google.Members(d+"5"), s.v.emGoogle) || contains(e.google.Members("556"), s.v.emGoogle)
			case consent.LinkedIn:
				ev, ok := e.linkedin.Event(eid)
				conv = ok
				if ok && !slices.Contains(ev.UserIDs, linkedintest.UserID{IDType: "SHA256_EMAIL", IDValue: s.v.emMeta}) {
					t.Errorf("linkedin event %s: user ids %+v", eid, ev.UserIDs)
				}
				aud = contains(e.linkedin.Segment(d+"9"), s.v.emMeta)
			}
			if conv != w.conv || aud != w.aud {
				t.Errorf("%s/%v decision %v: conversion %v (want %v), audience %v (want %v)",
					s.c.name, p, s.d, conv, w.conv, aud, w.aud)
			}
		}
	}
	for name, dups := range map[string]map[string]int{"meta": e.meta.Duplicates(), "google": e.google.Duplicates(), "linkedin": e.linkedin.Duplicates()} {
		if len(dups) > 0 {
			t.Errorf("%s received duplicates: %v", name, dups)
		}
	}
	if dl := e.deadLetters(); len(dl) > 0 {
		t.Errorf("dead letters without any fault: %+v", dl)
	}

	// The ledger accounts for every item and every request. Rows are
	// written after each answer: wait for one per request the fakes saw.
	requests := len(e.meta.Requests()) + len(e.google.Requests()) + len(e.linkedin.Requests())
	waitFor(t, 30*time.Second, "a ledger row per request", func() (bool, string) {
		var rows uint64
		for _, l := range e.ledger() {
			rows += l.Rows
		}
		return int(rows) >= requests, fmt.Sprintf("%d rows for %d requests", rows, requests)
	})
	byKey := map[string]ledgerSum{}
	var rows uint64
	for _, l := range e.ledger() {
		byKey[l.Platform+"|"+l.Purpose] = addSum(byKey[l.Platform+"|"+l.Purpose], l)
		rows += l.Rows
		if l.Sent != l.Items {
			t.Errorf("ledger %+v: not every item sent without faults", l)
		}
		for _, c := range cases {
			if c.camp.ID == l.Campaign && c.covers[consentPlatform(l.Platform)] == [2]bool{} {
				t.Errorf("ledger shows a send for %s campaign: %+v", c.name, l)
			}
		}
	}
	check := func(key string, want int) {
		if got := int(byKey[key].Sent); got != want {
			t.Errorf("ledger %s: %d sent, fakes received %d", key, got, want)
		}
	}
	check("meta|conversions", len(e.meta.Events()))
	check("google|conversions", len(e.google.Events())+len(e.google.Clicks()))
	check("linkedin|conversions", len(e.linkedin.Events()))
	check("meta|audience_add", audSize(consent.Meta))
	check("google|audience_add", audSize(consent.Google))
	check("linkedin|audience_add", audSize(consent.LinkedIn))
	if h := byKey["meta|conversions"].Hashed; int(h) != len(e.meta.Events()) {
		t.Errorf("meta hashed identifiers %d, want one e-mail hash per event (%d)", h, len(e.meta.Events()))
	}
	if int(rows) != requests {
		t.Errorf("ledger has %d rows, the fakes saw %d requests", rows, requests)
	}
}

func addSum(a, b ledgerSum) ledgerSum {
	a.Rows += b.Rows
	a.Sent += b.Sent
	a.Items += b.Items
	a.Hashed += b.Hashed
	return a
}

func consentPlatform(s string) consent.Platform {
	switch s {
	case "google":
		return consent.Google
	case "meta":
		return consent.Meta
	case "linkedin":
		return consent.LinkedIn
	}
	return 0
}

// fullBodyWith is fullBody with destination ids prefixed by pre:
// pixel pre1, audience pre2, DM action pre3, Ads action pre4, user list
// pre5, LinkedIn rule pre6, segment pre9.
func (e *env) fullBodyWith(pre string) string {
	return fmt.Sprintf(`{
	  "meta": {"endpoint": %q, "access_token": %q,
	    "conversions": [{"event": "application", "pixel_id": "%s1", "event_name": "SubmitApplication"}],
	    "audiences": [{"audience_id": "%s2", "segment": {"preset": "applied"}}]},
	  "google": {"data_manager_endpoint": %q, "ads_endpoint": %q, "customer_id": %q,
	    "access_token": %q, "developer_token": %q, "customer_match_terms_accepted": true,
	    "conversions": [{"event": "application", "conversion_action_id": "%s3"},
	                    {"event": "application", "conversion_action_id": "%s4", "api": "ads_click"}],
	    "audiences": [{"user_list_id": "%s5", "segment": {"preset": "applied"}}]},
	  "linkedin": {"endpoint": %q, "access_token": %q,
	    "conversions": [{"event": "application", "conversion_rule_id": "%s6"}],
	    "audiences": [{"segment_id": "%s9", "segment": {"preset": "applied"}}]}
	}`, e.meta.URL(), metaToken, pre, pre,
		e.google.URL(), e.google.URL(), customerID, googleToken, devToken, pre, pre, pre,
		e.linkedin.URL(), linkedinToken, pre, pre)
}

// TestRevocationRemovesAudience: members added under an instruction are
// removed from every platform audience when it is revoked, the ledger
// records the removals, and nothing is forwarded afterwards.
func TestRevocationRemovesAudience(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("jobs")
	e.instruct(c.ID, e.fullBody())
	e.startAll("fwd")
	granted := adsGranted
	var vs []visitor
	for i := range 5 {
		v := newVisitor(i)
		e.register(v)
		vs = append(vs, v)
		e.produce(hit(c, v, schemas.EventApplication, granted))
	}
	full := func() (bool, string) {
		m, g, l := len(e.meta.Audience(metaAudience)), len(e.google.Members(userList)), len(e.linkedin.Segment(segmentID))
		return m == 5 && g == 5 && l == 5 && len(e.meta.Events()) == 5, fmt.Sprintf("audiences %d %d %d, meta events %d", m, g, l, len(e.meta.Events()))
	}
	waitFor(t, 30*time.Second, "audiences filled", full)

	revokedAt := time.Now()
	e.revoke(c.ID)
	empty := func() (bool, string) {
		m, g, l := len(e.meta.Audience(metaAudience)), len(e.google.Members(userList)), len(e.linkedin.Segment(segmentID))
		return m+g+l == 0, fmt.Sprintf("audiences %d %d %d", m, g, l)
	}
	waitFor(t, 20*time.Second, "audiences emptied after revocation", empty)
	t.Logf("audiences emptied %v after the revocation", time.Since(revokedAt).Round(10*time.Millisecond))
	var deletes int
	for _, u := range e.meta.Uploads() {
		if u.Method == "DELETE" {
			deletes += u.Rows
		}
	}
	if deletes != 5 {
		t.Errorf("meta DELETE uploads carried %d rows, want 5", deletes)
	}
	// The fake records a request after handling it (and answering), so the
	// last remove request may show up just after its members are gone.
	waitFor(t, 10*time.Second, "google remove requests carrying 5 members", func() (bool, string) {
		var removes int
		for _, r := range e.google.Requests() {
			if r.Path == "/v1/audienceMembers:remove" {
				removes += r.Items
			}
		}
		return removes == 5, fmt.Sprintf("%d members", removes)
	})
	// The removals are recorded right after the platforms answered.
	waitFor(t, 30*time.Second, "one removal ledger row per platform, 5 members each", func() (bool, string) {
		var rows []ledgerSum
		for _, l := range e.ledger() {
			if l.Purpose == store.PurposeAudienceRemove {
				rows = append(rows, l)
			}
		}
		ok := len(rows) == 3
		for _, l := range rows {
			ok = ok && l.Sent == 5 && l.Rows == 1
		}
		return ok, fmt.Sprintf("%+v", rows)
	})
	// After the revocation nothing leaves.
	before := len(e.meta.Events()) + len(e.google.Events()) + len(e.linkedin.Events())
	for i := 5; i < 8; i++ {
		v := newVisitor(i)
		e.register(v)
		e.produce(hit(c, v, schemas.EventApplication, granted))
	}
	time.Sleep(2 * time.Second)
	if after := len(e.meta.Events()) + len(e.google.Events()) + len(e.linkedin.Events()); after != before {
		t.Errorf("%d conversions forwarded after the revocation", after-before)
	}
	if ok, state := empty(); !ok {
		t.Errorf("audiences refilled after revocation: %s", state)
	}
	// Every request (conversions, additions, removals) was written ahead as
	// an intent, and each intent is done, naming its ledger rows.
	waitFor(t, 10*time.Second, "every ledger row covered by a done intent", func() (bool, string) {
		var n []struct {
			Uncovered uint64 `ch:"uncovered"`
			Open      uint64 `ch:"open"`
			Purposes  uint64 `ch:"purposes"`
		}
		err := e.st.Conn().Select(context.Background(), &n, `SELECT
			(SELECT count() FROM forward_ledger WHERE batch_id NOT IN
				(SELECT arrayJoin(batch_ids) FROM forward_intents WHERE done = 1)) AS uncovered,
			(SELECT count() FROM (SELECT intent_id FROM forward_intents GROUP BY intent_id HAVING max(done) = 0)) AS open,
			(SELECT uniqExact(platform, purpose) FROM forward_intents WHERE done = 1) AS purposes`)
		if err != nil || len(n) != 1 {
			return false, fmt.Sprint(err)
		}
		return n[0].Uncovered == 0 && n[0].Open == 0 && n[0].Purposes == 9,
			fmt.Sprintf("%d ledger rows without a done intent, %d open intents, %d platform/purpose pairs", n[0].Uncovered, n[0].Open, n[0].Purposes)
	})
}

// TestSegmentViewedNotApplied: a "viewed, did not apply" audience gains
// viewers and loses them when they apply.
func TestSegmentViewedNotApplied(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("jobs")
	body := fmt.Sprintf(`{"meta": {"endpoint": %q, "access_token": %q,
	  "audiences": [{"audience_id": %q, "segment": {"preset": "viewed_not_applied", "days": 30}},
	                {"audience_id": %q, "segment": {"preset": "applied"}}]}}`, e.meta.URL(), metaToken, metaAudience, metaAudience2)
	e.instruct(c.ID, body)
	e.start(e.config(consent.Meta, "fwd-meta"))
	granted := adsGranted
	adsOnly := consent.Resolve(&consent.Signals{AdUserData: consent.Granted, AdPersonalization: consent.Denied}, consent.Vendors{})
	a, b, x := newVisitor(1), newVisitor(2), newVisitor(3)
	for _, v := range []visitor{a, b, x} {
		e.register(v)
	}
	e.produce(hit(c, a, schemas.EventPageView, granted), hit(c, b, schemas.EventPageView, granted),
		hit(c, x, schemas.EventPageView, adsOnly)) // x did not allow personalised ads
	waitFor(t, 20*time.Second, "viewers in the audience", func() (bool, string) {
		got := e.meta.Audience(metaAudience)
		return slices.Equal(got, sorted(a.emMeta, b.emMeta)), fmt.Sprint(got)
	})
	e.produce(hit(c, b, schemas.EventApplication, granted))
	waitFor(t, 20*time.Second, "the applicant moved", func() (bool, string) {
		v, ap := e.meta.Audience(metaAudience), e.meta.Audience(metaAudience2)
		return slices.Equal(v, []string{a.emMeta}) && slices.Equal(ap, []string{b.emMeta}), fmt.Sprint(v, ap)
	})
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestKillAndRestart kills a relay while a request hangs at the platform,
// starts a new one, and checks that every conversion arrives exactly once;
// then a relay in a new consumer group (offsets from the start) sends
// nothing again, thanks to forward_sent.
func TestKillAndRestart(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("jobs")
	e.instructMeta(c.ID, "SubmitApplication")
	granted := adsGranted
	var ids []string
	batch := func(from, to int, key []byte) {
		var hs []schemas.Hit
		for i := from; i < to; i++ {
			v := newVisitor(i)
			e.register(v)
			h := hit(c, v, schemas.EventApplication, granted)
			ids = append(ids, id(h))
			hs = append(hs, h)
		}
		e.produceKeyed(key, hs...)
	}
	cfg := e.config(consent.Meta, "fwd-meta")
	cfg.StopGrace = -1 // a kill: in-flight requests are abandoned
	stop := e.start(cfg)
	batch(0, 50, nil)
	waitFor(t, 20*time.Second, "first half", func() (bool, string) {
		return len(e.meta.Events()) == 50, fmt.Sprint(len(e.meta.Events()))
	})
	// ... and recorded: the kill below must find only the hanging request
	// in flight, not the first half's records still being written.
	waitFor(t, 30*time.Second, "first half recorded", func() (bool, string) {
		n := e.sentRows()
		return n == 50, fmt.Sprint(n)
	})
	// The next request hangs at Meta; kill the relay while it does. The
	// second half goes to one partition, so the hanging request is the only
	// one in flight at the kill. (A kill at the instant Meta has accepted a
	// request but not answered it makes the restart send that batch again
	// with the same event_id: TestCrashBetweenSendAndRecord.)
	hitsBefore := e.meta.Hits()
	e.meta.Inject(metatest.Fault{Hang: time.Minute})
	batch(50, 100, []byte("one-partition"))
	waitFor(t, 20*time.Second, "a hanging request", func() (bool, string) { return e.meta.Hits() > hitsBefore, "" })
	stop()
	if n := len(e.meta.Events()); n >= 100 {
		t.Fatalf("all %d events arrived before the kill; the test did not kill mid-way", n)
	}
	t.Logf("killed with %d of 100 events at Meta", len(e.meta.Events()))
	e.start(e.config(consent.Meta, "fwd-meta"))
	waitFor(t, 30*time.Second, "every event after the restart", func() (bool, string) {
		return len(e.meta.Events()) == 100, fmt.Sprint(len(e.meta.Events()))
	})
	sentInLedger := func() uint64 {
		var sent uint64
		for _, l := range e.ledger() {
			sent += l.Sent
		}
		return sent
	}
	// forward_sent is written after the ledger: wait for both.
	waitFor(t, 30*time.Second, "every send recorded", func() (bool, string) {
		n, sent := sentInLedger(), e.sentRows()
		return n == 100 && sent == 100, fmt.Sprintf("ledger %d, forward_sent %d", n, sent)
	})
	// A consumer group without offsets re-reads everything: nothing is
	// sent again.
	e.start(e.config(consent.Meta, "fwd-meta-fresh"))
	time.Sleep(3 * time.Second)
	if n := len(e.meta.Events()); n != 100 {
		t.Errorf("%d events at Meta, want 100", n)
	}
	if d := e.meta.Duplicates(); len(d) > 0 {
		t.Errorf("duplicates: %v", d)
	}
	for _, i := range ids {
		if _, ok := e.meta.Event(i); !ok {
			t.Errorf("event %s lost", i)
		}
	}
	if sent := sentInLedger(); sent != 100 {
		t.Errorf("ledger shows %d sent, want 100", sent)
	}
}

// TestFaults: throttling and 5xx are retried (honouring Retry-After),
// a permanent refusal (here a 404: the bad campaign's endpoint has a path
// LinkedIn does not serve) is dead-lettered with its reason, and the
// partition moves on. (Refused credentials are held instead:
// TestRefreshingCredentials.)
func TestFaults(t *testing.T) {
	e := newEnv(t)
	good, bad := e.campaign("good"), e.campaign("bad")
	conv := `{"linkedin": {"endpoint": %q, "access_token": %q, "conversions": [{"event": "application", "conversion_rule_id": %q}]}}`
	e.instruct(good.ID, fmt.Sprintf(conv, e.linkedin.URL(), linkedinToken, ruleID))
	e.instruct(bad.ID, fmt.Sprintf(conv, e.linkedin.URL()+"/gone", linkedinToken, "667"))
	e.linkedin.Inject(linkedintest.Throttled(time.Second), linkedintest.ServerError())
	start := time.Now()
	e.start(e.config(consent.LinkedIn, "fwd-linkedin"))
	granted := adsGranted
	var goods []string
	for i := range 10 {
		v := newVisitor(i)
		e.register(v)
		h := hit(good, v, schemas.EventApplication, granted)
		goods = append(goods, id(h))
		e.produce(h, hit(bad, v, schemas.EventApplication, granted))
	}
	waitFor(t, 30*time.Second, "good events and dead letters", func() (bool, string) {
		return len(e.linkedin.Events()) == 10 && len(e.deadLetters()) == 10,
			fmt.Sprintf("events %d dead %d", len(e.linkedin.Events()), len(e.deadLetters()))
	})
	if time.Since(start) < time.Second {
		t.Errorf("Retry-After of 1s not honoured")
	}
	for _, d := range e.deadLetters() {
		if d.Kind != "permanent" || !strings.Contains(d.Reason, "404") {
			t.Errorf("dead letter %+v", d)
		}
	}
	if len(e.linkedin.Duplicates()) > 0 {
		t.Errorf("duplicates %v", e.linkedin.Duplicates())
	}
	// The ledger is written after each answer: wait for the last rows.
	waitFor(t, 30*time.Second, "the ledger", func() (bool, string) {
		var failed, sent uint64
		for _, l := range e.ledger() {
			if l.Campaign == bad.ID {
				failed += l.Rows
			} else {
				sent += l.Sent
			}
		}
		return failed > 0 && sent == 10,
			fmt.Sprintf("%d failed rows for the bad campaign, %d sent for the good one", failed, sent)
	})
}

// TestAllowListEnforcedAtSend: a destination that left the allow-list after
// the instruction was accepted receives nothing; the items are
// dead-lettered with the reason.
func TestAllowListEnforcedAtSend(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("jobs")
	e.instructMeta(c.ID, "Lead")
	cfg := e.config(consent.Meta, "fwd-meta")
	var err error
	if cfg.Allow, err = instruction.ParseAllowList("graph.facebook.com"); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	granted := adsGranted
	v := newVisitor(1)
	e.produce(hit(c, v, schemas.EventApplication, granted))
	waitFor(t, 20*time.Second, "a dead letter", func() (bool, string) { return len(e.deadLetters()) == 1, "" })
	if e.meta.Hits() != 0 {
		t.Errorf("meta received %d requests", e.meta.Hits())
	}
	if d := e.deadLetters()[0]; !strings.Contains(d.Reason, "allow-list") {
		t.Errorf("dead letter reason %q", d.Reason)
	}
}

// crashStore fails the records written after a send while crash is set,
// and the intents written before a send while noIntents is set.
type crashStore struct {
	Store
	crash     atomic.Bool
	noIntents atomic.Bool
}

func (c *crashStore) InsertIntents(ctx context.Context, rows []store.Intent) error {
	if c.noIntents.Load() {
		return errCrash
	}
	if c.crash.Load() {
		// The intents written ahead go through; their done rows, written
		// after the answer, are lost with the crash.
		var pending []store.Intent
		for _, r := range rows {
			if r.Done {
				return errCrash
			}
			pending = append(pending, r)
		}
		rows = pending
	}
	return c.Store.InsertIntents(ctx, rows)
}

var errCrash = errors.New("simulated crash")

func (c *crashStore) InsertLedger(ctx context.Context, rows []store.LedgerRow) error {
	if c.crash.Load() {
		return errCrash
	}
	return c.Store.InsertLedger(ctx, rows)
}

func (c *crashStore) InsertSent(ctx context.Context, rows []store.Sent) error {
	if c.crash.Load() {
		return errCrash
	}
	return c.Store.InsertSent(ctx, rows)
}

// TestCrashBetweenSendAndRecord shows the one window left: a process that
// dies after Meta accepted a batch and before it was recorded sends the
// batch again after the restart, with the same event_id, Meta's dedup key
// (so Meta counts each conversion once). Nothing is lost.
func TestCrashBetweenSendAndRecord(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("jobs")
	e.instructMeta(c.ID, "SubmitApplication")
	granted := adsGranted
	cs := &crashStore{Store: e.st}
	cs.crash.Store(true)
	cfg := e.config(consent.Meta, "fwd-meta")
	cfg.StopGrace = -1
	stop := e.startWith(cfg, cs, func(r *Relay) { r.recordGrace = -1 })
	var ids []string
	var hs []schemas.Hit
	for i := range 10 {
		v := newVisitor(i)
		e.register(v)
		h := hit(c, v, schemas.EventApplication, granted)
		ids = append(ids, id(h))
		hs = append(hs, h)
	}
	e.produce(hs...)
	// Batches reach Meta but their records fail: each partition holds
	// after its first batch.
	waitFor(t, 20*time.Second, "events sent but not recorded", func() (bool, string) {
		return len(e.meta.Events()) > 0, ""
	})
	time.Sleep(time.Second) // let the other partitions send their first batch too
	stop()                  // the crash: nothing recorded, nothing committed
	// What Meta accepted up to the crash is what is sent again: read it
	// once Meta has handled every request it received, and no more come (a
	// partition slow to send its first batch may have sent it just before
	// the stop).
	prevHits := -1
	waitFor(t, 10*time.Second, "Meta to finish the requests it received", func() (bool, string) {
		hits, handled := e.meta.Hits(), len(e.meta.Requests())
		settled := hits == handled && hits == prevHits
		prevHits = hits
		return settled, fmt.Sprintf("%d requests received, %d handled", hits, handled)
	})
	crashed := map[string]bool{}
	for _, ev := range e.meta.Events() {
		crashed[ev.ID] = true
	}
	// The write-ahead intents record what left: every request Meta
	// received is covered by an intent without a done row, which the
	// ledger reports as unconfirmed (once older than the in-flight window;
	// read here as of two minutes from now).
	ctx := context.Background()
	day := time.Now().UTC().Truncate(24 * time.Hour)
	later := time.Now().Add(store.UnconfirmedAfter + time.Second)
	unconfirmed, err := e.st.UnconfirmedIntents(ctx, e.client.ID, c.ID, day.AddDate(0, 0, -1), day.AddDate(0, 0, 1), later, 1000)
	if err != nil {
		t.Fatal(err)
	}
	items := 0
	for _, u := range unconfirmed {
		items += int(u.Items)
		if u.Platform != "meta" || u.Purpose != store.PurposeConversions || u.InstructionVersion != 1 || u.Note != store.UnconfirmedNote ||
			!strings.HasPrefix(u.ConsentBasis, "allows_ads(meta): ") || u.HashedIdentifiers == 0 || u.API == "" || u.Destination == "" {
			t.Errorf("unconfirmed intent %+v", u)
		}
	}
	if len(unconfirmed) == 0 || items < len(crashed) {
		t.Fatalf("%d unconfirmed intents with %d items; Meta accepted %d events that were not recorded", len(unconfirmed), items, len(crashed))
	}
	// Younger than the in-flight window they are not reported yet.
	if now, err := e.st.UnconfirmedIntents(ctx, e.client.ID, c.ID, day.AddDate(0, 0, -1), day.AddDate(0, 0, 1),
		time.Now().Add(-store.UnconfirmedAfter), 1000); err != nil || len(now) != 0 {
		t.Errorf("in-flight intents reported as unconfirmed: %d %v", len(now), err)
	}
	e.start(e.config(consent.Meta, "fwd-meta"))
	want := 10 + len(crashed)
	waitFor(t, 20*time.Second, "every event after the restart", func() (bool, string) {
		return len(e.meta.Events()) == want, fmt.Sprint(len(e.meta.Events()), " want ", want)
	})
	time.Sleep(time.Second)
	if n := len(e.meta.Events()); n != want {
		t.Errorf("%d events, want %d", n, want)
	}
	dups := e.meta.Duplicates()
	for _, i := range ids {
		if _, ok := e.meta.Event(i); !ok {
			t.Errorf("event %s lost", i)
		}
		wantDup := 0
		if crashed[i] {
			wantDup = 1 // sent again, with the same event_id
		}
		if dups[i] != wantDup {
			t.Errorf("event %s: %d extra sends, want %d", i, dups[i], wantDup)
		}
	}
	// The resent batches completed normally: their intents are done, and
	// the unconfirmed ones are still the crash's.
	waitFor(t, 10*time.Second, "the resent batches' intents done", func() (bool, string) {
		var n []struct {
			Open uint64 `ch:"open"`
			Done uint64 `ch:"done_n"`
		}
		err := e.st.Conn().Select(ctx, &n, `SELECT countIf(d = 0) AS open, countIf(d = 1) AS done_n
			FROM (SELECT intent_id, max(done) AS d FROM forward_intents WHERE campaign_id = ? GROUP BY intent_id)`, c.ID)
		if err != nil || len(n) != 1 {
			return false, fmt.Sprint(err)
		}
		return n[0].Open == uint64(len(unconfirmed)) && n[0].Done > 0, fmt.Sprintf("%d open, %d done, want %d open", n[0].Open, n[0].Done, len(unconfirmed))
	})
	again, err := e.st.UnconfirmedIntents(ctx, e.client.ID, c.ID, day.AddDate(0, 0, -1), day.AddDate(0, 0, 1), later, 1000)
	if err != nil || len(again) != len(unconfirmed) {
		t.Errorf("after the restart %d unconfirmed intents, want the crash's %d (%v)", len(again), len(unconfirmed), err)
	}
	t.Logf("%d of 10 events were accepted but not recorded at the crash; each was sent again once with its event_id; %d intents (%d items) unconfirmed",
		len(crashed), len(unconfirmed), items)
}

// TestIntentFailureSendsNothing: while the write-ahead intent cannot be
// recorded, nothing is sent (the partition holds); once it can, the
// conversions leave and their intents are done.
func TestIntentFailureSendsNothing(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("jobs")
	e.instructMeta(c.ID, "SubmitApplication")
	granted := adsGranted
	cs := &crashStore{Store: e.st}
	cs.noIntents.Store(true)
	e.startWith(e.config(consent.Meta, "fwd-meta"), cs, nil)
	var hs []schemas.Hit
	for i := range 5 {
		v := newVisitor(i)
		e.register(v)
		hs = append(hs, hit(c, v, schemas.EventApplication, granted))
	}
	e.produce(hs...)
	time.Sleep(4 * time.Second) // several flushes and intent retries
	if n := e.meta.Hits(); n != 0 {
		t.Fatalf("meta received %d requests while no intent could be recorded", n)
	}
	cs.noIntents.Store(false)
	waitFor(t, 20*time.Second, "every event once the intents can be recorded", func() (bool, string) {
		return len(e.meta.Events()) == 5, fmt.Sprint(len(e.meta.Events()), " events")
	})
	waitFor(t, 10*time.Second, "the intents done", func() (bool, string) {
		var n []struct {
			Open  uint64 `ch:"open"`
			Items uint64 `ch:"items_n"`
		}
		err := e.st.Conn().Select(context.Background(), &n, `SELECT countIf(d = 0) AS open, sum(i) AS items_n
			FROM (SELECT intent_id, max(done) AS d, any(items) AS i FROM forward_intents WHERE campaign_id = ? GROUP BY intent_id)`, c.ID)
		if err != nil || len(n) != 1 {
			return false, fmt.Sprint(err)
		}
		return n[0].Open == 0 && n[0].Items == 5, fmt.Sprintf("%d open, %d items", n[0].Open, n[0].Items)
	})
}

// TestRetriedEventSentOnce: copies of one event with the same client event
// id (a pixel and a beacon, a batch sent again after a 503) reach each
// destination once, in one batch, in a later one and after a restart, under
// a dedup key derived from the campaign and the eid; another eid is another
// conversion.
func TestRetriedEventSentOnce(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("retries")
	e.instruct(c.ID, e.fullBody())
	v := newVisitor(7)
	e.register(v)
	copyOf := func(eid string) schemas.Hit {
		h := hit(c, v, schemas.EventApplication, adsGranted)
		h.ClientEventID = []byte(eid)
		return h
	}
	first := copyOf("app-1")
	want := dedupID(&first)
	wantID := hex.EncodeToString(want[:])
	counts := func() [4]int {
		return [4]int{len(e.meta.Events()), len(e.google.Events()), len(e.google.Clicks()), len(e.linkedin.Events())}
	}
	key := []byte("one partition")
	stop := e.startAll("retry")
	e.produceKeyed(key, first, copyOf("app-1"), copyOf("app-1"))
	waitFor(t, 30*time.Second, "one conversion per destination", func() (bool, string) {
		n := counts()
		return n == [4]int{1, 1, 1, 1}, fmt.Sprint(n)
	})
	e.produceKeyed(key, copyOf("app-1"), copyOf("app-2"))
	waitFor(t, 30*time.Second, "the second eid at every destination", func() (bool, string) {
		n := counts()
		return n == [4]int{2, 2, 2, 2}, fmt.Sprint(n)
	})
	stop()
	stop = e.startAll("retry")
	defer stop()
	e.produceKeyed(key, copyOf("app-1"), copyOf("app-3"))
	waitFor(t, 30*time.Second, "the third eid at every destination", func() (bool, string) {
		n := counts()
		return n == [4]int{3, 3, 3, 3}, fmt.Sprint(n)
	})
	if ev, ok := e.meta.Event(wantID); !ok || ev.ID != wantID {
		t.Errorf("Meta has no event with event_id %s (campaign + eid)", wantID)
	}
	if got := e.google.Events()[0].TransactionID; got != wantID {
		t.Errorf("Google transactionId %q, want %q", got, wantID)
	}
	if got := e.google.Clicks()[0].OrderID; got != wantID {
		t.Errorf("Google Ads orderId %q, want %q", got, wantID)
	}
	if got := e.linkedin.Events()[0].EventID; got != wantID {
		t.Errorf("LinkedIn eventId %q, want %q", got, wantID)
	}
	// forward_sent is written after the platforms answered.
	waitFor(t, 10*time.Second, "3 conversions x 4 destinations in forward_sent", func() (bool, string) {
		n := e.sentRows()
		return n == 12, fmt.Sprint(n)
	})
	if n := counts(); n != [4]int{3, 3, 3, 3} {
		t.Errorf("destinations received %v, want 3 each", n)
	}
}

// TestDeadLettersHoldNoIdentifier: audience members the platform refuses
// for good are dead letters named by our batch id and their place in the
// batch, never by the person's e-mail hash.
func TestDeadLettersHoldNoIdentifier(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("jobs")
	e.instruct(c.ID, fmt.Sprintf(`{"meta": {"endpoint": %q, "access_token": %q,
	  "audiences": [{"audience_id": %q, "segment": {"preset": "applied"}}]}}`, e.meta.URL(), metaToken, metaAudience))
	v, w := newVisitor(1), newVisitor(2)
	e.register(v)
	e.register(w)
	e.meta.Inject(metatest.Permanent(100, 0, "Invalid parameter"))
	e.start(e.config(consent.Meta, "fwd-meta"))
	e.produce(hit(c, v, schemas.EventApplication, adsGranted), hit(c, w, schemas.EventApplication, adsGranted))
	waitFor(t, 20*time.Second, "both members dead-lettered", func() (bool, string) {
		return len(e.deadLetters()) == 2, fmt.Sprint(e.deadLetters())
	})
	for _, d := range e.deadLetters() {
		for _, id := range []string{v.emMeta, w.emMeta, v.emGoogle, w.emGoogle} {
			if strings.Contains(d.Item, id) || strings.Contains(d.Reason, id) {
				t.Errorf("dead letter %+v holds an e-mail hash", d)
			}
		}
		if !strings.HasPrefix(d.Item, "bat_") || !strings.Contains(d.Item, "#") {
			t.Errorf("audience dead letter item %q is not a batch reference", d.Item)
		}
	}
}

// TestNothingBeforeTheInstruction: a relay in a fresh consumer group (it
// reads the topic from the oldest hit) forwards to each destination only
// the hits received after the client instructed that destination: not
// those before the first version, and to a destination added in a later
// version not those from before that version.
func TestNothingBeforeTheInstruction(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("history")
	v := newVisitor(3)
	e.register(v)
	at := func(ts time.Time, eid string) schemas.Hit {
		h := hit(c, v, schemas.EventApplication, adsGranted)
		h.ReceivedMs, h.ClientEventID = ts.UnixMilli(), []byte(eid)
		return h
	}
	conv := func(pixels ...string) string {
		var cs []string
		for _, p := range pixels {
			cs = append(cs, fmt.Sprintf(`{"event": "application", "pixel_id": %q, "event_name": "Lead"}`, p))
		}
		return fmt.Sprintf(`{"meta": {"endpoint": %q, "access_token": %q, "conversions": [%s]}}`, e.meta.URL(), metaToken, strings.Join(cs, ","))
	}
	old := at(time.Now().Add(-time.Hour), "before-v1")
	time.Sleep(1100 * time.Millisecond) // instructions are timed to the second
	e.instruct(c.ID, conv("111"))
	time.Sleep(1100 * time.Millisecond)
	mid := at(time.Now(), "between")
	time.Sleep(1100 * time.Millisecond)
	e.instruct(c.ID, conv("111", "112"))
	time.Sleep(1100 * time.Millisecond)
	late := at(time.Now(), "after-v2")
	e.produce(old, mid, late)
	e.start(e.config(consent.Meta, "fresh"))
	key := func(h schemas.Hit) string { k := dedupID(&h); return hex.EncodeToString(k[:]) }
	waitFor(t, 20*time.Second, "three conversions", func() (bool, string) { return len(e.meta.Events()) == 3, fmt.Sprint(len(e.meta.Events())) })
	time.Sleep(time.Second) // nothing more arrives
	got := map[string][]string{}
	for _, ev := range e.meta.Events() {
		got[ev.ID] = append(got[ev.ID], ev.Pixel)
	}
	for _, c := range []struct {
		h    schemas.Hit
		want []string
	}{{old, nil}, {mid, []string{"111"}}, {late, []string{"111", "112"}}} {
		p := got[key(c.h)]
		slices.Sort(p)
		if !slices.Equal(p, c.want) {
			t.Errorf("hit %s reached pixels %v, want %v", c.h.ClientEventID, p, c.want)
		}
	}
}

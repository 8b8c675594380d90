package systemtest

import (
	"context"
	"github.com/jobpixel/jobpixel/app"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
)

func countEvents(t *testing.T, st *store.Store, clientID string) (events, aggregates uint64) {
	t.Helper()
	var n []struct {
		N uint64 `ch:"n"`
	}
	if err := st.Conn().Select(context.Background(), &n, "SELECT count() AS n FROM events WHERE client_id = ?", clientID); err != nil {
		t.Fatal(err)
	}
	events = n[0].N
	if err := st.Conn().Select(context.Background(), &n, "SELECT count() AS n FROM conversions_daily WHERE client_id = ?", clientID); err != nil {
		t.Fatal(err)
	}
	return events, n[0].N
}

func seedEvents(t *testing.T, st *store.Store, clientID, campaignID string, n int) {
	t.Helper()
	rows := make([]store.Event, n)
	for i := range rows {
		rows[i] = store.Event{Received: time.Now(), ID: [16]byte{byte(i), 1}, ClientID: clientID, CampaignID: campaignID,
			Event: "page_view", Source: "(direct)", Visitor: [16]byte{byte(i)}}
	}
	if err := st.InsertEvents(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
}

func TestRetentionPurgesEndedClients(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	gone, _, _ := st.CreateClient(ctx, "Gone")
	stay, _, _ := st.CreateClient(ctx, "Stays")
	seedEvents(t, st, gone.ID, "cmp_a", 5)
	seedEvents(t, st, stay.ID, "cmp_b", 3)
	// Records of what left for a platform: kept with the client's records.
	if err := st.InsertLedger(ctx, []store.LedgerRow{{At: time.Now(), ClientID: gone.ID, CampaignID: "cmp_a", Platform: "meta",
		Purpose: store.PurposeConversions, Items: 1, Sent: 1, Outcome: "sent", BatchID: "b1"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertIntents(ctx, []store.Intent{{ID: "int_1", At: time.Now(), ClientID: gone.ID, CampaignID: "cmp_a",
		Platform: "meta", Purpose: store.PurposeConversions, Items: 1}}); err != nil {
		t.Fatal(err)
	}
	records := func() (n uint64) {
		t.Helper()
		for _, table := range []string{"forward_ledger", "forward_intents"} {
			var rows []struct {
				N uint64 `ch:"n"`
			}
			if err := st.Conn().Select(ctx, &rows, "SELECT count() AS n FROM "+table+" WHERE client_id = ?", gone.ID); err != nil {
				t.Fatal(err)
			}
			n += rows[0].N
		}
		return n
	}
	if err := st.EndClient(ctx, "operator:test", gone.ID); err != nil {
		t.Fatal(err)
	}
	// One month after the end: still within the two-month grace.
	res, err := st.EnforceRetention(ctx, time.Now().Add(30*24*time.Hour))
	if err != nil || len(res.PurgedVisitorData) != 0 {
		t.Fatalf("purged within grace: %+v %v", res, err)
	}
	res, err = st.EnforceRetention(ctx, time.Now().Add(62*24*time.Hour))
	if err != nil || len(res.PurgedVisitorData) != 1 || res.PurgedVisitorData[0] != gone.ID || len(res.PurgedClients) != 0 {
		t.Fatalf("after grace: %+v %v", res, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.WaitMutations(wctx); err != nil {
		t.Fatal(err)
	}
	if e, agg := countEvents(t, st, gone.ID); e != 0 || agg != 0 {
		t.Fatalf("ended client keeps %d events, %d aggregate rows", e, agg)
	}
	if e, _ := countEvents(t, st, stay.ID); e != 3 {
		t.Fatalf("active client lost data: %d events", e)
	}
	if n := records(); n != 2 {
		t.Fatalf("%d ledger and intent rows after the two-month purge, want 2 (kept)", n)
	}
	// Five years after the last change, the client record itself goes.
	res, err = st.EnforceRetention(ctx, time.Now().Add(5*366*24*time.Hour))
	if err != nil || len(res.PurgedClients) != 1 || res.PurgedClients[0] != gone.ID {
		t.Fatalf("controller retention: %+v %v", res, err)
	}
	if err := st.WaitMutations(wctx); err != nil {
		t.Fatal(err)
	}
	var n []struct {
		N uint64 `ch:"n"`
	}
	_ = st.Conn().Select(ctx, &n, "SELECT count() AS n FROM clients WHERE client_id = ?", gone.ID)
	if n[0].N != 0 {
		t.Fatal("client record kept past five years")
	}
	if n := records(); n != 0 {
		t.Fatalf("%d ledger and intent rows kept past five years", n)
	}
	_ = st.Conn().Select(ctx, &n, "SELECT count() AS n FROM clients WHERE client_id = ?", stay.ID)
	if n[0].N == 0 {
		t.Fatal("active client record purged")
	}
	_ = st.Conn().Select(ctx, &n, "SELECT count() AS n FROM audit_log WHERE client_id = ? AND action IN ('end_client','purge_visitor_data','purge_client_record')", gone.ID)
	if n[0].N != 3 {
		t.Fatalf("audit rows = %d, want 3", n[0].N)
	}
}

func TestEraseCampaignAPI(t *testing.T) {
	a := startApp(t, func(c *app.Config) { c.Roles = "api" })
	st := a.Store()
	ctx := context.Background()
	cl, token, _ := st.CreateClient(ctx, "Acme")
	keep, _ := st.CreateCampaign(ctx, cl.ID, "keep", store.CampaignOptions{})
	drop, _ := st.CreateCampaign(ctx, cl.ID, "drop", store.CampaignOptions{})
	_, otherToken, _ := st.CreateClient(ctx, "Other")
	seedEvents(t, st, cl.ID, keep.ID, 4)
	seedEvents(t, st, cl.ID, drop.ID, 6)
	if code, _ := apiCall(t, a, "DELETE", "/api/v1/campaigns/"+drop.ID+"/data", otherToken, ""); code != 404 {
		t.Fatalf("other client erase: %d", code)
	}
	if code, m := apiCall(t, a, "DELETE", "/api/v1/campaigns/"+drop.ID+"/data", token, ""); code != 202 {
		t.Fatalf("erase: %d %v", code, m)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.WaitMutations(wctx); err != nil {
		t.Fatal(err)
	}
	var n []struct {
		Campaign string `ch:"campaign_id"`
		N        uint64 `ch:"n"`
	}
	if err := st.Conn().Select(ctx, &n, "SELECT campaign_id, count() AS n FROM events GROUP BY campaign_id"); err != nil {
		t.Fatal(err)
	}
	if len(n) != 1 || n[0].Campaign != keep.ID || n[0].N != 4 {
		t.Fatalf("after erase: %+v", n)
	}
}

func TestEndedClientIsNoLongerTracked(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	c, _, _ := st.CreateClient(ctx, "Ends")
	camp, _ := st.CreateCampaign(ctx, c.ID, "x", store.CampaignOptions{})
	live := func() bool {
		cs, err := st.Campaigns(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range cs {
			if x.ID == camp.ID {
				return true
			}
		}
		return false
	}
	if !live() {
		t.Fatal("new campaign not listed")
	}
	if err := st.EndClient(ctx, "operator:test", c.ID); err != nil {
		t.Fatal(err)
	}
	if live() {
		t.Fatal("campaign of an ended client still accepted by ingest")
	}
}

// TestErasureCoversForwarding: erasing a campaign revokes its forwarding
// instruction (so the forwarder removes the audience members it added),
// deletes the visitor-derived forwarding records at once (keeping the
// ledger and intents: counts and ids), and deletes the audience records
// (hashed e-mails) once no member is left on a platform.
func TestErasureCoversForwarding(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	c, _, _ := st.CreateClient(ctx, "Acme")
	camp, _ := st.CreateCampaign(ctx, c.ID, "x", store.CampaignOptions{})
	if _, err := st.AddInstruction(ctx, store.Instruction{ClientID: c.ID, CampaignID: camp.ID, Actor: "client:" + c.ID, Spec: "{}"}, nil); err != nil {
		t.Fatal(err)
	}
	hash := strings.Repeat("ab", 32)
	member := store.AudienceMember{ClientID: c.ID, CampaignID: camp.ID, Destination: "aud1", Member: hash, Email: hash, InstructionVersion: 1}
	if err := st.InsertAudienceFacts(ctx, []store.AudienceFact{{At: time.Now(), ClientID: c.ID, CampaignID: camp.ID,
		Platform: "meta", InstructionVersion: 1, Event: "page_view", Member: hash, Email: hash}}); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertAudienceChanges(ctx, []store.AudienceChange{{At: time.Now(), Action: "add", Platform: "meta", AudienceMember: member}}); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertIntents(ctx, []store.Intent{{ID: "int_1", At: time.Now(), ClientID: c.ID, CampaignID: camp.ID,
		Platform: "meta", Purpose: store.PurposeAudienceAdd, Destination: "aud1", InstructionVersion: 1, Items: 1, HashedIdentifiers: 1}}); err != nil {
		t.Fatal(err)
	}
	seedEvents(t, st, c.ID, camp.ID, 3)
	if err := st.EraseCampaign(ctx, "client:"+c.ID, c.ID, camp.ID); err != nil {
		t.Fatal(err)
	}
	cur, err := st.CurrentInstructions(ctx)
	if err != nil || len(cur) != 1 || !cur[0].Revoked {
		t.Fatalf("instruction after erasure: %+v %v", cur, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	count := func(table string) uint64 {
		t.Helper()
		if err := st.WaitMutations(wctx); err != nil {
			t.Fatal(err)
		}
		var n []struct {
			N uint64 `ch:"n"`
		}
		if err := st.Conn().Select(ctx, &n, "SELECT count() AS n FROM "+table+" WHERE campaign_id = ?", camp.ID); err != nil {
			t.Fatal(err)
		}
		return n[0].N
	}
	if count("audience_facts") != 0 || count("events") != 0 {
		t.Fatal("facts or events kept after erasure")
	}
	// The records of what left (counts and ids, no visitor data) stay as
	// proof of what was done on the client's instructions.
	if count("forward_intents") != 1 {
		t.Fatal("forwarding intents deleted by the erasure")
	}
	// The member is still on the platform: its record must stay for removal.
	if _, err := st.EnforceRetention(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if count("audience_members") == 0 {
		t.Fatal("audience record deleted before the member was removed from the platform")
	}
	// The forwarder removes it; then retention deletes the records.
	if err := st.InsertAudienceChanges(ctx, []store.AudienceChange{{At: time.Now(), Action: "remove", Platform: "meta", AudienceMember: member}}); err != nil {
		t.Fatal(err)
	}
	res, err := st.EnforceRetention(ctx, time.Now())
	if err != nil || len(res.PurgedAudiences) != 1 {
		t.Fatalf("retention: %+v %v", res, err)
	}
	if n := count("audience_members"); n != 0 {
		t.Fatalf("%d audience records kept after removal", n)
	}
	// Ending a client revokes its instructions too.
	c2, _, _ := st.CreateClient(ctx, "Other")
	camp2, _ := st.CreateCampaign(ctx, c2.ID, "y", store.CampaignOptions{})
	if _, err := st.AddInstruction(ctx, store.Instruction{ClientID: c2.ID, CampaignID: camp2.ID, Spec: "{}"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.EndClient(ctx, "operator:test", c2.ID); err != nil {
		t.Fatal(err)
	}
	cur, _ = st.CurrentInstructions(ctx)
	for _, ci := range cur {
		if ci.CampaignID == camp2.ID && !ci.Revoked {
			t.Fatal("ended client's instruction still active")
		}
	}
}

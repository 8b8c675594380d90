package faulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward/meta/metatest"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// metaTap sits in front of the fake Meta (in this process). It remembers
// which run of the forwarder process had each event accepted, and it can
// withhold the answer to one accepted request: Meta took the batch, its
// 2xx never reaches the forwarder — the window the README documents.
type metaTap struct {
	fake *metatest.Server
	srv  *httptest.Server

	mu     sync.Mutex
	run    int                 // the forwarder run now (1, 2, …); bumped before each start
	copies map[string][]copyAt // event_id → every accepted copy, in order
	hold   chan []string       // armed: withhold the next accepted answer and send its ids here
	held   map[string]int      // event id → index of its withheld copy
}

// copyAt is one accepted copy of an event.
type copyAt struct {
	run      int
	answered bool // the 2xx was written while the forwarder was still connected
}

func newMetaTap(t *testing.T, token string) *metaTap {
	m := &metaTap{fake: metatest.New(metatest.Config{Token: token}), copies: map[string][]copyAt{}, held: map[string]int{}}
	m.srv = httptest.NewServer(m)
	t.Cleanup(func() { m.fake.Close(); m.srv.CloseClientConnections(); m.srv.Close() })
	return m
}

func (m *metaTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the forwarder died while sending
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	m.fake.ServeHTTP(rec, r) // faults (Hang) apply here
	var ans struct {
		EventsReceived *int `json:"events_received"`
	}
	var req struct {
		Data []struct {
			EventID string `json:"event_id"`
		} `json:"data"`
	}
	var ids []string
	if rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &ans) == nil && ans.EventsReceived != nil &&
		json.Unmarshal(body, &req) == nil {
		for _, d := range req.Data {
			ids = append(ids, d.EventID)
		}
	}
	m.mu.Lock()
	run := m.run
	var hold chan []string
	if len(ids) > 0 && m.hold != nil {
		hold, m.hold = m.hold, nil
	}
	at := make([]int, len(ids))
	for i, id := range ids {
		at[i] = len(m.copies[id])
		m.copies[id] = append(m.copies[id], copyAt{run: run})
		if hold != nil {
			m.held[id] = at[i]
		}
	}
	m.mu.Unlock()
	if hold != nil {
		hold <- ids
		<-r.Context().Done() // never answer: the forwarder dies waiting
		return
	}
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if r.Context().Err() == nil {
		m.mu.Lock()
		for i, id := range ids {
			m.copies[id][at[i]].answered = true
		}
		m.mu.Unlock()
	}
}

// nextRun is called before the forwarder is (re)started.
func (m *metaTap) nextRun() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.run++
	return m.run
}

// armHold withholds the answer to the next accepted request.
func (m *metaTap) armHold() <-chan []string {
	ch := make(chan []string, 1)
	m.mu.Lock()
	m.hold = ch
	m.mu.Unlock()
	return ch
}

// acceptedIn returns how many copies the run had accepted.
func (m *metaTap) acceptedIn(run int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, cs := range m.copies {
		for _, c := range cs {
			if c.run == run {
				n++
			}
		}
	}
	return n
}

// distinct returns how many event ids were accepted at least once.
func (m *metaTap) distinct() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.copies)
}

func (m *metaTap) snapshot() (map[string][]copyAt, map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := make(map[string][]copyAt, len(m.copies))
	for id, cs := range m.copies {
		c[id] = append([]copyAt(nil), cs...)
	}
	h := make(map[string]int, len(m.held))
	for id, i := range m.held {
		h[id] = i
	}
	return c, h
}

// fwdRecords is what the forwarder recorded in ClickHouse for Meta
// conversions: the ledger (rows, items sent, items not sent) and
// forward_sent (rows, distinct event ids).
type fwdRecords struct {
	LedgerRows, LedgerSent, LedgerNotOK uint64
	SentRows, SentIDs                   uint64
}

func (e *env) fwdRecords(ctx context.Context) (fwdRecords, error) {
	var r fwdRecords
	var led []struct {
		Rows  uint64 `ch:"n_rows"`
		Sent  uint64 `ch:"n_sent"`
		NotOK uint64 `ch:"not_ok"`
	}
	err := e.st.Conn().Select(ctx, &led, `SELECT count() AS n_rows, sum(sent) AS n_sent,
		countIf(outcome != 'sent' OR failed != 0 OR sent != items) AS not_ok
		FROM forward_ledger WHERE platform = 'meta' AND purpose = 'conversions' AND campaign_id = ?`, e.campaign)
	if err != nil || len(led) != 1 {
		return r, fmt.Errorf("ledger: %v (%d rows)", err, len(led))
	}
	var sent []struct {
		Rows uint64 `ch:"n_rows"`
		IDs  uint64 `ch:"n_ids"`
	}
	err = e.st.Conn().Select(ctx, &sent, `SELECT count() AS n_rows, uniqExact(event_id) AS n_ids
		FROM forward_sent WHERE platform = 'meta' AND campaign_id = ?`, e.campaign)
	if err != nil || len(sent) != 1 {
		return r, fmt.Errorf("forward_sent: %v (%d rows)", err, len(sent))
	}
	return fwdRecords{LedgerRows: led[0].Rows, LedgerSent: led[0].Sent, LedgerNotOK: led[0].NotOK,
		SentRows: sent[0].Rows, SentIDs: sent[0].IDs}, nil
}

// recordedIDs returns the event ids forward_sent holds for Meta.
func (e *env) recordedIDs(t *testing.T) map[string]bool {
	t.Helper()
	var rows []struct {
		ID string `ch:"id"`
	}
	if err := e.st.Conn().Select(context.Background(), &rows, `SELECT lower(hex(event_id)) AS id FROM forward_sent
		WHERE platform = 'meta' AND campaign_id = ?`, e.campaign); err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]bool, len(rows))
	for _, r := range rows {
		ids[r.ID] = true
	}
	return ids
}

// settledRecords reads fwdRecords until three reads half a second apart
// agree: the last insert a killed process had fully sent has landed.
func (e *env) settledRecords(t *testing.T) fwdRecords {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var prev fwdRecords
	same := 0
	for {
		cur, err := e.fwdRecords(ctx)
		switch {
		case err != nil:
			same = 0
		case same > 0 && cur == prev:
			same++
		default:
			same = 1
		}
		if same == 3 {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("forwarding records do not settle: %+v (%v)", cur, err)
		}
		prev = cur
		time.Sleep(500 * time.Millisecond)
	}
}

// poll waits until cond holds, checking every 100 ms (for conditions that
// query ClickHouse or a process).
func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestForwarderKilled: the forward role runs as a child process and
// forwards application conversions to a fake Meta under a client
// instruction, while hits arrive at a steady rate. It is killed (-9) three
// times and restarted: at a random moment, while a request hangs at Meta,
// and while Meta has accepted a batch whose answer has not arrived (the
// window the README documents). Every event reaches Meta; an event
// received twice carries the same event_id and was sent again only after a
// kill that left its acceptance unrecorded (or, within one run, after an
// answer that never arrived); nothing recorded as sent is sent again;
// forward_sent records each event once; the ledger counts an event twice
// exactly when a kill fell between its ledger row and its forward_sent row;
// and a forwarder started afresh (consumer groups without offsets) sends
// nothing.
func TestForwarderKilled(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const n = 300
	const metaToken = "meta-token"
	began := time.Now()
	e := newEnv(t, "")
	tap := newMetaTap(t, metaToken)
	ctx := context.Background()

	// The client's instruction, stored as the API stores it.
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	keyText := base64.StdEncoding.EncodeToString(raw[:])
	key, err := instruction.ParseKey(keyText)
	if err != nil {
		t.Fatal(err)
	}
	allow, err := instruction.ParseAllowList("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"requested_by": "fault test", "meta": {"endpoint": %q, "access_token": %q,
	  "conversions": [{"event": "application", "pixel_id": "4242", "event_name": "SubmitApplication"}]}}`, tap.srv.URL, metaToken)
	spec, creds, err := instruction.Parse([]byte(body), instruction.Credentials{}, allow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.AddInstruction(ctx, store.Instruction{ClientID: e.clientID, CampaignID: e.campaign, Actor: "client:" + e.clientID,
		RequestedBy: "fault test", Spec: spec.Encode(), KeyID: key.ID()}, func(v uint32) (string, error) {
		return key.Seal(creds, instruction.AAD(e.clientID, e.campaign, v))
	}); err != nil {
		t.Fatal(err)
	}

	e.startIngest("-ingest.trusted-proxies", "127.0.0.1/32")
	e.startPipeline()
	fwdArgs := func(group, ops string) []string {
		return append([]string{"serve", "-roles", "forward", "-data-dir", filepath.Join(e.dataDir, "forward-"+group),
			"-ops.addr", ops,
			"-secrets.key", keyText, "-forward.allowed-hosts", "127.0.0.1", "-forward.group", group,
			"-forward.refresh", "500ms"}, e.common()...)
	}
	fwdOps := "127.0.0.1:" + strconv.Itoa(freePort(t))
	fwd := newProc(t, "forward", fwdArgs("fwd", fwdOps)...)
	start := func() int {
		run := tap.nextRun()
		fwd.start()
		return run
	}
	run := start()

	// Applications at a steady rate, each from its own consenting visitor
	// (own address: spread over the partitions) with an e-mail address.
	var mu sync.Mutex
	accepted := map[string]bool{} // client event ids ingest accepted
	var rejected []string
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		client := &http.Client{Timeout: 10 * time.Second}
		tick := time.NewTicker(100 * time.Millisecond) // 10 hits/s: about 30 s, across the kills
		defer tick.Stop()
		for i := range n {
			<-tick.C
			email := fmt.Sprintf(" Applicant.%d@Example.COM", i)
			tap.fake.RegisterEmail(email)
			eid := "app" + strconv.Itoa(i)
			q := url.Values{"c": {e.campaign}, "e": {"application"}, "eid": {eid},
				"u": {fmt.Sprintf("https://jobs.example.com/job/%d?utm_source=fault", i%7)}, "em": {email},
				"fbclid":     {"fbclid" + strconv.Itoa(i)},
				"ad_storage": {"granted"}, "ad_user_data": {"granted"}, "ad_personalization": {"granted"}}
			req, _ := http.NewRequest("GET", "http://"+e.ingestAddr+"/p.gif?"+q.Encode(), nil)
			req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.%d.%d", 113+i/250, 1+i%250))
			resp, err := client.Do(req)
			if err != nil {
				mu.Lock()
				rejected = append(rejected, eid+": "+err.Error())
				mu.Unlock()
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			if r := resp.Header.Get("X-Jobpixel-Reject"); resp.StatusCode != 200 || r != "" {
				rejected = append(rejected, fmt.Sprintf("%s: %d %s", eid, resp.StatusCode, r))
			} else {
				accepted[eid] = true
			}
			mu.Unlock()
		}
	}()

	// kill kills the forwarder (-9) and notes what was recorded at that
	// moment, once the last insert it had sent has landed.
	type killInfo struct {
		how    string
		run    int
		at     time.Duration
		events int // distinct events at Meta at the kill
		rec    fwdRecords
		done   map[string]bool // event ids in forward_sent at the kill
	}
	var kills []killInfo
	kill := func(how string) {
		t.Helper()
		fwd.kill()
		k := killInfo{how: how, run: run, at: time.Since(began).Round(time.Millisecond), events: tap.distinct()}
		k.rec = e.settledRecords(t)
		k.done = e.recordedIDs(t)
		kills = append(kills, k)
		t.Logf("kill %d (run %d, %v): %s; %d distinct events at Meta; records %+v", len(kills), run, k.at, how, k.events, k.rec)
	}
	forwarding := func(atLeast int) {
		t.Helper()
		waitUntil(t, 60*time.Second, fmt.Sprintf("run %d to forward %d events", run, atLeast), func() bool { return tap.acceptedIn(run) >= atLeast })
	}

	// 1. Kill at a random moment of the steady flow.
	forwarding(20)
	time.Sleep(time.Duration(mrand.IntN(1000)) * time.Millisecond)
	kill("at a random moment")
	run = start()

	// 2. Kill while a request hangs at Meta (nothing accepted).
	forwarding(1)
	tap.fake.Inject(metatest.Hang(time.Minute))
	waitUntil(t, 30*time.Second, "a request hanging at Meta", func() bool { return tap.fake.Pending() == 0 })
	kill("while a request hangs at Meta")

	// 3. Kill while Meta has accepted a batch and its answer is withheld:
	// the first batch the next run has accepted (at least the batch that
	// hung is sent again).
	withheld := tap.armHold()
	run = start()
	forwarding(1)
	var held []string
	select {
	case held = <-withheld:
	case <-time.After(60 * time.Second):
		t.Fatal("no request reached Meta to withhold its answer")
	}
	kill(fmt.Sprintf("after Meta accepted a batch of %d, before its answer arrived", len(held)))
	run = start()
	last := kills[len(kills)-1].rec

	select {
	case <-sendDone:
	case <-time.After(90 * time.Second):
		t.Fatal("sending hits did not finish")
	}
	mu.Lock()
	if len(rejected) > 0 || len(accepted) != n {
		t.Fatalf("ingest accepted %d of %d hits; refused: %v", len(accepted), n, rejected)
	}
	mu.Unlock()

	// The dedup keys Meta receives as event_id, from the pipeline's events
	// table: derived from the campaign and each hit's client event id.
	eventIDs := map[string]string{} // event_id → client event id
	poll(t, 60*time.Second, "the pipeline to store every hit", func() bool {
		var rows []struct {
			EID string `ch:"client_event_id"`
			ID  string `ch:"id"`
		}
		if err := e.st.Conn().Select(ctx, &rows, `SELECT client_event_id, lower(hex(event_id)) AS id FROM events WHERE campaign_id = ?`, e.campaign); err != nil {
			return false
		}
		clear(eventIDs)
		for _, r := range rows {
			id := r.ID
			if r.EID != "" {
				k := schemas.ClientEventKey([]byte(e.campaign), []byte(r.EID))
				id = hex.EncodeToString(k[:])
			}
			eventIDs[id] = r.EID
		}
		return len(rows) >= n
	})
	if len(eventIDs) != n {
		t.Fatalf("%d distinct event ids stored for %d hits", len(eventIDs), n)
	}

	// Wait until the forwarder recorded every event as sent (then Meta has
	// accepted each at least once, or what it lacks is reported below).
	poll(t, 90*time.Second, "every event at Meta and recorded as sent", func() bool {
		r, err := e.fwdRecords(ctx)
		return err == nil && r.SentRows >= n
	})
	final := e.settledRecords(t)

	copies, heldIDs := tap.snapshot()
	if len(copies) != n {
		t.Errorf("%d distinct event_ids at Meta, want %d", len(copies), n)
	}
	for id := range eventIDs {
		if len(copies[id]) == 0 {
			t.Errorf("event %s (hit %s) never reached Meta", id, eventIDs[id])
		}
	}
	extra, crossRun, unanswered := 0, 0, 0
	var dupIDs []string
	for id, cs := range copies {
		if _, ok := eventIDs[id]; !ok {
			t.Errorf("Meta received event_id %s, which is no stored hit", id)
		}
		if len(cs) > 1 {
			dupIDs = append(dupIDs, id)
		}
		for i := 1; i < len(cs); i++ {
			extra++
			prev, cur := cs[i-1], cs[i]
			switch {
			case cur.run > prev.run:
				// Accepted, then the forwarder was killed before it recorded
				// the send: the next run sent it again, same event_id.
				crossRun++
			case !prev.answered:
				// Accepted, but the answer never reached the forwarder (it
				// timed out waiting for the withheld answer): retried.
				unanswered++
			default:
				t.Errorf("event %s: copy %d accepted in run %d although copy %d was accepted and answered in the same run: sent twice outside the crash window",
					id, i+1, cur.run, i)
			}
		}
	}
	// A run never sends what an earlier run recorded as sent.
	for _, k := range kills {
		for id := range k.done {
			for _, c := range copies[id] {
				if c.run > k.run {
					t.Errorf("event %s was recorded as sent before kill %q, yet run %d sent it again", id, k.how, c.run)
				}
			}
		}
	}
	// The batch whose answer was withheld was not recorded: each of its
	// events must have been sent again (once, unless the forwarder timed
	// out and retried before it was killed).
	for id, i := range heldIDs {
		if after := len(copies[id]) - 1 - i; after < 1 {
			t.Errorf("event %s of the withheld batch was not sent again after the kill", id)
		}
	}
	if len(heldIDs) == 0 {
		t.Error("no batch was withheld")
	}
	sort.Strings(dupIDs)
	t.Logf("Meta: %d distinct events, %d extra copies (%d resent after a kill, %d retried after an unanswered acceptance), %d of them from the withheld batch; %d event_ids received more than once, e.g. %v",
		len(copies), extra, crossRun, unanswered, len(heldIDs), len(dupIDs), dupIDs[:min(len(dupIDs), 3)])

	// forward_sent: each event exactly once. The ledger: a row per request
	// whose answer the forwarder handled, written just before forward_sent.
	// A kill between the two writes leaves a ledger row for items that are
	// then sent and recorded again: the ledger counts them twice. A kill
	// before the ledger write (the withheld answer, any request in flight)
	// leaves no row: the resent items count once. Every flush that
	// completes adds the same to both, so the ledger's excess over
	// forward_sent is what the kills left, fixed at the last kill.
	if final.SentRows != n || final.SentIDs != n {
		t.Errorf("forward_sent has %d rows for %d event ids, want %d and %d", final.SentRows, final.SentIDs, n, n)
	}
	if final.LedgerNotOK != 0 {
		t.Errorf("%d ledger rows are not fully sent", final.LedgerNotOK)
	}
	excess := int64(final.LedgerSent) - int64(final.SentRows)
	if want := int64(last.LedgerSent) - int64(last.SentRows); excess != want {
		t.Errorf("ledger counts %d sent against %d in forward_sent (excess %d), want the excess left by the crashes, %d",
			final.LedgerSent, final.SentRows, excess, want)
	}
	if excess < 0 || excess > int64(extra) {
		t.Errorf("ledger excess %d: want between 0 and the %d extra copies Meta received", excess, extra)
	}
	t.Logf("ledger: %d rows, %d sent = %d events + %d counted twice (killed between ledger and forward_sent writes)",
		final.LedgerRows, final.LedgerSent, n, excess)

	// Nothing left without a record: every request Meta accepted was
	// covered by a write-ahead intent, written before it left. Each
	// forwarder send writes one intent for its items, so the intents'
	// items cover every accepted copy (repeats after a kill included),
	// except the client's own retries of an unanswered request, which
	// belong to the same send and intent.
	var intents []struct {
		N     uint64 `ch:"n"`
		Items uint64 `ch:"n_items"`
		Open  uint64 `ch:"n_open"`
	}
	if err := e.st.Conn().Select(ctx, &intents, `SELECT count() AS n, sum(i) AS n_items, countIf(d = 0) AS n_open FROM (
			SELECT intent_id, any(items) AS i, max(done) AS d FROM forward_intents
			WHERE platform = 'meta' AND purpose = 'conversions' AND campaign_id = ? GROUP BY intent_id)`, e.campaign); err != nil || len(intents) != 1 {
		t.Fatalf("intents: %v", err)
	}
	copiesAtMeta := 0
	for _, cs := range copies {
		copiesAtMeta += len(cs)
	}
	if got := int(intents[0].Items); got < copiesAtMeta-unanswered {
		t.Errorf("intents cover %d items, but Meta accepted %d copies (%d of them retries of an unanswered request): a request left without a record",
			got, copiesAtMeta, unanswered)
	}
	if intents[0].Open == 0 {
		t.Error("no intent left open, although the forwarder was killed after Meta accepted a batch it never recorded")
	}
	t.Logf("intents: %d (%d items) for %d copies accepted by Meta; %d never done (killed before the answer was recorded)",
		intents[0].N, intents[0].Items, copiesAtMeta, intents[0].Open)

	// A forwarder started afresh (new consumer groups, offsets from the
	// start) re-reads every hit and sends nothing.
	sentMetric := `jobpixel_forward_items_total{outcome="sent",platform="meta",purpose="conversions"}`
	if tap.acceptedIn(run) > 0 && scrape(fwdOps, sentMetric) <= 0 {
		t.Errorf("the last run sent %d events but %s is %v", tap.acceptedIn(run), sentMetric, scrape(fwdOps, sentMetric))
	}
	fwd.kill()
	hits := tap.fake.Hits()
	ops := "127.0.0.1:" + strconv.Itoa(freePort(t))
	fresh := newProc(t, "forward-fresh", fwdArgs("fresh", ops)...)
	fresh.start()
	skipped := `jobpixel_forward_skipped_total{platform="meta",reason="already_sent"}`
	poll(t, 60*time.Second, "the fresh forwarder to skip every hit", func() bool {
		return scrape(ops, skipped) >= n || tap.fake.Hits() != hits
	})
	time.Sleep(time.Second) // longer than a flush: a send would show
	if got := scrape(ops, skipped); got != n {
		t.Errorf("fresh forwarder skipped %v as already sent, want %d", got, n)
	}
	if sent := scrape(ops, sentMetric); sent != 0 || tap.fake.Hits() != hits {
		t.Errorf("fresh forwarder sent %v items, Meta got %d more requests", sent, tap.fake.Hits()-hits)
	}
	if r := e.settledRecords(t); r != final {
		t.Errorf("records changed after the fresh start: %+v, were %+v", r, final)
	}
	t.Logf("done in %v", time.Since(began).Round(time.Millisecond))
}

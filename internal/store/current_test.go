package store_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
	"github.com/jobpixel/jobpixel/schemas"
)

// TestCurrentClickHouse runs every statement the store sends on a current
// ClickHouse engine (chDB, see testenv.CurrentEngine) as well as on 18.16.
//
// The statements are not listed here: a scenario calls every statement of
// the store against the 18.16 server through a recording connection, and
// the recorded statements — the migrations, then each query, mutation and
// insert in the order sent, with the values the code passed — are replayed
// on the current engine. Each must succeed there, and
// each query must return as many rows as it did on 18.16. Which statements
// exist is read from the store's source: every call that sends SQL
// (Exec, Select, Query, PrepareBatch…, directly or through a helper that
// passes its query on) is a site, and a site the scenario never reached
// fails the test, so a new statement is covered once the scenario calls it.
// Statements sent only on a cluster are reached by clusterCalls and parsed,
// not run, on the current engine.
func TestCurrentClickHouse(t *testing.T) {
	engine := testenv.CurrentEngine(t)
	sites := storeSites(t)
	rec := &recorder{sites: sites}
	defer store.SetOpenConn(rec.open)()
	scenario(t, testenv.Store(t))
	calls := rec.done()

	var stmts []testenv.Statement
	var sent []*call // the calls behind stmts
	for _, c := range calls {
		if c.err != nil {
			t.Errorf("%s: fails on 18.16 in the scenario: %v\n%s", c.where(), c.err, c.sql)
			continue
		}
		sql, err := c.statement()
		if err != nil {
			t.Errorf("%s: %v\n%s", c.where(), err, c.sql)
			continue
		}
		if sql == "" {
			continue // a batch with no rows sends nothing
		}
		stmts = append(stmts, testenv.Statement{DB: c.db, SQL: sql})
		sent = append(sent, c)
	}
	start := time.Now()
	version, outcomes := engine.Run(t, stmts)
	queries, rows := 0, 0
	for i, o := range outcomes {
		c := sent[i]
		if c.returnsRows {
			queries, rows = queries+1, rows+c.rows
		}
		switch {
		case o.Error != "":
			t.Errorf("%s: fails on ClickHouse %s: %s\n%s", c.where(), version, o.Error, stmts[i].SQL)
		case c.returnsRows && o.Rows != c.rows:
			t.Errorf("%s: %d rows on ClickHouse %s, %d on 18.16\n%s", c.where(), o.Rows, version, c.rows, stmts[i].SQL)
		}
	}

	t.Logf("%d statements from %d sites (%d queries, %d rows on 18.16) on ClickHouse %s in %s",
		len(stmts), len(sites.calls), queries, rows, version, time.Since(start).Round(time.Millisecond))

	calls = append(calls, clusterCalls(t, engine, sites)...)
	reached := map[*site]bool{}
	for _, c := range calls {
		reached[c.site] = true
	}
	for _, s := range sites.calls {
		if !reached[s] {
			t.Errorf("%s: sends a statement the scenario of TestCurrentClickHouse never ran: call it there", s)
		}
	}
	for _, c := range calls {
		if c.stray != "" {
			t.Errorf("%s sent a statement at no site the source scan found (a call it does not recognise?)\n%s", c.stray, c.sql)
		}
	}
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]bool{}
	for _, c := range calls {
		ran[c.sql] = true
	}
	for _, m := range ms {
		for i, s := range m.Statements {
			if !ran[s] {
				t.Errorf("migration %04d_%s statement %d never ran", m.Version, m.Name, i+1)
			}
		}
	}
}

// clusterCalls sends what the store sends only on a cluster
// (Config.Cluster): the database created ON CLUSTER, the migrations in
// their cluster form and an erasure on every shard, on the local 18.16
// cluster (testenv.ClusterEnv). The current engine has no cluster and no
// ZooKeeper to run them on, so it parses each one (formatQuery): their
// syntax must be current ClickHouse's too. It returns the calls, for the
// sites they reach.
func clusterCalls(t *testing.T, engine *testenv.Engine, sites *siteIndex) []*call {
	t.Helper()
	rec := &recorder{sites: sites}
	restore := store.SetOpenConn(rec.open)
	st := testenv.ClusterEnv(t).Store(t)
	err := st.EraseCampaign(context.Background(), "client:scenario", "cl_cluster", "cmp_cluster")
	restore()
	if err != nil {
		t.Fatal(err)
	}
	calls := rec.done()
	var stmts []testenv.Statement
	var sent []*call
	for _, c := range calls {
		sql, err := c.statement()
		if err != nil || c.err != nil {
			t.Errorf("%s: on the 18.16 cluster: %v %v\n%s", c.where(), err, c.err, c.sql)
			continue
		}
		if sql == "" {
			continue
		}
		lit := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(sql)
		stmts = append(stmts, testenv.Statement{SQL: "SELECT formatQuery('" + lit + "')"})
		sent = append(sent, c)
	}
	version, outcomes := engine.Run(t, stmts)
	for i, o := range outcomes {
		if o.Error != "" {
			t.Errorf("%s: does not parse on ClickHouse %s: %s\n%s", sent[i].where(), version, o.Error, sent[i].sql)
		}
	}
	t.Logf("%d cluster statements parsed on ClickHouse %s", len(stmts), version)
	return calls
}

// scenario calls every statement of the store on st, with data that makes
// each branch that sends one run: a conflicting instruction version, an
// older day's salt, members added and removed, a campaign erased and a
// client ended more than five years before the retention run.
func scenario(t *testing.T, st *store.Store) {
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	day := now.Truncate(24 * time.Hour)
	from := day.AddDate(0, 0, -14)
	const actor = "client:scenario"

	cl, token, err := st.CreateClient(ctx, "Acme Care")
	must(err)
	_, err = st.ClientByToken(ctx, token)
	must(err)
	cmp, err := st.CreateCampaign(ctx, cl.ID, "Nurses", store.CampaignOptions{AllowedHosts: []string{"jobs.example", "*.acme.example"}})
	must(err)
	erased, err := st.CreateCampaign(ctx, cl.ID, "Porters", store.CampaignOptions{Consentless: store.ConsentlessDrop})
	must(err)
	cmp.Name = "Nurses (night)"
	_, err = st.UpdateCampaign(ctx, cmp)
	must(err)
	_, err = st.Campaigns(ctx)
	must(err)
	_, err = st.ClientCampaign(ctx, cl.ID, cmp.ID)
	must(err)
	_, err = st.ClientCampaigns(ctx, cl.ID)
	must(err)

	var events []store.Event
	for i, e := range []string{"page_view", "apply_click", "application", "vacancy_email", "page_view"} {
		for _, c := range []string{cmp.ID, erased.ID} {
			ev := store.Event{Received: now.Add(-time.Duration(i) * 24 * time.Hour), ClientEventID: fmt.Sprintf("eid-%d", i),
				ClientID: cl.ID, CampaignID: c, Event: e, Vacancy: "job-42", URL: "https://jobs.example/42?utm_source=news",
				Referrer: "https://news.example/", Source: "newsletter", Channel: store.ChannelEmail, UTMSource: "news", Country: [2]byte{'N', 'L'},
				Region: "NH", Browser: 1, OS: 2, Device: uint8(1 + i%2), Bot: i == 4, Consent: 7, KafkaOffset: int64(len(events))}
			ev.ID[0], ev.Visitor[0], ev.IP[0] = byte(len(events)), byte(i%2), 0xc0
			events = append(events, ev)
		}
	}
	must(st.InsertEvents(ctx, events))
	_, err = st.Window(ctx, 0, 2, 100)
	must(err)
	_, err = st.CampaignReport(ctx, cl.ID, cmp.ID, from, day)
	must(err)
	_, err = st.CampaignWeeks(ctx, cl.ID, cmp.ID, from, day)
	must(err)
	for _, d := range store.Dimensions {
		// Limit 1 leaves an "other" row for the dimensions whose values differ.
		_, err = st.Breakdown(ctx, cl.ID, cmp.ID, store.BreakdownQuery{Dimension: d, From: from, To: day, Limit: 1,
			Vacancy: "job-42", Channel: store.ChannelEmail})
		must(err)
	}

	_, err = st.Salt(ctx, day.AddDate(0, 0, -3))
	must(err)
	_, err = st.Salt(ctx, day)
	must(err)
	_, err = st.DropSaltsBefore(ctx, day)
	must(err)

	seal := func(uint32) (string, error) { return "sealed", nil }
	spec := `{"platforms":["meta"]}`
	for _, c := range []string{cmp.ID, erased.ID} {
		_, err = st.AddInstruction(ctx, store.Instruction{ClientID: cl.ID, CampaignID: c, Actor: actor, Spec: spec, KeyID: "k1"}, seal)
		must(err)
	}
	// Another API replica takes the next version while this one seals: the
	// later id is withdrawn.
	_, err = st.AddInstruction(ctx, store.Instruction{ClientID: cl.ID, CampaignID: cmp.ID, Actor: actor, Spec: spec, KeyID: "k1"},
		func(v uint32) (string, error) {
			b, err := st.Conn().PrepareBatch(ctx, "INSERT INTO forward_instructions (client_id, campaign_id, version, id, created_at, actor, requested_by, revoked, spec, secrets, key_id)")
			if err != nil {
				return "", err
			}
			if err := b.Append(cl.ID, cmp.ID, v, "ins_0", now, actor, "", uint8(0), spec, "sealed", "k1"); err != nil {
				return "", err
			}
			return "sealed", b.Send()
		})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("concurrent instruction version: got %v, want ErrConflict", err)
	}
	must(st.WaitMutations(ctx))
	_, err = st.Instructions(ctx, cl.ID, cmp.ID)
	must(err)
	_, err = st.InstructionVersion(ctx, cmp.ID, 1)
	must(err)
	_, err = st.CurrentInstructions(ctx)
	must(err)

	pending := store.Intent{ID: "int_1", At: now.Add(-time.Hour), ClientID: cl.ID, CampaignID: cmp.ID, Platform: "meta",
		Purpose: store.PurposeConversions, API: "capi", Destination: "px_1", InstructionVersion: 1, Items: 2, HashedIdentifiers: 1,
		ConsentBasis: "consent"}
	done := pending
	done.ID = "int_2"
	must(st.InsertIntents(ctx, []store.Intent{pending, done, done.Completed([]string{"b1", "b2"}, now)}))
	_, err = st.UnconfirmedIntents(ctx, cl.ID, cmp.ID, from, day, now, 10)
	must(err)
	must(st.InsertLedger(ctx, []store.LedgerRow{{At: now, ClientID: cl.ID, CampaignID: cmp.ID, Platform: "meta",
		Purpose: store.PurposeConversions, API: "capi", Destination: "px_1", InstructionVersion: 1, ConsentBasis: "consent",
		Items: 2, Sent: 1, Failed: 1, HashedIdentifiers: 1, Status: 200, Attempts: 1, Outcome: "partial", BatchID: "b1"}}))
	_, err = st.Ledger(ctx, cl.ID, cmp.ID, from, day, 10)
	must(err)
	must(st.InsertDeadLetters(ctx, []store.DeadLetter{{At: now, ClientID: cl.ID, CampaignID: cmp.ID, Platform: "meta",
		Purpose: store.PurposeConversions, API: "capi", Destination: "px_1", InstructionVersion: 1, Item: "ev1", Kind: "invalid",
		Status: 400, Code: "100", Reason: "bad value", KafkaOffset: 3}}))
	_, err = st.DeadLetters(ctx, cl.ID, cmp.ID, from, day, 10)
	must(err)
	must(st.InsertForwardStatus(ctx, []store.ForwardStatus{
		{At: now, Seq: 1, ClientID: cl.ID, CampaignID: cmp.ID, Platform: "google", InstructionVersion: 1, Status: "Google credentials expired at x; send new credentials"},
		{At: now, Seq: 2, ClientID: cl.ID, CampaignID: cmp.ID, Platform: "meta", InstructionVersion: 1, Status: "Meta refused"},
		{At: now, Seq: 3, ClientID: cl.ID, CampaignID: cmp.ID, Platform: "meta", InstructionVersion: 1, Status: ""}}))
	fs, err := st.ForwardStatuses(ctx, cl.ID, cmp.ID, 1)
	must(err)
	if len(fs) != 1 || fs[0].Platform != "google" || fs[0].Seq != 1 {
		t.Errorf("forward statuses %+v, want google's only (meta's was cleared)", fs)
	}
	must(st.InsertSent(ctx, []store.Sent{{At: now, Platform: "meta", Offset: 2, EventID: events[2].ID, ClientID: cl.ID,
		CampaignID: cmp.ID, Destination: "px_1"}}))
	_, err = st.SentSince(ctx, "meta", 0, 0, 100)
	must(err)

	var facts []store.AudienceFact
	for i, e := range []string{"application", "page_view", "application"} {
		m := fmt.Sprintf("%064x", i%2)
		facts = append(facts, store.AudienceFact{At: now.Add(-time.Duration(i) * time.Minute), ClientID: cl.ID, CampaignID: cmp.ID,
			Platform: "meta", InstructionVersion: 1, Event: e, Member: m, Email: m, EmailGoogle: m, Consent: 15, Offset: int64(i)})
	}
	must(st.InsertAudienceFacts(ctx, facts))
	members, err := st.SegmentMembers(ctx, store.SegmentQuery{Platform: "meta", CampaignID: cmp.ID,
		Include: []string{"application"}, Exclude: []string{"page_view"}, Since: from})
	must(err)
	if len(members) == 0 {
		t.Fatal("scenario: the segment has no member to add")
	}
	change := func(action string) []store.AudienceChange {
		var out []store.AudienceChange
		for _, m := range members {
			m.Destination = "aud_1"
			out = append(out, store.AudienceChange{At: now, Action: action, Reason: "segment", BatchID: "b3", Platform: "meta", AudienceMember: m})
		}
		return out
	}
	must(st.InsertAudienceChanges(ctx, change("add")))
	_, err = st.AudienceMembers(ctx, "meta", cmp.ID)
	must(err)
	_, err = st.AudienceCampaigns(ctx, "meta")
	must(err)
	must(st.InsertAudienceChanges(ctx, change("remove")))
	must(st.DeleteAudienceFacts(ctx, "meta", cmp.ID, 0))

	share, partnerToken, err := st.CreateShare(ctx, actor, cl.ID, cmp.ID, "Job board", 10)
	must(err)
	_, _, err = st.CreateShare(ctx, actor, cl.ID, erased.ID, "Job board", 10)
	must(err)
	_, err = st.Shares(ctx, cl.ID, cmp.ID)
	must(err)
	_, err = st.ShareByToken(ctx, partnerToken)
	must(err)
	_, err = st.RevokeShare(ctx, actor, cl.ID, cmp.ID, share.ID)
	must(err)

	must(st.EraseCampaign(ctx, actor, cl.ID, erased.ID))
	must(st.WaitMutations(ctx))
	must(st.EndClient(ctx, "operator", cl.ID))
	res, err := st.EnforceRetention(ctx, now.Add(store.ControllerRetention+24*time.Hour))
	must(err)
	if len(res.PurgedVisitorData) == 0 || len(res.PurgedAudiences) == 0 || len(res.PurgedClients) == 0 {
		t.Fatalf("scenario: retention purged %+v, want visitor data, audience records and the client record", res)
	}
	must(st.WaitMutations(ctx))
}

// site is a call in the store's source that sends a statement.
type site struct {
	file     string // absolute path
	from, to int    // lines of the call
	fn       string // the function making it
}

func (s *site) String() string { return fmt.Sprintf("%s:%d (%s)", filepath.Base(s.file), s.from, s.fn) }

// span is the lines of a function that passes its query on.
type span struct {
	file     string
	from, to int
}

// siteIndex is what storeSites read from the store's source.
type siteIndex struct {
	files      map[string]bool // the store's source files
	calls      []*site
	forwarders []span
}

// sqlMethods are the driver.Conn methods that send SQL, with the index of
// their query argument.
var sqlMethods = map[string]int{"Exec": 1, "Select": 2, "Query": 1, "QueryRow": 1, "PrepareBatch": 1,
	"AsyncInsert": 1, "QueryFormat": 2, "InsertFormat": 2}

// storeSites reads the store's source (its non-test files) and returns
// every call that sends SQL: a call of a sqlMethods method, or of a store
// function that passes one of its parameters on as the query of such a
// call (a forwarder, like insertOne), made outside a forwarder.
func storeSites(t *testing.T) *siteIndex {
	t.Helper()
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		decl *ast.FuncDecl
		file string
	}
	var fns []fn
	idx := &siteIndex{files: map[string]bool{}}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		abs, err := filepath.Abs(name)
		if err != nil {
			t.Fatal(err)
		}
		idx.files[abs] = true
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				fns = append(fns, fn{fd, abs})
			}
		}
	}
	senders := map[string]int{} // function name → index of its query argument
	for m, i := range sqlMethods {
		senders[m] = i
	}
	forwarder := map[*ast.FuncDecl]bool{}
	// visit calls f for every call of a sender in fd with its query argument.
	visit := func(fd *ast.FuncDecl, f func(call *ast.CallExpr, query ast.Expr)) {
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			var name string
			switch fun := call.Fun.(type) {
			case *ast.SelectorExpr:
				name = fun.Sel.Name
			case *ast.Ident:
				name = fun.Name
			}
			if i, ok := senders[name]; ok && i < len(call.Args) {
				f(call, call.Args[i])
			}
			return true
		})
	}
	for changed := true; changed; {
		changed = false
		for _, f := range fns {
			if forwarder[f.decl] {
				continue
			}
			visit(f.decl, func(_ *ast.CallExpr, query ast.Expr) {
				if i := paramIndex(f.decl, query); i >= 0 && !forwarder[f.decl] {
					forwarder[f.decl], senders[f.decl.Name.Name], changed = true, i, true
				}
			})
		}
	}
	for _, f := range fns {
		if forwarder[f.decl] {
			idx.forwarders = append(idx.forwarders, span{f.file, fset.Position(f.decl.Pos()).Line, fset.Position(f.decl.End()).Line})
			continue
		}
		visit(f.decl, func(call *ast.CallExpr, _ ast.Expr) {
			idx.calls = append(idx.calls, &site{file: f.file, from: fset.Position(call.Pos()).Line,
				to: fset.Position(call.End()).Line, fn: f.decl.Name.Name})
		})
	}
	if len(idx.calls) == 0 {
		t.Fatal("no statement found in the store's source")
	}
	return idx
}

// paramIndex returns the index of the first string parameter of fd that
// expr refers to (a query fd passes on), or -1.
func paramIndex(fd *ast.FuncDecl, expr ast.Expr) int {
	params := map[string]int{}
	i := 0
	for _, field := range fd.Type.Params.List {
		for _, n := range field.Names {
			if typ, ok := field.Type.(*ast.Ident); ok && typ.Name == "string" {
				params[n.Name] = i
			}
			i++
		}
	}
	found := -1
	ast.Inspect(expr, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok && found < 0 {
			if i, ok := params[id.Name]; ok {
				found = i
			}
		}
		return found < 0
	})
	return found
}

// caller returns the site the statement being recorded is sent from: the
// first frame above the recording connection's method that is not in a
// forwarder. When that frame is in the store's source but at no site, stray
// names it; when it is outside the store's source (the scenario, testenv),
// both are empty.
func (idx *siteIndex) caller() (s *site, stray string) {
	pcs := make([]uintptr, 64)
	// Skip runtime.Callers, caller, recorder.add and the recConn method.
	frames := runtime.CallersFrames(pcs[:runtime.Callers(4, pcs)])
	for {
		f, more := frames.Next()
		if !slices.ContainsFunc(idx.forwarders, func(sp span) bool { return sp.file == f.File && sp.from <= f.Line && f.Line <= sp.to }) {
			for _, s := range idx.calls {
				if s.file == f.File && s.from <= f.Line && f.Line <= s.to {
					return s, ""
				}
			}
			if idx.files[f.File] {
				return nil, fmt.Sprintf("%s:%d", filepath.Base(f.File), f.Line)
			}
			return nil, ""
		}
		if !more {
			return nil, ""
		}
	}
}

// call is one statement the store (or the scenario) sent to 18.16.
type call struct {
	site  *site  // nil for the scenario's own statements
	stray string // see siteIndex.caller
	db    string
	sql   string
	args  []any
	// Batches: rows appended (Append), or whole columns (Column(i).Append).
	batch     bool
	batchRows [][]any
	columns   map[int]any
	aborted   bool
	sentRows  int // what the driver's batch held at Send

	returnsRows bool // a query: rows is what it returned on 18.16
	rows        int
	err         error // 18.16's answer
}

func (c *call) where() string {
	if c.site != nil {
		return c.site.String()
	}
	return "the scenario"
}

// statement is the SQL the current engine runs for c: its query with the
// arguments bound, or an insert with its rows as VALUES ("" for a batch
// that sent no row).
func (c *call) statement() (string, error) {
	if !c.batch {
		return bind(c.sql, c.args)
	}
	rows := c.batchRows
	if len(c.columns) > 0 {
		var err error
		if rows, err = transpose(c.columns); err != nil {
			return "", err
		}
	}
	if c.aborted {
		return "", nil
	}
	if len(rows) != c.sentRows {
		return "", fmt.Errorf("the insert sent %d rows, the recorder saw %d (appended in a way recBatch does not record?)", c.sentRows, len(rows))
	}
	if len(rows) == 0 {
		return "", nil
	}
	var b strings.Builder
	b.WriteString(c.sql)
	b.WriteString(" VALUES ")
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j, v := range r {
			if j > 0 {
				b.WriteString(", ")
			}
			lit, err := literal(v)
			if err != nil {
				return "", fmt.Errorf("row %d column %d: %w", i, j, err)
			}
			b.WriteString(lit)
		}
		b.WriteByte(')')
	}
	return b.String(), nil
}

// transpose turns columns (index → slice of values) into rows.
func transpose(columns map[int]any) ([][]any, error) {
	n := -1
	for i := range len(columns) {
		col, ok := columns[i]
		if !ok {
			return nil, fmt.Errorf("column %d not appended", i)
		}
		l := reflect.ValueOf(col).Len()
		if n >= 0 && l != n {
			return nil, fmt.Errorf("column %d has %d values, column 0 %d", i, l, n)
		}
		n = l
	}
	rows := make([][]any, n)
	for r := range rows {
		rows[r] = make([]any, len(columns))
		for i := range len(columns) {
			rows[r][i] = reflect.ValueOf(columns[i]).Index(r).Interface()
		}
	}
	return rows, nil
}

// bind replaces each ? outside string literals in query with the next
// argument as a ClickHouse literal, as the driver binds positional
// arguments on the client.
func bind(query string, args []any) (string, error) {
	var b strings.Builder
	n, quoted := 0, false
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case quoted && ch == '\\' && i+1 < len(query):
			b.WriteByte(ch)
			i++
			ch = query[i]
		case ch == '\'':
			quoted = !quoted
		case ch == '?' && !quoted:
			if n == len(args) {
				return "", fmt.Errorf("more placeholders than the %d arguments", len(args))
			}
			lit, err := literal(args[n])
			if err != nil {
				return "", fmt.Errorf("argument %d: %w", n+1, err)
			}
			b.WriteString(lit)
			n++
			continue
		}
		b.WriteByte(ch)
	}
	if n != len(args) {
		return "", fmt.Errorf("%d placeholders for %d arguments", n, len(args))
	}
	return b.String(), nil
}

// literal formats v as a ClickHouse literal: strings quoted (bytes outside
// printable ASCII escaped, so binary FixedString values survive), integers
// in decimal, times as DateTime (also what a Date column takes), string
// slices as arrays.
func literal(v any) (string, error) {
	switch v := v.(type) {
	case string:
		var b strings.Builder
		b.WriteByte('\'')
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c == '\'' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c >= 0x7f:
				fmt.Fprintf(&b, `\x%02x`, c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('\'')
		return b.String(), nil
	case time.Time:
		return fmt.Sprintf("toDateTime(%d, 'UTC')", v.Unix()), nil
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i], _ = literal(s)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), nil
	}
	return "", fmt.Errorf("no literal for a %T: teach literal (current_test.go) this type", v)
}

// recorder records every statement sent through the connections it opens.
type recorder struct {
	sites *siteIndex
	mu    sync.Mutex
	calls []*call
}

func (r *recorder) open(o *clickhouse.Options) (driver.Conn, error) {
	conn, err := clickhouse.Open(o)
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: conn, r: r, db: o.Auth.Database}, nil
}

func (r *recorder) add(db, sql string, args []any) *call {
	s, stray := r.sites.caller()
	c := &call{site: s, stray: stray, db: db, sql: sql, args: args}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	return c
}

// done returns the calls recorded so far; the recorder records on (the
// test's clean-up still sends statements) but no longer keeps them.
func (r *recorder) done() []*call {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls := r.calls
	r.calls = nil
	return calls
}

// recConn records the statements sent through it, in order.
type recConn struct {
	driver.Conn
	r  *recorder
	db string
}

func (c *recConn) Exec(ctx context.Context, query string, args ...any) error {
	rc := c.r.add(c.db, query, args)
	rc.err = c.Conn.Exec(ctx, query, args...)
	return rc.err
}

func (c *recConn) Select(ctx context.Context, dest any, query string, args ...any) error {
	rc := c.r.add(c.db, query, args)
	rc.err = c.Conn.Select(ctx, dest, query, args...)
	rc.returnsRows, rc.rows = true, reflect.ValueOf(dest).Elem().Len()
	return rc.err
}

func (c *recConn) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	rc := c.r.add(c.db, query, args)
	rows, err := c.Conn.Query(ctx, query, args...)
	rc.err = err
	if err != nil {
		return nil, err
	}
	rc.returnsRows = true
	return &recRows{Rows: rows, c: rc}, nil
}

func (c *recConn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	rc := c.r.add(c.db, query, args)
	row := c.Conn.QueryRow(ctx, query, args...)
	rc.err = row.Err()
	return row
}

func (c *recConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	rc := c.r.add(c.db, query, nil)
	rc.batch = true
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	rc.err = err
	if err != nil {
		return nil, err
	}
	return &recBatch{Batch: b, c: rc}, nil
}

// recRows counts the rows a query returned.
type recRows struct {
	driver.Rows
	c *call
}

func (r *recRows) Next() bool {
	ok := r.Rows.Next()
	if ok {
		r.c.rows++
	}
	return ok
}

// recBatch records the rows of an insert.
type recBatch struct {
	driver.Batch
	c *call
}

func (b *recBatch) Append(v ...any) error {
	b.c.batchRows = append(b.c.batchRows, slices.Clone(v))
	return b.Batch.Append(v...)
}

func (b *recBatch) Column(i int) driver.BatchColumn {
	return &recColumn{BatchColumn: b.Batch.Column(i), c: b.c, i: i}
}

func (b *recBatch) Send() error {
	b.c.sentRows = b.Batch.Rows()
	if err := b.Batch.Send(); err != nil {
		b.c.err = err
		return err
	}
	return nil
}

func (b *recBatch) Abort() error {
	b.c.aborted = true
	return b.Batch.Abort()
}

// recColumn records a whole column appended to an insert.
type recColumn struct {
	driver.BatchColumn
	c *call
	i int
}

func (c *recColumn) Append(v any) error {
	if c.c.columns == nil {
		c.c.columns = map[int]any{}
	}
	c.c.columns[c.i] = v
	return c.BatchColumn.Append(v)
}

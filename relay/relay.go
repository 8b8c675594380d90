// Package relay forwards hits from Kafka to one ad platform, only as the
// client instructed and the visitor consented, and records every send in
// the ClickHouse forwarding ledger.
//
// A Relay is one member of its platform's own Kafka consumer group (e.g.
// "jobpixel-forward-meta"), apart from the pipeline's, so a slow or failing
// platform never slows ingest, ClickHouse writes or the other platforms.
// The group membership is internal/group's; each assigned partition is
// consumed by one goroutine (consume), and eligibility.go decides what a
// hit may give (steps 2 and 3):
//
//  1. Hits are buffered for FlushInterval (or BatchSize hits).
//  2. For each hit the campaign's current instruction (refreshed every
//     Refresh, at most 5 s) is looked up: no instruction, a revoked one, a
//     sensitive campaign or another client's campaign means nothing leaves.
//  3. Conversions: for each conversion mapping of the hit's event, the hit
//     is forwarded only if consent.Decision.AllowsAds(platform) and the
//     conversion was not sent before (dedup by event id and destination,
//     loaded from forward_sent when the partition is assigned).
//     Audiences: if an audience segment of the instruction mentions the
//     event and Decision.AllowsAudience(platform), an audience fact (hashed
//     e-mail, event, time) is recorded; the audience reconciler turns facts
//     into additions and removals.
//  4. Conversions are sent per destination through the platform client,
//     each send only after its write-ahead intent (forward_intents) was
//     recorded, and marked done with its ledger rows;
//     every platform request gets a forward_ledger row, every item refused
//     for good a forward_dead_letters row, every item done a forward_sent
//     row. Retryable and throttled items are retried (the partition holds)
//     until MaxHold, then dead-lettered. Items whose credentials were
//     refused (credentialsFailed) are held, however long, until a new
//     instruction version brings credentials that work; the instruction's
//     status says so (forward_status, see note).
//  5. Only then is the Kafka offset committed.
//
// A restart resumes from the committed offset and skips what forward_sent
// records as done. The one window left is a crash after a platform
// accepted a request and before forward_sent recorded it: those items are
// sent again with the same dedup keys (Meta event_id, Google transactionId
// / orderId, LinkedIn eventId), which the platforms deduplicate; the first
// send stays on record as an intent without a done row (reported by the
// ledger API as unconfirmed).
//
// The member of the group that owns partition 0 also runs the audience
// reconciler (see audience.go).
package relay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/backoff"
	"github.com/jobpixel/jobpixel/internal/group"
	"github.com/jobpixel/jobpixel/internal/store"
)

// Config configures the relay of one platform.
type Config struct {
	Brokers []string
	Topic   string
	// Dialer connects to the brokers (see group.Config.Dialer); nil dials
	// in plain text.
	Dialer *kafka.Dialer
	// Group is the consumer group; it must differ from the pipeline's and
	// from the other platforms' groups.
	Group    string
	Platform consent.Platform

	// Key opens the instructions' credentials; without it instructions
	// with credentials cannot be used (their items are dead-lettered).
	Key *instruction.Key
	// Allow is the deployment's destination allow-list, checked again
	// before every send.
	Allow instruction.AllowList

	// FlushInterval is the longest a hit waits before it is forwarded
	// (default 500 ms); BatchSize the most hits per flush (default 1,000).
	FlushInterval time.Duration
	BatchSize     int
	// Refresh is how often instructions are re-read (default 2 s, at most
	// 5 s): a revocation stops forwarding within it.
	Refresh time.Duration
	// AudienceInterval is how often audiences are reconciled (default
	// 10 s); a changed or revoked instruction triggers a run at once.
	AudienceInterval time.Duration
	// MaxHold is how long retryable failures are retried before the items
	// are dead-lettered (default 15 min).
	MaxHold time.Duration
	// StopGrace is how long in-flight sends may finish after Run's
	// context ends (default 10 s; negative: abort at once, like a crash).
	StopGrace time.Duration
	// DedupWindow is how many recent sent conversions per partition are
	// remembered (default 100,000).
	DedupWindow int

	// Platform client settings; zero values mean the clients' defaults.
	HTTPClient      *http.Client
	Retry           forward.RetryPolicy
	MetaVersion     string
	LinkedInVersion string
	AdsVersion      string

	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Store is what the relay reads and writes; *store.Store implements it.
type Store interface {
	CurrentInstructions(ctx context.Context) ([]store.CurrentInstruction, error)
	InstructionVersion(ctx context.Context, campaignID string, version uint32) (store.Instruction, error)
	Campaigns(ctx context.Context) ([]store.Campaign, error)
	InsertLedger(ctx context.Context, rows []store.LedgerRow) error
	InsertIntents(ctx context.Context, rows []store.Intent) error
	InsertDeadLetters(ctx context.Context, rows []store.DeadLetter) error
	InsertSent(ctx context.Context, rows []store.Sent) error
	SentSince(ctx context.Context, platform string, partition int, from int64, limit int) ([]store.SentKey, error)
	InsertAudienceFacts(ctx context.Context, rows []store.AudienceFact) error
	SegmentMembers(ctx context.Context, q store.SegmentQuery) ([]store.AudienceMember, error)
	InsertAudienceChanges(ctx context.Context, rows []store.AudienceChange) error
	AudienceMembers(ctx context.Context, platform, campaignID string) ([]store.AudienceMember, error)
	AudienceCampaigns(ctx context.Context, platform string) ([]string, error)
	DeleteAudienceFacts(ctx context.Context, platform, campaignID string, version uint32) error
	InsertForwardStatus(ctx context.Context, rows []store.ForwardStatus) error
}

// Relay forwards one platform's share of the hits.
type Relay struct {
	cfg  Config
	st   Store
	log  *slog.Logger
	m    *metrics
	book *book
	aud  *reconciler
	// creds is the credentials state reported last (note).
	creds credentials
	// recordGrace: see defaultRecordGrace (tests simulate a crash with -1).
	recordGrace time.Duration
}

// New validates cfg and returns a relay.
func New(cfg Config, st Store, log *slog.Logger, reg prometheus.Registerer) (*Relay, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("relay: brokers, topic and group are required")
	}
	switch cfg.Platform {
	case consent.Google, consent.Meta, consent.LinkedIn:
	default:
		return nil, fmt.Errorf("relay: unknown platform %v", cfg.Platform)
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 500 * time.Millisecond
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 2 * time.Second
	}
	if cfg.Refresh > 5*time.Second {
		return nil, fmt.Errorf("relay: refresh %v is longer than 5s: a revocation must stop forwarding within seconds", cfg.Refresh)
	}
	if cfg.AudienceInterval <= 0 {
		cfg.AudienceInterval = 10 * time.Second
	}
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = 15 * time.Minute
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	r := &Relay{cfg: cfg, st: st, log: log.With("platform", cfg.Platform.String()),
		m: newMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"platform": cfg.Platform.String()}, reg))}
	r.recordGrace = defaultRecordGrace
	r.creds = credentials{dest: map[string]bool{}, version: map[versionKey]string{}}
	r.book = newBook(st, cfg.Key, cfg.Allow, cfg.Platform, cfg.Now, cfg.HTTPClient)
	r.aud = &reconciler{r: r, backoff: map[string]retryState{}, purged: map[string]uint32{}}
	return r, nil
}

// Run consumes until ctx ends; in-flight sends get StopGrace to finish and
// be recorded. Nothing uncommitted is lost: it is consumed again on the
// next start.
func (r *Relay) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := r.book.load(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("loading instructions failed, retrying", "err", err)
		backoff.Sleep(ctx, retryBackoff.Delay(attempt))
	}
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	go r.book.run(bctx, r.cfg.Refresh, func(err error) {
		r.m.errors.WithLabelValues("instructions").Inc()
		r.log.Warn("refreshing instructions failed; forwarding holds once they are stale", "err", err)
	})
	err := group.Run(ctx, group.Config{
		Brokers: r.cfg.Brokers, Topic: r.cfg.Topic, Group: r.cfg.Group, Dialer: r.cfg.Dialer,
		Consume: r.consume,
		// One reconciler per platform: the owner of partition 0.
		Singleton: r.aud.run,
		Log:       r.log, Errors: r.m.errors.WithLabelValues("kafka"),
	})
	if err != nil {
		return fmt.Errorf("relay %v: %w", r.cfg.Platform, err)
	}
	return nil
}

// retryBackoff is the wait between ClickHouse attempts and between the
// flushes of a held partition.
var retryBackoff = backoff.Exp{Base: 200 * time.Millisecond, Max: 5 * time.Second}

// partition is the state of one assigned partition.
type partition struct {
	*group.Partition
	msgs  []kafka.Message
	work  []*pending // conversions waiting to be (re)sent
	done  *keySet    // event id + destination of conversions done
	holds int        // consecutive flushes that could not finish
}

// pending is one conversion to send to one destination.
type pending struct {
	conv       forward.Conversion
	target     instruction.Target
	clientID   string
	campaignID string
	version    uint32
	basis      string
	eventID    [16]byte // dedupID: the platforms' dedup key and the forward_sent key
	partition  int32
	offset     int64
	first      time.Time // first attempt
	lastErr    error
}

func (p *pending) key() string { return string(p.eventID[:]) + "|" + p.target.Key() }

// consume forwards the hits of one partition until ctx ends (the end of
// the generation or shutdown): a flush per FlushInterval or BatchSize hits,
// committed once everything in it is done; while a flush holds, nothing
// further is read.
func (r *Relay) consume(ctx context.Context, part *group.Partition) {
	st := &partition{Partition: part, done: newKeySet(r.cfg.DedupWindow)}
	if !r.loadSent(ctx, st) {
		return
	}
	deadline := time.Now().Add(r.cfg.FlushInterval)
	hold := false
	for {
		if !hold {
			fctx, fcancel := context.WithDeadline(ctx, deadline)
			msg, err := st.Fetch(fctx) // a failed fetch is counted, logged and backed off
			fcancel()
			if err == nil {
				st.msgs = append(st.msgs, msg)
				r.m.consumed.Inc()
				if len(st.msgs) < r.cfg.BatchSize {
					continue
				}
			}
		}
		if st.Pending() || len(st.work) > 0 {
			var ok bool
			if ok, hold = r.flush(ctx, st); !ok {
				return
			}
		}
		if ctx.Err() != nil {
			// Whatever is not committed is consumed again by the next owner.
			return
		}
		if hold {
			// Retry the failed sends after a backoff, without reading
			// further: offsets after them are not committed either.
			st.holds++
			r.m.holding.Set(1)
			backoff.Sleep(ctx, retryBackoff.Delay(st.holds))
		} else {
			st.holds = 0
			r.m.holding.Set(0)
		}
		deadline = time.Now().Add(r.cfg.FlushInterval)
	}
}

// loadSent loads the conversions of the partition already sent, retrying
// until ClickHouse answers; false means ctx ended first.
func (r *Relay) loadSent(ctx context.Context, st *partition) bool {
	for attempt := 0; ; attempt++ {
		keys, err := r.st.SentSince(ctx, r.cfg.Platform.String(), st.ID, 0, r.cfg.DedupWindow)
		if err == nil {
			for i := len(keys) - 1; i >= 0; i-- {
				st.done.add(string(keys[i].EventID[:]) + "|" + keys[i].Destination)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.m.errors.WithLabelValues("clickhouse").Inc()
		r.log.Warn("reading sent conversions failed, retrying", "partition", st.ID, "err", err)
		backoff.Sleep(ctx, retryBackoff.Delay(attempt))
	}
}

// defaultRecordGrace is how long, after shutdown began, the records of
// requests a platform already answered may still be written.
const defaultRecordGrace = 30 * time.Second

// graceContext returns a context that outlives ctx by grace: sends and
// their records use it, so a batch in flight can finish and be recorded on
// shutdown. A negative grace ends it with ctx.
func graceContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if grace < 0 {
			cancel()
			return
		}
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(gctx, func() { t.Stop() })
	})
	return gctx, func() { stop(); cancel() }
}

// flush turns the buffered hits into work, sends it, records the outcome
// and commits. ok is false if the partition must stop; hold is true if
// something must be retried before the partition may advance.
func (r *Relay) flush(runCtx context.Context, st *partition) (ok, hold bool) {
	snap := r.book.get()
	if snap == nil || r.cfg.Now().Sub(snap.at) > 2*r.cfg.Refresh+time.Second {
		// Instructions are stale: a revocation might be unknown. Hold.
		r.m.errors.WithLabelValues("stale_instructions").Inc()
		return true, true
	}
	// Platform requests may run StopGrace past shutdown (a negative grace
	// abandons them at once); what was answered is recorded in any case.
	sctx, cancel := graceContext(runCtx, r.cfg.StopGrace)
	defer cancel()
	rctx, rcancel := graceContext(runCtx, r.recordGrace)
	defer rcancel()

	var facts []store.AudienceFact
	var dead []store.DeadLetter
	var sent []store.Sent
	now := r.cfg.Now().UTC()
	// A conversion already held (the same dedup id from another copy of a
	// retried event in this batch) is not taken twice.
	held := make(map[string]bool, len(st.work))
	for _, p := range st.work {
		held[p.key()] = true
	}
	for i := range st.msgs {
		w, f, d := r.take(snap, st, &st.msgs[i], now)
		for _, p := range w {
			if held[p.key()] {
				r.m.skipped.WithLabelValues("already_sent").Inc()
				continue
			}
			held[p.key()] = true
			st.work = append(st.work, p)
		}
		facts = append(facts, f...)
		dead = append(dead, d...)
	}
	st.msgs = st.msgs[:0]
	// Re-check held work against the current instructions.
	st.work = r.recheck(snap, st.work)

	if !r.record(rctx, "audience facts", func(c context.Context) error { return r.st.InsertAudienceFacts(c, facts) }) {
		return false, false
	}
	groups := groupWork(st.work)
	plans := make([]*convSend, len(groups))
	var intents []store.Intent
	for i, g := range groups {
		plans[i] = r.prepareConversions(snap.campaigns[g[0].campaignID], g, now)
		if plans[i].err == nil {
			intents = append(intents, plans[i].intent)
		}
	}
	// Write ahead: no request leaves before its intent is recorded. If it
	// cannot be, nothing is sent and the partition holds.
	if !r.record(rctx, "intents", func(c context.Context) error { return r.st.InsertIntents(c, intents) }) {
		return false, false
	}
	var ledger []store.LedgerRow
	var done []store.Intent
	var retry []*pending
	for _, p := range plans {
		l, s, d, again, fin := r.sendConversions(sctx, p, now)
		ledger = append(ledger, l...)
		sent = append(sent, s...)
		dead = append(dead, d...)
		retry = append(retry, again...)
		done = append(done, fin...)
	}
	// Record what was done before anything else: it was sent. The intents
	// are marked done only once their ledger rows are written.
	if !r.record(rctx, "ledger", func(c context.Context) error { return r.st.InsertLedger(c, ledger) }) ||
		!r.record(rctx, "intents done", func(c context.Context) error { return r.st.InsertIntents(c, done) }) ||
		!r.record(rctx, "dead letters", func(c context.Context) error { return r.st.InsertDeadLetters(c, dead) }) ||
		!r.record(rctx, "sent conversions", func(c context.Context) error { return r.st.InsertSent(c, sent) }) {
		return false, false
	}
	for _, s := range sent {
		st.done.add(string(s.EventID[:]) + "|" + s.Destination)
	}
	st.work = retry
	if len(st.work) > 0 {
		return true, true
	}
	if err := st.Commit(); err != nil {
		return runCtx.Err() == nil, false
	}
	return true, false
}

// record writes to ClickHouse, retrying while ctx lives.
func (r *Relay) record(ctx context.Context, what string, write func(context.Context) error) bool {
	for attempt := 0; ; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := write(wctx)
		cancel()
		if err == nil {
			return true
		}
		r.m.errors.WithLabelValues("clickhouse").Inc()
		r.log.Warn("recording failed, retrying", "what", what, "attempt", attempt+1, "err", err)
		if ctx.Err() != nil {
			return false
		}
		backoff.Sleep(ctx, retryBackoff.Delay(attempt))
	}
}

// groupWork groups work by campaign, instruction version and destination.
func groupWork(work []*pending) [][]*pending {
	idx := map[string]int{}
	var out [][]*pending
	for _, p := range work {
		k := fmt.Sprintf("%s|%d|%s", p.campaignID, p.version, p.target.Key())
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], p)
	}
	return out
}

func (r *Relay) deadLetter(p *pending, kind forward.Kind, status int, code, reason string, now time.Time) store.DeadLetter {
	return store.DeadLetter{At: now, ClientID: p.clientID, CampaignID: p.campaignID, Platform: r.cfg.Platform.String(),
		Purpose: store.PurposeConversions, API: p.target.API, Destination: p.target.Key(), InstructionVersion: p.version,
		Item: hex.EncodeToString(p.eventID[:]), Kind: kind.String(), Status: uint16(status), Code: code, Reason: reason,
		KafkaPartition: p.partition, KafkaOffset: p.offset}
}

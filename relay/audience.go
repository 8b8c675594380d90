package relay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/backoff"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// reconciler keeps each platform audience equal to its segment.
//
// Desired members come from audience_facts: consenting visitors (by hashed
// e-mail) with an include event of the segment in its window and no
// exclude event, under an instruction version after the campaign's last
// revocation. Current members come from audience_members (what was sent).
// The difference is sent as additions (under the current instruction
// version and its credentials) and removals (with the credentials of the
// version each member was added under). A revoked instruction, a campaign
// marked sensitive or deleted, or a destination dropped from the
// instruction empties the audience: every member added is removed.
//
// Only the member of the consumer group that owns partition 0 runs it, so
// one reconciler per platform sends. What a run could not send is sent by
// a later run (the difference is recomputed); what a platform refused for
// good is dead-lettered and retried with a growing delay.
type reconciler struct {
	r       *Relay
	backoff map[string]retryState // destination|version → when to try again
	purged  map[string]uint32     // campaign → last revocation whose facts were deleted
}

type retryState struct {
	next time.Time
	n    int
}

// run reconciles every AudienceInterval, and at once when the instructions
// change, until runCtx ends (the end of the generation or shutdown).
func (a *reconciler) run(runCtx context.Context) {
	t := time.NewTicker(a.r.cfg.AudienceInterval)
	defer t.Stop()
	for {
		if err := a.once(runCtx); err != nil && runCtx.Err() == nil {
			a.r.m.errors.WithLabelValues("audiences").Inc()
			a.r.log.Warn("audience reconciliation failed", "err", err)
		}
		select {
		case <-runCtx.Done():
			return
		case <-t.C:
		case <-a.r.book.changed:
		}
	}
}

// once reconciles every campaign that has audiences or audience members.
func (a *reconciler) once(ctx context.Context) error {
	snap := a.r.book.get()
	if snap == nil || a.r.cfg.Now().Sub(snap.at) > 2*a.r.cfg.Refresh+time.Second {
		return fmt.Errorf("instructions are stale")
	}
	p := a.r.cfg.Platform.String()
	have, err := a.r.st.AudienceCampaigns(ctx, p)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	for _, c := range have {
		set[c] = true
	}
	for id, e := range snap.campaigns {
		if len(e.audiences) > 0 {
			set[id] = true
		}
	}
	ids := slices.Sorted(maps.Keys(set))
	var errs []string
	for _, id := range ids {
		if err := a.campaign(ctx, snap, id); err != nil {
			errs = append(errs, id+": "+err.Error())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func names(evs []schemas.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.String()
	}
	return out
}

// campaign reconciles the audiences of one campaign: removals first, then
// additions, then, after a revocation, the deletion of the facts it made
// unusable. It carries on past a failed destination and returns every
// failure, joined.
func (a *reconciler) campaign(ctx context.Context, snap *snapshot, id string) error {
	r := a.r
	p := r.cfg.Platform.String()
	now := r.cfg.Now().UTC()
	e := snap.campaigns[id]
	why := e.state()
	if why == "" && e.err != nil {
		// A configuration problem, not a revocation: neither add nor remove.
		return fmt.Errorf("instruction unusable: %w", e.err)
	}
	desired := map[string]map[string]store.AudienceMember{}
	auds := map[string]instruction.Audience{}
	if why == "" {
		for _, au := range e.audiences {
			set, err := a.segment(ctx, id, e, au, now)
			if err != nil {
				return err
			}
			desired[au.Key()] = set
			auds[au.Key()] = au
		}
	}
	current, err := r.st.AudienceMembers(ctx, p, id)
	if err != nil {
		return err
	}
	errs := a.removeLeavers(ctx, id, why, desired, current, now)
	errs = append(errs, a.addJoiners(ctx, e, auds, desired, current, now)...)
	// After a revocation, facts collected before it may no longer be used:
	// delete them once nothing added from them is left.
	if e != nil && e.inst.LastRevoked > a.purged[id] && (why == "" || len(current) == 0) {
		if err := r.st.DeleteAudienceFacts(ctx, p, id, e.inst.LastRevoked); err != nil {
			errs = append(errs, err.Error())
		} else {
			a.purged[id] = e.inst.LastRevoked
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// segment returns the desired members of audience au of campaign id under
// instruction e, by member.
func (a *reconciler) segment(ctx context.Context, id string, e *entry, au instruction.Audience, now time.Time) (map[string]store.AudienceMember, error) {
	from := now.AddDate(0, 0, -au.Days)
	if s, ok := e.since[au.Key()]; ok && s.After(from) {
		from = s // facts of hits from before the audience was instructed do not count
	}
	ms, err := a.r.st.SegmentMembers(ctx, store.SegmentQuery{Platform: a.r.cfg.Platform.String(), CampaignID: id,
		AfterVersion: e.inst.LastRevoked, Include: names(au.Include), Exclude: names(au.Exclude), Since: from})
	if err != nil {
		return nil, err
	}
	set := make(map[string]store.AudienceMember, len(ms))
	for _, m := range ms {
		m.Destination = au.Key()
		set[m.Member] = m
	}
	return set, nil
}

// removeLeavers removes the current members that are not desired, per
// destination and instruction version they were added under, in order; why
// is the campaign's state (empty when it may be forwarded). It returns the
// failures.
func (a *reconciler) removeLeavers(ctx context.Context, id, why string, desired map[string]map[string]store.AudienceMember,
	current []store.AudienceMember, now time.Time) []string {
	type remKey struct {
		dest    string
		version uint32
	}
	removals := map[remKey][]store.AudienceMember{}
	for _, m := range current {
		if _, ok := desired[m.Destination][m.Member]; !ok {
			k := remKey{m.Destination, m.InstructionVersion}
			removals[k] = append(removals[k], m)
		}
	}
	keys := slices.SortedFunc(maps.Keys(removals), func(x, y remKey) int {
		if c := strings.Compare(x.dest, y.dest); c != 0 {
			return c
		}
		return int(x.version) - int(y.version)
	})
	var errs []string
	for _, k := range keys {
		reason := why
		switch {
		case reason != "":
		case desired[k.dest] == nil:
			reason = "instruction_changed"
		default:
			reason = "left_segment"
		}
		if err := a.remove(ctx, id, k.dest, k.version, removals[k], reason, now); err != nil {
			errs = append(errs, err.Error())
		}
	}
	return errs
}

// addJoiners adds the desired members that are not current, per
// destination in order, under instruction e. It returns the failures.
func (a *reconciler) addJoiners(ctx context.Context, e *entry, auds map[string]instruction.Audience,
	desired map[string]map[string]store.AudienceMember, current []store.AudienceMember, now time.Time) []string {
	have := map[string]map[string]bool{}
	for _, m := range current {
		if have[m.Destination] == nil {
			have[m.Destination] = map[string]bool{}
		}
		have[m.Destination][m.Member] = true
	}
	var errs []string
	for _, d := range slices.Sorted(maps.Keys(desired)) {
		var add []store.AudienceMember
		for _, m := range desired[d] {
			if !have[d][m.Member] {
				add = append(add, m)
			}
		}
		if len(add) == 0 {
			continue
		}
		slices.SortFunc(add, func(x, y store.AudienceMember) int { return strings.Compare(x.Member, y.Member) })
		if err := a.add(ctx, e, auds[d], add, now); err != nil {
			errs = append(errs, err.Error())
		}
	}
	return errs
}

// later delays the next attempt of key after a permanent failure:
// AudienceInterval doubling per failure, at most an hour.
func (a *reconciler) later(key string, now time.Time) {
	st := a.backoff[key]
	st.n++
	st.next = now.Add(backoff.Exp{Base: a.r.cfg.AudienceInterval, Max: time.Hour, Doublings: 10}.Delay(st.n))
	a.backoff[key] = st
}

func (a *reconciler) waiting(key string, now time.Time) bool {
	st, ok := a.backoff[key]
	return ok && now.Before(st.next)
}

// add adds members to audience au under the current instruction e.
func (a *reconciler) add(ctx context.Context, e *entry, au instruction.Audience, ms []store.AudienceMember, now time.Time) error {
	key := au.Key() + "|" + strconv.FormatUint(uint64(e.inst.Version), 10) + "|add"
	if a.waiting(key, now) {
		return nil
	}
	for i := range ms {
		ms[i].Destination = au.Key()
		ms[i].InstructionVersion = e.inst.Version
		ms[i].ClientID = e.inst.ClientID
	}
	sender, dest, err := a.r.audienceSender(au, versionKey{e.inst.CampaignID, e.inst.Version}, e.spec, e.creds)
	if err == nil {
		err = a.r.cfg.Allow.Check(au.Endpoint)
	}
	if err != nil {
		return a.refuse(ctx, store.PurposeAudienceAdd, au, ms, e.inst.Version, err, key, now)
	}
	return a.send(ctx, "add", sender.AddMembers, dest, au, ms, e.inst.Version, "segment", key, now)
}

// remove removes members added under instruction version v from the
// audience with key dest, with that version's credentials.
func (a *reconciler) remove(ctx context.Context, campaignID, dest string, v uint32, ms []store.AudienceMember, reason string, now time.Time) error {
	key := dest + "|" + strconv.FormatUint(uint64(v), 10) + "|remove"
	if a.waiting(key, now) {
		return nil
	}
	// err, if set, is about the credentials (or the spec): dead-lettered
	// below once the audience is known.
	spec, creds, err := a.r.book.version(ctx, campaignID, v)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("members of %s were added under instruction v%d, which cannot be read", dest, v)
	}
	var au instruction.Audience
	found := false
	for _, x := range spec.Audiences(a.r.cfg.Platform) {
		if x.Key() == dest {
			au, found = x, true
		}
	}
	if !found {
		if err != nil {
			return err
		}
		return fmt.Errorf("instruction v%d of %s has no audience %s", v, campaignID, dest)
	}
	sender, d, serr := a.r.audienceSender(au, versionKey{campaignID, v}, spec, creds)
	if err == nil {
		err = serr
	}
	if err == nil {
		err = a.r.cfg.Allow.Check(au.Endpoint)
	}
	if err != nil {
		return a.refuse(ctx, store.PurposeAudienceRemove, au, ms, v, err, key, now)
	}
	return a.send(ctx, "remove", sender.RemoveMembers, d, au, ms, v, reason, key, now)
}

// refuse dead-letters members that cannot be sent at all.
func (a *reconciler) refuse(ctx context.Context, purpose string, au instruction.Audience, ms []store.AudienceMember, v uint32, err error, key string, now time.Time) error {
	a.later(key, now)
	dead := make([]store.DeadLetter, len(ms))
	group := newIntentID() // no request was made: the refused members share an id of ours
	for i, m := range ms {
		dead[i] = store.DeadLetter{At: now, ClientID: m.ClientID, CampaignID: m.CampaignID, Platform: a.r.cfg.Platform.String(),
			Purpose: purpose, API: au.API, Destination: au.Key(), InstructionVersion: v, Item: memberRef(group, i),
			Kind: forward.Permanent.String(), Reason: clip(err.Error())}
	}
	a.r.m.items.WithLabelValues(purpose, "dead_letter").Add(float64(len(ms)))
	if !a.r.record(ctx, "dead letters", func(c context.Context) error { return a.r.st.InsertDeadLetters(c, dead) }) {
		return ctx.Err()
	}
	return fmt.Errorf("%s %s: %w", purpose, au.Key(), err)
}

type membersFunc func(ctx context.Context, dest forward.Destination, members []forward.Member) (forward.Result, error)

// send makes one add or remove call and records its ledger rows, dead
// letters and the members' new state.
func (a *reconciler) send(ctx context.Context, action string, do membersFunc, dest forward.Destination, au instruction.Audience,
	ms []store.AudienceMember, v uint32, reason, key string, now time.Time) error {
	r := a.r
	p := r.cfg.Platform
	purpose := store.PurposeAudienceAdd
	if action == "remove" {
		purpose = store.PurposeAudienceRemove
	}
	fms := make([]forward.Member, len(ms))
	hashed := make([]uint32, len(ms))
	bases := make([]string, len(ms))
	for i, m := range ms {
		fms[i] = member(p, m)
		hashed[i] = hashedIDs(fms[i].User)
		bases[i] = basis(consent.Decision(m.Consent))
	}
	check := "allows_audience(" + p.String() + ")"
	intent := store.Intent{ID: newIntentID(), At: now, ClientID: ms[0].ClientID, CampaignID: ms[0].CampaignID,
		Platform: p.String(), Purpose: purpose, API: au.API, Destination: au.Key(), InstructionVersion: v,
		Items: uint32(len(ms))}
	for _, h := range hashed {
		intent.HashedIdentifiers += h
	}
	if action == "remove" {
		intent.ConsentBasis = "removal: " + reason
	} else {
		intent.ConsentBasis = summarize(check, bases)
	}
	// Write ahead: the request leaves only once its intent is recorded.
	if !r.record(ctx, "intents", func(c context.Context) error { return r.st.InsertIntents(c, []store.Intent{intent}) }) {
		return ctx.Err()
	}
	res, _ := do(ctx, dest, fms)
	base := store.LedgerRow{At: now, ClientID: ms[0].ClientID, CampaignID: ms[0].CampaignID, Platform: p.String(),
		Purpose: purpose, API: au.API, Destination: au.Key(), InstructionVersion: v}
	if action == "remove" {
		check = ""
		base.ConsentBasis = "removal: " + reason
	}
	ledger, itemBatch := ledgerRows(res, base, hashed, bases, check)
	done := []store.Intent{intent.Completed(batchIDs(ledger), r.cfg.Now().UTC())}
	failed := map[int]error{}
	for _, f := range res.Failures() {
		failed[f.Index] = f.Err
	}
	changes, dead, permanent, refused, firstErr := a.outcomes(action, purpose, reason, au, v, ms, failed, itemBatch, now)
	if permanent || refused != nil {
		a.later(key, now)
	} else {
		delete(a.backoff, key)
	}
	if !r.record(ctx, "ledger", func(c context.Context) error { return r.st.InsertLedger(c, ledger) }) ||
		!r.record(ctx, "intents done", func(c context.Context) error { return r.st.InsertIntents(c, done) }) ||
		!r.record(ctx, "dead letters", func(c context.Context) error { return r.st.InsertDeadLetters(c, dead) }) ||
		!r.record(ctx, "audience changes", func(c context.Context) error { return r.st.InsertAudienceChanges(c, changes) }) {
		return ctx.Err()
	}
	switch k := (versionKey{ms[0].CampaignID, v}); {
	case refused != nil:
		r.note(ctx, k, ms[0].ClientID, au.Key(), credentialsStatus(p, refused), now)
	case len(changes) > 0:
		r.note(ctx, k, ms[0].ClientID, au.Key(), "", now)
	}
	if firstErr != nil {
		return fmt.Errorf("%s %s: %d of %d members not done: %w", action, au.Key(), len(failed), len(ms), firstErr)
	}
	return nil
}

// outcomes sorts the members of one add or remove call (failed: by index,
// the members the platform did not take) into the members' new state for
// those done and dead letters for those refused for good; the others,
// those whose credentials were refused included, are sent again by a later
// run. permanent reports a refusal for good, refused the credentials
// failure (credentialsFailed) if any, firstErr the first failure.
func (a *reconciler) outcomes(action, purpose, reason string, au instruction.Audience, v uint32, ms []store.AudienceMember,
	failed map[int]error, itemBatch []string, now time.Time) (changes []store.AudienceChange, dead []store.DeadLetter, permanent bool, refused, firstErr error) {
	r := a.r
	p := r.cfg.Platform
	for i, m := range ms {
		if err, ok := failed[i]; ok {
			if firstErr == nil {
				firstErr = err
			}
			kind := forward.Classify(err)
			if credentialsFailed(err) {
				refused = err
				r.m.items.WithLabelValues(purpose, "held_credentials").Inc()
				continue
			}
			if kind == forward.Permanent {
				permanent = true
				status, code, why := errDetail(err)
				dead = append(dead, store.DeadLetter{At: now, ClientID: m.ClientID, CampaignID: m.CampaignID, Platform: p.String(),
					Purpose: purpose, API: au.API, Destination: au.Key(), InstructionVersion: v, Item: memberRef(itemBatch[i], i),
					Kind: kind.String(), Status: uint16(status), Code: code, Reason: why})
				r.m.items.WithLabelValues(purpose, "dead_letter").Inc()
			} else {
				r.m.items.WithLabelValues(purpose, "retry").Inc() // the next run sends it again
			}
			continue
		}
		r.m.items.WithLabelValues(purpose, "sent").Inc()
		m.Destination = au.Key()
		changes = append(changes, store.AudienceChange{At: now, Action: action, Reason: reason, BatchID: itemBatch[i],
			Platform: p.String(), AudienceMember: m})
	}
	return changes, dead, permanent, refused, firstErr
}

// memberRef names an audience member in a dead letter by ids of ours — the
// batch it was in and its place there — never by the person's identifier
// (the e-mail hash), which dead letters and the ledger do not hold.
func memberRef(batch string, i int) string { return batch + "#" + strconv.Itoa(i) }

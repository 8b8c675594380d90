package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/google"
	"github.com/jobpixel/jobpixel/forward/linkedin"
	"github.com/jobpixel/jobpixel/forward/meta"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/store"
)

// destination returns d with the credentials of version k (spec and
// creds): its token source when they refresh (one per version, kept
// across batches), else its access token.
func (r *Relay) destination(d forward.Destination, k versionKey, spec instruction.Spec, creds instruction.Credentials) (forward.Destination, error) {
	src, err := r.book.tokens.source(k, spec, creds)
	if err != nil {
		return d, err
	}
	if src != nil {
		d.Tokens = src
	} else {
		d.Token = creds.Token(r.cfg.Platform)
	}
	return d, nil
}

// conversionSender returns the client for target t with the instruction's
// endpoint and credentials, and the destination with its token or token
// source.
func (r *Relay) conversionSender(t instruction.Target, e *entry) (forward.ConversionSender, forward.Destination, error) {
	dest, err := r.destination(t.Dest, versionKey{e.inst.CampaignID, e.inst.Version}, e.spec, e.creds)
	if err != nil {
		return nil, dest, err
	}
	switch t.API {
	case instruction.APIMetaCAPI:
		return &meta.Client{BaseURL: t.Endpoint, Version: r.cfg.MetaVersion, HTTPClient: r.cfg.HTTPClient,
			Retry: r.cfg.Retry, Now: r.cfg.Now}, dest, nil
	case instruction.APIGoogleEvents:
		return &google.DataManager{BaseURL: t.Endpoint, HTTPClient: r.cfg.HTTPClient, Retry: r.cfg.Retry,
			Now: r.cfg.Now, TermsAccepted: e.spec.TermsAccepted()}, dest, nil
	case instruction.APIGoogleAds:
		return &google.Ads{BaseURL: t.Endpoint, Version: r.cfg.AdsVersion, HTTPClient: r.cfg.HTTPClient,
			Retry: r.cfg.Retry, Now: r.cfg.Now, DeveloperToken: forward.Secret(e.creds.GoogleDevToken)}, dest, nil
	case instruction.APILinkedInCAPI:
		return &linkedin.Client{BaseURL: t.Endpoint, Version: r.cfg.LinkedInVersion, HTTPClient: r.cfg.HTTPClient,
			Retry: r.cfg.Retry, Now: r.cfg.Now}, dest, nil
	}
	return nil, dest, fmt.Errorf("no conversion client for %q", t.API)
}

// audienceSender returns the client for audience a of instruction
// version k (spec and creds).
func (r *Relay) audienceSender(a instruction.Audience, k versionKey, spec instruction.Spec, creds instruction.Credentials) (forward.AudienceSender, forward.Destination, error) {
	dest, err := r.destination(a.Dest, k, spec, creds)
	if err != nil {
		return nil, dest, err
	}
	switch a.API {
	case instruction.APIMetaAudience:
		return &meta.Client{BaseURL: a.Endpoint, Version: r.cfg.MetaVersion, HTTPClient: r.cfg.HTTPClient,
			Retry: r.cfg.Retry, Now: r.cfg.Now}, dest, nil
	case instruction.APIGoogleAudience:
		return &google.DataManager{BaseURL: a.Endpoint, HTTPClient: r.cfg.HTTPClient, Retry: r.cfg.Retry,
			Now: r.cfg.Now, TermsAccepted: spec.TermsAccepted()}, dest, nil
	case instruction.APILinkedInSegment:
		return &linkedin.Client{BaseURL: a.Endpoint, Version: r.cfg.LinkedInVersion, HTTPClient: r.cfg.HTTPClient,
			Retry: r.cfg.Retry, Now: r.cfg.Now}, dest, nil
	}
	return nil, dest, fmt.Errorf("no audience client for %q", a.API)
}

// errDetail extracts status, code and reason from a classified error.
func errDetail(err error) (status int, code, reason string) {
	var fe *forward.Error
	if errors.As(err, &fe) {
		status, code = fe.Status, fe.Code
	}
	return status, code, clip(err.Error())
}

// convSend is one group (same campaign, version and destination) ready to
// send: its client, destination and write-ahead intent, or why it cannot be
// sent at all.
type convSend struct {
	g      []*pending
	sender forward.ConversionSender
	dest   forward.Destination
	err    error // the group cannot be sent: every item is dead-lettered
	intent store.Intent
	convs  []forward.Conversion
	hashed []uint32
	bases  []string
	check  string
}

// prepareConversions builds group g's request and its intent. Nothing is
// sent before the intent is recorded.
func (r *Relay) prepareConversions(e *entry, g []*pending, now time.Time) *convSend {
	t := g[0].target
	cs := &convSend{g: g}
	cs.sender, cs.dest, cs.err = r.conversionSender(t, e)
	if cs.err == nil {
		cs.err = r.cfg.Allow.Check(t.Endpoint)
	}
	if cs.err != nil {
		return cs
	}
	cs.convs = make([]forward.Conversion, len(g))
	cs.hashed = make([]uint32, len(g))
	cs.bases = make([]string, len(g))
	var hashed uint32
	for i, p := range g {
		cs.convs[i] = p.conv
		cs.hashed[i] = hashedIDs(p.conv.User)
		cs.bases[i] = p.basis
		hashed += cs.hashed[i]
	}
	cs.check = "allows_ads(" + r.cfg.Platform.String() + ")"
	cs.intent = store.Intent{ID: newIntentID(), At: now, ClientID: g[0].clientID, CampaignID: g[0].campaignID,
		Platform: r.cfg.Platform.String(), Purpose: store.PurposeConversions, API: t.API, Destination: t.Key(),
		InstructionVersion: g[0].version, Items: uint32(len(g)), HashedIdentifiers: hashed,
		ConsentBasis: summarize(cs.check, cs.bases)}
	return cs
}

// sendConversions sends one prepared group, whose intent is recorded, and
// sorts every item into sent, dead-lettered or to be retried (held, however
// long, when the credentials were refused; the state is noted). done is
// the intent's done row (nil if nothing was to be sent), to be recorded
// right after the ledger rows.
func (r *Relay) sendConversions(ctx context.Context, cs *convSend, now time.Time) (
	ledger []store.LedgerRow, sent []store.Sent, dead []store.DeadLetter, retry []*pending, done []store.Intent) {
	g := cs.g
	t := g[0].target
	finish := func(p *pending) {
		sent = append(sent, store.Sent{At: now, Platform: r.cfg.Platform.String(), Partition: p.partition, Offset: p.offset,
			EventID: p.eventID, ClientID: p.clientID, CampaignID: p.campaignID, Destination: p.target.Key()})
	}
	var refused error
	fail := func(p *pending, err error) {
		if credentialsFailed(err) {
			refused, p.lastErr = err, err
			r.m.items.WithLabelValues(store.PurposeConversions, "held_credentials").Inc()
			retry = append(retry, p)
			return
		}
		kind := forward.Classify(err)
		status, code, reason := errDetail(err)
		if kind == forward.Retryable || kind == forward.Throttled {
			p.lastErr = err
			if now.Sub(p.first) < r.cfg.MaxHold {
				r.m.items.WithLabelValues(store.PurposeConversions, "retry").Inc()
				retry = append(retry, p)
				return
			}
			reason = fmt.Sprintf("gave up after retrying for %v: %s", r.cfg.MaxHold, reason)
		}
		r.m.items.WithLabelValues(store.PurposeConversions, "dead_letter").Inc()
		dead = append(dead, r.deadLetter(p, kind, status, code, reason, now))
		finish(p)
	}
	if cs.err != nil {
		for _, p := range g {
			fail(p, forward.Rejectf("%v", cs.err))
		}
		return
	}
	res, _ := cs.sender.SendConversions(ctx, cs.dest, cs.convs)
	base := store.LedgerRow{At: now, ClientID: g[0].clientID, CampaignID: g[0].campaignID, Platform: r.cfg.Platform.String(),
		Purpose: store.PurposeConversions, API: t.API, Destination: t.Key(), InstructionVersion: g[0].version}
	ledger, _ = ledgerRows(res, base, cs.hashed, cs.bases, cs.check)
	done = []store.Intent{cs.intent.Completed(batchIDs(ledger), r.cfg.Now().UTC())}
	failed := map[int]error{}
	for _, f := range res.Failures() {
		failed[f.Index] = f.Err
	}
	for i, p := range g {
		if err, ok := failed[i]; ok {
			fail(p, err)
			continue
		}
		r.m.items.WithLabelValues(store.PurposeConversions, "sent").Inc()
		finish(p)
	}
	// The credentials are refused, or work if the platform took an item.
	switch k := (versionKey{g[0].campaignID, g[0].version}); {
	case refused != nil:
		r.note(ctx, k, g[0].clientID, t.Key(), credentialsStatus(r.cfg.Platform, refused), now)
	case len(failed) < len(g):
		r.note(ctx, k, g[0].clientID, t.Key(), "", now)
	}
	return ledger, sent, dead, retry, done
}

// batchIDs returns the batch ids of ledger rows.
func batchIDs(rows []store.LedgerRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.BatchID
	}
	return out
}

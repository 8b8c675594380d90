package relay

import (
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// take decides what one hit gives: conversions to send, audience facts and
// dead letters (instructions that cannot be used). Nothing leaves for a
// bot, a campaign that may not be forwarded (see entry.state) or a hit of
// another client than the instruction's; every hit skipped is counted by
// reason.
func (r *Relay) take(snap *snapshot, st *partition, msg *kafka.Message, now time.Time) ([]*pending, []store.AudienceFact, []store.DeadLetter) {
	var h schemas.Hit
	if err := h.Decode(msg.Value); err != nil {
		r.m.skipped.WithLabelValues("undecodable").Inc()
		r.log.Error("skipping undecodable message", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return nil, nil, nil
	}
	if h.Flags&schemas.FlagBot != 0 {
		r.m.skipped.WithLabelValues("bot").Inc()
		return nil, nil, nil
	}
	e := snap.campaigns[string(h.Campaign)]
	if why := e.state(); why != "" {
		r.m.skipped.WithLabelValues(why).Inc()
		return nil, nil, nil
	}
	if string(h.Client) != e.inst.ClientID {
		r.m.skipped.WithLabelValues("other_client").Inc()
		return nil, nil, nil
	}
	d := consent.Decision(h.Consent)
	work, dead := r.conversions(&h, e, st, msg, d, now)
	var facts []store.AudienceFact
	if f, ok := r.audienceFact(&h, e, msg, d); ok {
		facts = append(facts, f)
	}
	return work, facts, dead
}

// conversions returns the conversions of h to send, one per conversion
// mapping of its event, where the visitor allowed ads on the platform and
// the conversion was not sent before; with an unusable instruction they
// are dead letters instead.
func (r *Relay) conversions(h *schemas.Hit, e *entry, st *partition, msg *kafka.Message, d consent.Decision, now time.Time) ([]*pending, []store.DeadLetter) {
	var work []*pending
	var dead []store.DeadLetter
	for _, t := range e.conv {
		if t.Event != h.Event {
			continue
		}
		if !d.AllowsAds(r.cfg.Platform) {
			r.m.skipped.WithLabelValues("no_consent").Inc()
			continue
		}
		if e.before(t.Key(), h.ReceivedMs) {
			r.m.skipped.WithLabelValues("before_instruction").Inc()
			continue
		}
		pd := &pending{target: t, clientID: e.inst.ClientID, campaignID: e.inst.CampaignID, version: e.inst.Version,
			basis: basis(d), eventID: dedupID(h), partition: int32(msg.Partition), offset: msg.Offset, first: now}
		if st.done.has(pd.key()) {
			r.m.skipped.WithLabelValues("already_sent").Inc()
			continue
		}
		if e.err != nil {
			dead = append(dead, r.deadLetter(pd, forward.Permanent, 0, "", "instruction unusable: "+e.err.Error(), now))
			continue
		}
		conv, ok := conversion(h, t, d)
		if !ok {
			r.m.skipped.WithLabelValues("no_identifier").Inc()
			continue
		}
		pd.conv = conv
		work = append(work, pd)
	}
	return work, dead
}

// audienceFact returns the audience fact of h, if an audience segment of
// the instruction mentions its event and the visitor allowed audiences on
// the platform.
func (r *Relay) audienceFact(h *schemas.Hit, e *entry, msg *kafka.Message, d consent.Decision) (store.AudienceFact, bool) {
	if len(e.audiences) == 0 || e.err != nil {
		return store.AudienceFact{}, false
	}
	mentioned := false
	for _, a := range e.audiences {
		mentioned = mentioned || a.Mentions(h.Event)
	}
	switch {
	case !mentioned:
	case !d.AllowsAudience(r.cfg.Platform):
		r.m.skipped.WithLabelValues("no_audience_consent").Inc()
	default:
		if f, ok := fact(h, r.cfg.Platform, e, msg); ok {
			return f, true
		}
		r.m.skipped.WithLabelValues("no_identifier").Inc()
	}
	return store.AudienceFact{}, false
}

// recheck drops held work whose campaign may no longer be forwarded or
// whose destination left the instruction, and moves the rest to the
// instruction's current version.
func (r *Relay) recheck(snap *snapshot, work []*pending) []*pending {
	out := work[:0]
	for _, p := range work {
		e := snap.campaigns[p.campaignID]
		if why := e.state(); why != "" {
			r.m.skipped.WithLabelValues(why).Inc()
			continue
		}
		keep := false
		for _, t := range e.conv {
			if t.Key() == p.target.Key() && t.Event == p.target.Event {
				p.target, p.version = t, e.inst.Version
				keep = true
				break
			}
		}
		if !keep {
			r.m.skipped.WithLabelValues("instruction_changed").Inc()
			continue
		}
		out = append(out, p)
	}
	return out
}

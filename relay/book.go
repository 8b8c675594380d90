package relay

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/store"
)

// entry is what the forwarder knows about one campaign's instruction.
type entry struct {
	inst      store.CurrentInstruction
	spec      instruction.Spec
	creds     instruction.Credentials
	conv      []instruction.Target   // of the relay's platform
	audiences []instruction.Audience // of the relay's platform
	// err makes the instruction unusable (credentials do not open, a
	// destination left the allow-list, the spec does not decode): what it
	// would send is dead-lettered with this reason.
	err error
	// since is, per destination key, when the client first instructed it
	// in the versions since the last revocation without a break: hits
	// received before are never forwarded to it (instructionSince).
	since map[string]time.Time
	// Campaign state.
	live      bool
	sensitive bool
	owner     string
}

// state says whether the campaign may be forwarded now, and why not.
func (e *entry) state() string {
	switch {
	case e == nil:
		return "no_instruction"
	case e.inst.Revoked:
		return "revoked"
	case !e.live:
		return "no_campaign"
	case e.sensitive:
		return "sensitive"
	case e.owner != e.inst.ClientID:
		return "other_client"
	}
	return ""
}

// snapshot is an immutable view of every campaign's instruction.
type snapshot struct {
	at        time.Time
	campaigns map[string]*entry
}

// book keeps the instructions of every campaign, refreshed from ClickHouse
// every cfg.Refresh. A revocation or a campaign marked sensitive stops
// forwarding at the next refresh.
type book struct {
	st       Store
	key      *instruction.Key
	allow    instruction.AllowList
	platform consent.Platform
	now      func() time.Time
	// tokens are the token sources of the instructions' credentials that
	// refresh; those of versions no longer current go at each load.
	tokens *tokens

	mu      sync.Mutex
	snap    *snapshot
	changed chan struct{} // signalled when an instruction or sensitivity changed
}

func newBook(st Store, key *instruction.Key, allow instruction.AllowList, p consent.Platform, now func() time.Time, hc *http.Client) *book {
	return &book{st: st, key: key, allow: allow, platform: p, now: now, tokens: newTokens(p, hc, now), changed: make(chan struct{}, 1)}
}

// get returns the current snapshot (nil before the first load).
func (b *book) get() *snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snap
}

// load reads instructions and campaigns and replaces the snapshot.
func (b *book) load(ctx context.Context) error {
	cur, err := b.st.CurrentInstructions(ctx)
	if err != nil {
		return err
	}
	camps, err := b.st.Campaigns(ctx)
	if err != nil {
		return err
	}
	byID := make(map[string]store.Campaign, len(camps))
	for _, c := range camps {
		byID[c.ID] = c
	}
	old := b.get()
	next := &snapshot{at: b.now(), campaigns: make(map[string]*entry, len(cur))}
	changed := false
	for _, ci := range cur {
		c, live := byID[ci.CampaignID]
		var e *entry
		if old != nil {
			if prev := old.campaigns[ci.CampaignID]; prev != nil && prev.inst.ID == ci.ID {
				cp := *prev // same version: keep decoded spec and credentials
				e = &cp
			}
		}
		if e == nil {
			e = b.decode(ci)
			if e.err == nil && !e.inst.Revoked {
				if e.since, err = b.instructionSince(ctx, e); err != nil {
					return err
				}
			}
			changed = true
		}
		if e.live != live || e.sensitive != c.Sensitive || e.owner != c.ClientID {
			changed = true
		}
		e.live, e.sensitive, e.owner = live, c.Sensitive, c.ClientID
		if e.err == nil && !e.inst.Revoked {
			if err := e.spec.Check(b.allow); err != nil {
				e.err = err
			}
		}
		next.campaigns[ci.CampaignID] = e
	}
	b.mu.Lock()
	b.snap = next
	b.mu.Unlock()
	b.tokens.retain(next)
	if changed {
		select {
		case b.changed <- struct{}{}:
		default:
		}
	}
	return nil
}

func (b *book) decode(ci store.CurrentInstruction) *entry {
	e := &entry{inst: ci}
	if ci.Revoked {
		return e
	}
	spec, err := instruction.Decode(ci.Spec)
	if err != nil {
		e.err = err
		return e
	}
	e.spec = spec
	e.conv = spec.Conversions(b.platform)
	e.audiences = spec.Audiences(b.platform)
	if len(e.conv)+len(e.audiences) == 0 {
		return e
	}
	creds, err := b.key.Open(ci.Secrets, ci.KeyID, instruction.AAD(ci.ClientID, ci.CampaignID, ci.Version))
	if err != nil {
		e.err = fmt.Errorf("instruction v%d: %w", ci.Version, err)
		return e
	}
	e.creds = creds
	return e
}

// run refreshes the book every interval until ctx ends.
func (b *book) run(ctx context.Context, every time.Duration, onErr func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := b.load(ctx); err != nil && ctx.Err() == nil {
			onErr(err)
		}
	}
}

// version returns the instruction (any version) of a campaign with its
// decoded spec and credentials, for removing members added under it.
func (b *book) version(ctx context.Context, campaignID string, v uint32) (instruction.Spec, instruction.Credentials, error) {
	in, err := b.st.InstructionVersion(ctx, campaignID, v)
	if err != nil {
		return instruction.Spec{}, instruction.Credentials{}, err
	}
	spec, err := instruction.Decode(in.Spec)
	if err != nil {
		return spec, instruction.Credentials{}, err
	}
	creds, err := b.key.Open(in.Secrets, in.KeyID, instruction.AAD(in.ClientID, in.CampaignID, in.Version))
	if err != nil {
		return spec, creds, fmt.Errorf("instruction v%d: %w", v, err)
	}
	return spec, creds, nil
}

// instructionSince returns, for each destination of e's platform, the
// creation time of the oldest version in the unbroken run of versions up to
// e's (after the last revocation) that names it: hits received before it
// took effect are never forwarded under it, whatever the consumer group's
// offsets (a fresh group starts at the oldest hit).
func (b *book) instructionSince(ctx context.Context, e *entry) (map[string]time.Time, error) {
	since := make(map[string]time.Time, len(e.conv)+len(e.audiences))
	for _, k := range destKeys(e.conv, e.audiences) {
		since[k] = e.inst.CreatedAt
	}
	open := maps.Clone(since)
	for v := e.inst.Version - 1; v > e.inst.LastRevoked && len(open) > 0; v-- {
		in, err := b.st.InstructionVersion(ctx, e.inst.CampaignID, v)
		if err != nil {
			return nil, fmt.Errorf("instruction %s v%d: %w", e.inst.CampaignID, v, err)
		}
		spec, err := instruction.Decode(in.Spec)
		if in.Revoked || err != nil {
			break
		}
		named := map[string]bool{}
		for _, k := range destKeys(spec.Conversions(b.platform), spec.Audiences(b.platform)) {
			named[k] = true
		}
		for k := range open {
			if named[k] {
				since[k] = in.CreatedAt
			} else {
				delete(open, k)
			}
		}
	}
	return since, nil
}

func destKeys(conv []instruction.Target, auds []instruction.Audience) []string {
	var out []string
	for _, t := range conv {
		out = append(out, t.Key())
	}
	for _, a := range auds {
		out = append(out, a.Key())
	}
	return out
}

// before reports whether a hit received at ms came before destination key
// was instructed (to the second: instructions are timed in seconds).
func (e *entry) before(key string, ms int64) bool {
	s, ok := e.since[key]
	return ok && ms < s.Truncate(time.Second).UnixMilli()
}

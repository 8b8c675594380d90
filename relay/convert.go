package relay

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// dedupID is the id a conversion is sent and recorded under: derived from
// the campaign and the page's client event id when the hit has one, so
// that every copy of a retried event (the same eid from a pixel and a
// beacon, a batch sent again after a 503) has the same platform dedup key
// and the relay sends only the first; else the hit's own event id.
func dedupID(h *schemas.Hit) [16]byte {
	if len(h.ClientEventID) == 0 {
		return h.ID
	}
	return schemas.ClientEventKey(h.Campaign, h.ClientEventID)
}

// conversion builds what target t needs from hit h, and nothing more. ok
// is false when the hit carries nothing the platform could match it by.
// Google receives the consent as it is; Meta receives LDU unless the
// visitor also allowed personalised ads on Meta.
func conversion(h *schemas.Hit, t instruction.Target, d consent.Decision) (forward.Conversion, bool) {
	p := t.Platform
	id := dedupID(h)
	c := forward.Conversion{
		ID:      hex.EncodeToString(id[:]),
		Name:    t.Name,
		Time:    time.UnixMilli(h.ReceivedMs).UTC(),
		Value:   t.Value,
		Consent: forward.Consent{AdUserData: d.AllowsAds(p), AdPersonalization: d.AllowsAudience(p)},
	}
	switch t.API {
	case instruction.APIMetaCAPI:
		c.SourceURL = string(h.URL)
		c.UserAgent = string(h.UserAgent)
		c.User.Email = hash(h.EmailMeta)
		c.FBC, c.FBP = string(h.Fbc), string(h.Fbp)
		if h.Flags&schemas.FlagFullIP != 0 {
			c.IP = netip.AddrFrom16(h.IP).Unmap()
		}
		c.LDU = !d.AllowsAudience(consent.Meta)
		return c, c.User.Email != "" || c.FBC != "" || c.FBP != "" || c.IP.IsValid()
	case instruction.APIGoogleEvents:
		c.User.GoogleEmail = hash(h.EmailGoogle)
		c.GCLID, c.GBRAID, c.WBRAID = string(h.Gclid), string(h.Gbraid), string(h.Wbraid)
		return c, c.User.GoogleEmail != "" || c.GCLID != "" || c.GBRAID != "" || c.WBRAID != ""
	case instruction.APIGoogleAds:
		c.GCLID, c.GBRAID, c.WBRAID = string(h.Gclid), string(h.Gbraid), string(h.Wbraid)
		return c, c.GCLID != "" || c.GBRAID != "" || c.WBRAID != ""
	case instruction.APILinkedInCAPI:
		c.User.Email = hash(h.EmailMeta) // LinkedIn: trimmed, lowercased, SHA-256, as Meta
		c.LiFatID = string(h.LiFatID)
		return c, c.User.Email != "" || c.LiFatID != ""
	}
	return c, false
}

// hash returns b if it is a hex SHA-256, else "" (never plaintext).
func hash(b []byte) string {
	if s := string(b); forward.IsSHA256(s) {
		return s
	}
	return ""
}

// memberKey is the platform's key for the visitor: the e-mail hash in the
// platform's normalisation.
func memberKey(p consent.Platform, email, emailGoogle string) string {
	if p == consent.Google {
		return emailGoogle
	}
	return email
}

// fact records a consenting visitor's audience-relevant event.
func fact(h *schemas.Hit, p consent.Platform, e *entry, msg *kafka.Message) (store.AudienceFact, bool) {
	email, emailGoogle := hash(h.EmailMeta), hash(h.EmailGoogle)
	member := memberKey(p, email, emailGoogle)
	if member == "" {
		return store.AudienceFact{}, false
	}
	f := store.AudienceFact{
		At: time.UnixMilli(h.ReceivedMs).UTC(), ClientID: e.inst.ClientID, CampaignID: e.inst.CampaignID,
		Platform: p.String(), InstructionVersion: e.inst.Version, Event: h.Event.String(), Member: member,
		Consent: h.Consent, Partition: int32(msg.Partition), Offset: msg.Offset,
	}
	// Keep only the hash the platform uses.
	if p == consent.Google {
		f.EmailGoogle = emailGoogle
	} else {
		f.Email = email
	}
	return f, true
}

// member builds an audience member for platform p.
func member(p consent.Platform, m store.AudienceMember) forward.Member {
	d := consent.Decision(m.Consent)
	fm := forward.Member{ID: m.Member, Consent: forward.Consent{AdUserData: d.AllowsAds(p), AdPersonalization: d.AllowsAudience(p)}}
	if p == consent.Google {
		fm.User.GoogleEmail = m.EmailGoogle
	} else {
		fm.User.Email = m.Email
	}
	return fm
}

// basis names the consent sources of a decision, e.g. "tcf+consent_mode".
func basis(d consent.Decision) string {
	var s []string
	if d&consent.SourceTCF != 0 {
		s = append(s, "tcf")
	}
	if d&consent.SourceConsentMode != 0 {
		s = append(s, "consent_mode")
	}
	if d&consent.SourceExplicit != 0 {
		s = append(s, "explicit")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "+")
}

// summarize turns per-item bases into the ledger's consent_basis, e.g.
// "allows_ads(meta): consent_mode×3, tcf×1".
func summarize(check string, bases []string) string {
	n := map[string]int{}
	for _, b := range bases {
		n[b]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, n[k])
	}
	return check + ": " + strings.Join(parts, ", ")
}

func hashedIDs(id forward.Identity) uint32 {
	n := uint32(0)
	for _, v := range []string{id.Email, id.GoogleEmail, id.Phone, id.GooglePhone} {
		if v != "" {
			n++
		}
	}
	return n
}

// batchItems maps each platform request of res to the indexes (into the
// n items given) of the items it carried.
func batchItems(res forward.Result, n int) [][]int {
	rejected := make(map[int]bool, len(res.Rejected))
	for _, e := range res.Rejected {
		rejected[e.Index] = true
	}
	kept := make([]int, 0, n)
	for i := range n {
		if !rejected[i] {
			kept = append(kept, i)
		}
	}
	out := make([][]int, len(res.Batches))
	pos := 0
	for i, b := range res.Batches {
		end := min(pos+b.Size, len(kept))
		out[i] = kept[pos:end]
		pos = end
	}
	return out
}

// ledgerRows returns one row per attempted request of res, and for each
// item the batch id of the request that carried it ("" if none). base
// carries the common columns; hashed and bases are per item.
func ledgerRows(res forward.Result, base store.LedgerRow, hashed []uint32, bases []string, check string) ([]store.LedgerRow, []string) {
	var out []store.LedgerRow
	itemBatch := make([]string, len(hashed))
	for i, idx := range batchItems(res, len(hashed)) {
		b := res.Batches[i]
		if b.Attempts == 0 {
			continue // never sent
		}
		row := base
		row.BatchID = newBatchID()
		row.Items = uint32(b.Size)
		row.Sent = uint32(b.Sent)
		row.Failed = uint32(len(b.Failed))
		row.Status = uint16(b.Status)
		row.Attempts = uint16(min(b.Attempts, 65535))
		var bs []string
		for _, j := range idx {
			row.HashedIdentifiers += hashed[j]
			bs = append(bs, bases[j])
			itemBatch[j] = row.BatchID
		}
		if check != "" {
			row.ConsentBasis = summarize(check, bs)
		}
		switch {
		case b.Err != nil:
			row.Outcome = "failed"
			row.Error = clip(b.Err.Error())
		case len(b.Failed) > 0:
			row.Outcome = "partial"
			row.Error = clip(b.Failed[0].Err.Error())
		default:
			row.Outcome = "sent"
		}
		out = append(out, row)
	}
	return out, itemBatch
}

func newBatchID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "bat_" + hex.EncodeToString(b[:])
}

// newIntentID returns a random intent id.
func newIntentID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "int_" + hex.EncodeToString(b[:])
}

func clip(s string) string {
	if len(s) > 500 {
		return s[:500] + "..."
	}
	return s
}

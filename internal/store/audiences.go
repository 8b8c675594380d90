package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// AudienceFact is a consenting visitor's event that may put them into (or
// keep them out of) a campaign's audience on one platform. Member is the
// platform's member key (a hex SHA-256 of the e-mail in that platform's
// normalisation); Email and EmailGoogle are the hashes the platforms need.
type AudienceFact struct {
	At                 time.Time
	ClientID           string
	CampaignID         string
	Platform           string
	InstructionVersion uint32
	Event              string
	Member             string
	Email              string
	EmailGoogle        string
	Consent            uint32 // consent.Decision bits of the hit
	Partition          int32
	Offset             int64
}

// InsertAudienceFacts writes facts in one insert.
func (s *Store) InsertAudienceFacts(ctx context.Context, rows []AudienceFact) error {
	err := s.insertRows(ctx, `INSERT INTO audience_facts (date, at, client_id, campaign_id, platform,
		instruction_version, event, member, email, email_google, consent, kafka_partition, kafka_offset)`, len(rows), func(i int) []any {
		r := &rows[i]
		at := r.At.UTC()
		return []any{utcDay(at), at, r.ClientID, r.CampaignID, r.Platform, r.InstructionVersion, r.Event,
			r.Member, r.Email, r.EmailGoogle, r.Consent, uint32(r.Partition), uint64(r.Offset)}
	})
	if err != nil {
		return fmt.Errorf("store: insert audience facts: %w", err)
	}
	return nil
}

// SegmentQuery selects the members of an audience segment.
type SegmentQuery struct {
	Platform   string
	CampaignID string
	// AfterVersion: only facts collected under a later instruction version
	// count (the last revocation's version).
	AfterVersion uint32
	// Include and Exclude are event names (page_view, application, ...).
	Include, Exclude []string
	// Since starts the window.
	Since time.Time
}

// AudienceMember is a member as an audience upload or removal needs it.
type AudienceMember struct {
	ClientID           string
	CampaignID         string
	Destination        string
	Member             string
	Email              string
	EmailGoogle        string
	InstructionVersion uint32
	// Consent is the consent of the member's latest fact (SegmentMembers
	// only).
	Consent uint32
}

var validEvent = map[string]bool{"page_view": true, "apply_click": true, "application": true, "vacancy_email": true}

func eventList(events []string) (string, error) {
	q := make([]string, len(events))
	for i, e := range events {
		if !validEvent[e] {
			return "", fmt.Errorf("store: segment: unknown event %q", e)
		}
		q[i] = "'" + e + "'"
	}
	return strings.Join(q, ", "), nil
}

// SegmentMembers returns the members with an Include event since q.Since
// and no Exclude event in the same window.
func (s *Store) SegmentMembers(ctx context.Context, q SegmentQuery) ([]AudienceMember, error) {
	if len(q.Include) == 0 {
		return nil, nil
	}
	inc, err := eventList(q.Include)
	if err != nil {
		return nil, err
	}
	having := "countIf(event IN (" + inc + ")) > 0"
	if len(q.Exclude) > 0 {
		exc, err := eventList(q.Exclude)
		if err != nil {
			return nil, err
		}
		having += " AND countIf(event IN (" + exc + ")) = 0"
	}
	var rows []struct {
		Member      string `ch:"member"`
		ClientID    string `ch:"client_id"`
		Email       string `ch:"email"`
		EmailGoogle string `ch:"email_google"`
		Version     uint32 `ch:"v"`
		Consent     uint32 `ch:"consent"`
	}
	since := q.Since.UTC()
	err = s.conn.Select(ctx, &rows, `SELECT member, any(client_id) AS client_id,
			argMax(email, at) AS email, argMax(email_google, at) AS email_google, max(instruction_version) AS v,
			argMax(consent, at) AS consent
		FROM audience_facts
		WHERE platform = ? AND campaign_id = ? AND instruction_version > ?
			AND date >= toDate(?) AND at >= toDateTime(?)
		GROUP BY member
		HAVING `+having+`
		ORDER BY member`,
		q.Platform, q.CampaignID, q.AfterVersion, since.Format(time.DateOnly), since.Format(time.DateTime))
	if err != nil {
		return nil, fmt.Errorf("store: segment members of %s: %w", q.CampaignID, err)
	}
	out := make([]AudienceMember, len(rows))
	for i, r := range rows {
		out[i] = AudienceMember{ClientID: r.ClientID, CampaignID: q.CampaignID, Member: r.Member,
			Email: r.Email, EmailGoogle: r.EmailGoogle, InstructionVersion: r.Version, Consent: r.Consent}
	}
	return out, nil
}

// AudienceChange records members added to or removed from a platform
// audience.
type AudienceChange struct {
	At     time.Time
	Action string // "add" or "remove"
	Reason string
	// BatchID ties the change to its ledger row.
	BatchID  string
	Platform string
	AudienceMember
}

// InsertAudienceChanges writes changes in one insert.
func (s *Store) InsertAudienceChanges(ctx context.Context, rows []AudienceChange) error {
	seq := uint64(time.Now().UnixNano())
	err := s.insertRows(ctx, `INSERT INTO audience_members (at, seq, client_id, campaign_id, platform,
		destination, member, email, email_google, action, instruction_version, reason, batch_id)`, len(rows), func(i int) []any {
		r := &rows[i]
		return []any{r.At.UTC(), seq + uint64(i), r.ClientID, r.CampaignID, r.Platform, r.Destination, r.Member,
			r.Email, r.EmailGoogle, r.Action, r.InstructionVersion, r.Reason, r.BatchID}
	})
	if err != nil {
		return fmt.Errorf("store: insert audience changes: %w", err)
	}
	return nil
}

// AudienceMembers returns the members currently added (latest action
// "add") to any audience of a campaign on a platform, with the instruction
// version they were added under.
func (s *Store) AudienceMembers(ctx context.Context, platform, campaignID string) ([]AudienceMember, error) {
	var rows []struct {
		Destination string `ch:"destination"`
		Member      string `ch:"member"`
		Action      string `ch:"action"`
		ClientID    string `ch:"client_id"`
		Email       string `ch:"email"`
		EmailGoogle string `ch:"email_google"`
		Version     uint32 `ch:"v"`
	}
	err := s.conn.Select(ctx, &rows, `SELECT destination, member, toString(argMax(action, seq)) AS action,
			argMax(client_id, seq) AS client_id, argMax(email, seq) AS email,
			argMax(email_google, seq) AS email_google, argMax(instruction_version, seq) AS v
		FROM audience_members
		WHERE platform = ? AND campaign_id = ?
		GROUP BY destination, member
		HAVING action = 'add'
		ORDER BY destination, member`, platform, campaignID)
	if err != nil {
		return nil, fmt.Errorf("store: audience members of %s: %w", campaignID, err)
	}
	out := make([]AudienceMember, len(rows))
	for i, r := range rows {
		out[i] = AudienceMember{ClientID: r.ClientID, CampaignID: campaignID, Destination: r.Destination,
			Member: r.Member, Email: r.Email, EmailGoogle: r.EmailGoogle, InstructionVersion: r.Version}
	}
	return out, nil
}

// AudienceCampaigns returns the campaigns that have ever had audience
// members on a platform.
func (s *Store) AudienceCampaigns(ctx context.Context, platform string) ([]string, error) {
	var rows []struct {
		ID string `ch:"campaign_id"`
	}
	if err := s.conn.Select(ctx, &rows, `SELECT DISTINCT campaign_id FROM audience_members WHERE platform = ? ORDER BY campaign_id`, platform); err != nil {
		return nil, fmt.Errorf("store: audience campaigns: %w", err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out, nil
}

// DeleteAudienceFacts deletes a campaign's facts on a platform collected
// under instruction versions up to version (an asynchronous mutation):
// after a revocation they may no longer be used.
func (s *Store) DeleteAudienceFacts(ctx context.Context, platform, campaignID string, version uint32) error {
	if err := s.deleteWhere(ctx, "audience_facts", "platform = ? AND campaign_id = ? AND instruction_version <= ?",
		platform, campaignID, version); err != nil {
		return fmt.Errorf("store: delete audience facts of %s: %w", campaignID, err)
	}
	return nil
}

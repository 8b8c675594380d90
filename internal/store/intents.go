package store

import (
	"context"
	"fmt"
	"time"
)

// Intent is the write-ahead record of one platform request (a conversions
// send, an audience upload or removal): written before the request leaves,
// then again with Done once the platform's answer (its ledger rows) was
// recorded. Counts and ids only, never identifiers.
type Intent struct {
	ID                 string    `json:"intent_id"`
	At                 time.Time `json:"at"`
	Done               bool      `json:"-"`
	RecordedAt         time.Time `json:"-"`
	ClientID           string    `json:"-"`
	CampaignID         string    `json:"campaign"`
	Platform           string    `json:"platform"`
	Purpose            string    `json:"purpose"`
	API                string    `json:"api"`
	Destination        string    `json:"destination"`
	InstructionVersion uint32    `json:"instruction_version"`
	Items              uint32    `json:"items"`
	HashedIdentifiers  uint32    `json:"hashed_identifiers"`
	ConsentBasis       string    `json:"consent_basis"`
	BatchIDs           []string  `json:"-"` // done rows: the ledger rows' batch ids
}

// Completed returns the done row of intent i naming the ledger batches
// written for it, recorded at now. It keeps i's at (and so its date), so a
// ledger read of the intent's day finds both rows.
func (i Intent) Completed(batchIDs []string, now time.Time) Intent {
	i.Done = true
	i.RecordedAt = now
	i.BatchIDs = append([]string{}, batchIDs...)
	return i
}

// UnconfirmedNote explains an unconfirmed intent in the ledger.
const UnconfirmedNote = "the process stopped before the platform's answer was recorded; " +
	"items not recorded as sent are sent again, with the same dedup keys, when forwarding resumes and still allows them"

// UnconfirmedAfter is how old an intent without a done row must be before
// it is reported as unconfirmed (younger ones may still be in flight).
const UnconfirmedAfter = 2 * time.Minute

// Unconfirmed is an intent whose request may have left but whose answer was
// never recorded.
type Unconfirmed struct {
	Intent
	Note string `json:"note"`
}

const intentCols = `date, at, intent_id, done, recorded_at, client_id, campaign_id, platform, purpose, api,
	destination, instruction_version, items, hashed_identifiers, consent_basis, batch_ids`

// InsertIntents writes intent rows (pending or done) in one insert.
func (s *Store) InsertIntents(ctx context.Context, rows []Intent) error {
	err := s.insertRows(ctx, "INSERT INTO forward_intents ("+intentCols+")", len(rows), func(i int) []any {
		r := &rows[i]
		at := r.At.UTC()
		rec := r.RecordedAt.UTC()
		if r.RecordedAt.IsZero() {
			rec = at
		}
		done := uint8(0)
		if r.Done {
			done = 1
		}
		ids := r.BatchIDs
		if ids == nil {
			ids = []string{}
		}
		return []any{utcDay(at), at, r.ID, done, rec, r.ClientID, r.CampaignID, r.Platform, r.Purpose, r.API,
			r.Destination, r.InstructionVersion, r.Items, r.HashedIdentifiers, r.ConsentBasis, ids}
	})
	if err != nil {
		return fmt.Errorf("store: insert intents: %w", err)
	}
	return nil
}

// UnconfirmedIntents returns a client's intents of a campaign between from
// and to (days, inclusive) that have no done row and began before before,
// newest first, at most limit.
func (s *Store) UnconfirmedIntents(ctx context.Context, clientID, campaignID string, from, to, before time.Time, limit int) ([]Unconfirmed, error) {
	var rows []struct {
		ID                 string    `ch:"intent_id"`
		At                 time.Time `ch:"first_at"`
		CampaignID         string    `ch:"campaign"`
		Platform           string    `ch:"plat"`
		Purpose            string    `ch:"purp"`
		API                string    `ch:"api_name"`
		Destination        string    `ch:"dest"`
		InstructionVersion uint32    `ch:"version"`
		Items              uint32    `ch:"n_items"`
		HashedIdentifiers  uint32    `ch:"n_hashed"`
		ConsentBasis       string    `ch:"basis"`
	}
	err := s.conn.Select(ctx, &rows, `SELECT intent_id, min(at) AS first_at, any(campaign_id) AS campaign,
			any(platform) AS plat, any(purpose) AS purp, any(api) AS api_name, any(destination) AS dest,
			any(instruction_version) AS version, any(items) AS n_items, any(hashed_identifiers) AS n_hashed,
			any(consent_basis) AS basis
		FROM forward_intents
		WHERE client_id = ? AND campaign_id = ? AND date >= toDate(?) AND date <= toDate(?)
		GROUP BY intent_id
		HAVING max(done) = 0 AND min(at) < toDateTime(?)
		ORDER BY first_at DESC, intent_id LIMIT ?`, clientID, campaignID, from.Format(time.DateOnly), to.Format(time.DateOnly),
		uint32(before.Unix()), limit)
	if err != nil {
		return nil, fmt.Errorf("store: unconfirmed intents of %s: %w", campaignID, err)
	}
	out := make([]Unconfirmed, len(rows))
	for i, r := range rows {
		out[i] = Unconfirmed{Intent: Intent{ID: r.ID, At: r.At.UTC(), ClientID: clientID, CampaignID: r.CampaignID,
			Platform: r.Platform, Purpose: r.Purpose, API: r.API, Destination: r.Destination,
			InstructionVersion: r.InstructionVersion, Items: r.Items, HashedIdentifiers: r.HashedIdentifiers,
			ConsentBasis: r.ConsentBasis}, Note: UnconfirmedNote}
	}
	return out, nil
}

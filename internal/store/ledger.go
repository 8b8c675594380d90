package store

import (
	"context"
	"fmt"
	"time"
)

// LedgerRow records one platform request: a forwarded batch of
// conversions, an audience upload or an audience removal.
type LedgerRow struct {
	At                 time.Time `json:"at"`
	ClientID           string    `json:"-"`
	CampaignID         string    `json:"campaign"`
	Platform           string    `json:"platform"`
	Purpose            string    `json:"purpose"` // conversions, audience_add, audience_remove
	API                string    `json:"api"`
	Destination        string    `json:"destination"`
	InstructionVersion uint32    `json:"instruction_version"`
	ConsentBasis       string    `json:"consent_basis"`
	Items              uint32    `json:"items"`
	Sent               uint32    `json:"sent"`
	Failed             uint32    `json:"failed"`
	HashedIdentifiers  uint32    `json:"hashed_identifiers"`
	Status             uint16    `json:"status"`
	Attempts           uint16    `json:"attempts"`
	Outcome            string    `json:"outcome"` // sent, partial, failed
	Error              string    `json:"error,omitempty"`
	BatchID            string    `json:"batch_id"`
}

// Ledger purposes.
const (
	PurposeConversions    = "conversions"
	PurposeAudienceAdd    = "audience_add"
	PurposeAudienceRemove = "audience_remove"
)

type ledgerRow struct {
	At                 time.Time `ch:"at"`
	ClientID           string    `ch:"client_id"`
	CampaignID         string    `ch:"campaign_id"`
	Platform           string    `ch:"platform"`
	Purpose            string    `ch:"purpose"`
	API                string    `ch:"api"`
	Destination        string    `ch:"destination"`
	InstructionVersion uint32    `ch:"instruction_version"`
	ConsentBasis       string    `ch:"consent_basis"`
	Items              uint32    `ch:"items"`
	Sent               uint32    `ch:"sent"`
	Failed             uint32    `ch:"failed"`
	HashedIdentifiers  uint32    `ch:"hashed_identifiers"`
	Status             uint16    `ch:"status"`
	Attempts           uint16    `ch:"attempts"`
	Outcome            string    `ch:"outcome"`
	Error              string    `ch:"error"`
	BatchID            string    `ch:"batch_id"`
}

const ledgerCols = `at, client_id, campaign_id, platform, purpose, api, destination, instruction_version,
	consent_basis, items, sent, failed, hashed_identifiers, status, attempts, outcome, error, batch_id`

// utcDay is the UTC day (midnight) containing t.
func utcDay(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// InsertLedger writes ledger rows in one insert.
func (s *Store) InsertLedger(ctx context.Context, rows []LedgerRow) error {
	err := s.insertRows(ctx, "INSERT INTO forward_ledger (date, "+ledgerCols+")", len(rows), func(i int) []any {
		r := &rows[i]
		at := r.At.UTC()
		return []any{utcDay(at), at, r.ClientID, r.CampaignID, r.Platform, r.Purpose, r.API, r.Destination,
			r.InstructionVersion, r.ConsentBasis, r.Items, r.Sent, r.Failed, r.HashedIdentifiers, r.Status,
			r.Attempts, r.Outcome, r.Error, r.BatchID}
	})
	if err != nil {
		return fmt.Errorf("store: insert ledger: %w", err)
	}
	return nil
}

// Ledger returns a client's ledger rows of a campaign between from and to
// (days, inclusive), newest first, at most limit.
func (s *Store) Ledger(ctx context.Context, clientID, campaignID string, from, to time.Time, limit int) ([]LedgerRow, error) {
	var rows []ledgerRow
	err := s.conn.Select(ctx, &rows, `SELECT `+ledgerCols+` FROM forward_ledger
		WHERE client_id = ? AND campaign_id = ? AND date >= toDate(?) AND date <= toDate(?)
		ORDER BY at DESC, batch_id LIMIT ?`, clientID, campaignID, from.Format(time.DateOnly), to.Format(time.DateOnly), limit)
	if err != nil {
		return nil, fmt.Errorf("store: ledger of %s: %w", campaignID, err)
	}
	out := make([]LedgerRow, len(rows))
	for i, r := range rows {
		out[i] = LedgerRow(r)
		out[i].At = r.At.UTC()
	}
	return out, nil
}

// DeadLetter is an item a platform refused for good, or that could not be
// sent, with the reason.
type DeadLetter struct {
	At                 time.Time `json:"at"`
	ClientID           string    `json:"-"`
	CampaignID         string    `json:"campaign"`
	Platform           string    `json:"platform"`
	Purpose            string    `json:"purpose"`
	API                string    `json:"api"`
	Destination        string    `json:"destination"`
	InstructionVersion uint32    `json:"instruction_version"`
	Item               string    `json:"item"`
	Kind               string    `json:"kind"`
	Status             uint16    `json:"status"`
	Code               string    `json:"code,omitempty"`
	Reason             string    `json:"reason"`
	KafkaPartition     int32     `json:"-"`
	KafkaOffset        int64     `json:"-"`
}

type deadRow struct {
	At                 time.Time `ch:"at"`
	ClientID           string    `ch:"client_id"`
	CampaignID         string    `ch:"campaign_id"`
	Platform           string    `ch:"platform"`
	Purpose            string    `ch:"purpose"`
	API                string    `ch:"api"`
	Destination        string    `ch:"destination"`
	InstructionVersion uint32    `ch:"instruction_version"`
	Item               string    `ch:"item"`
	Kind               string    `ch:"kind"`
	Status             uint16    `ch:"status"`
	Code               string    `ch:"code"`
	Reason             string    `ch:"reason"`
	KafkaPartition     uint32    `ch:"kafka_partition"`
	KafkaOffset        uint64    `ch:"kafka_offset"`
}

const deadCols = `at, client_id, campaign_id, platform, purpose, api, destination, instruction_version,
	item, kind, status, code, reason, kafka_partition, kafka_offset`

// InsertDeadLetters writes dead letters in one insert.
func (s *Store) InsertDeadLetters(ctx context.Context, rows []DeadLetter) error {
	err := s.insertRows(ctx, "INSERT INTO forward_dead_letters (date, "+deadCols+")", len(rows), func(i int) []any {
		r := &rows[i]
		at := r.At.UTC()
		return []any{utcDay(at), at, r.ClientID, r.CampaignID, r.Platform, r.Purpose, r.API, r.Destination,
			r.InstructionVersion, r.Item, r.Kind, r.Status, r.Code, r.Reason, uint32(r.KafkaPartition), uint64(r.KafkaOffset)}
	})
	if err != nil {
		return fmt.Errorf("store: insert dead letters: %w", err)
	}
	return nil
}

// DeadLetters returns a client's dead letters of a campaign between from
// and to (days, inclusive), newest first, at most limit.
func (s *Store) DeadLetters(ctx context.Context, clientID, campaignID string, from, to time.Time, limit int) ([]DeadLetter, error) {
	var rows []deadRow
	err := s.conn.Select(ctx, &rows, `SELECT `+deadCols+` FROM forward_dead_letters
		WHERE client_id = ? AND campaign_id = ? AND date >= toDate(?) AND date <= toDate(?)
		ORDER BY at DESC, item LIMIT ?`, clientID, campaignID, from.Format(time.DateOnly), to.Format(time.DateOnly), limit)
	if err != nil {
		return nil, fmt.Errorf("store: dead letters of %s: %w", campaignID, err)
	}
	out := make([]DeadLetter, len(rows))
	for i, r := range rows {
		out[i] = DeadLetter{At: r.At.UTC(), ClientID: r.ClientID, CampaignID: r.CampaignID, Platform: r.Platform,
			Purpose: r.Purpose, API: r.API, Destination: r.Destination, InstructionVersion: r.InstructionVersion,
			Item: r.Item, Kind: r.Kind, Status: r.Status, Code: r.Code, Reason: r.Reason,
			KafkaPartition: int32(r.KafkaPartition), KafkaOffset: int64(r.KafkaOffset)}
	}
	return out, nil
}

// Sent marks a conversion as done at its destination (sent, or
// dead-lettered) so a forwarder resuming the partition skips it.
type Sent struct {
	At          time.Time
	Platform    string
	Partition   int32
	Offset      int64
	EventID     [16]byte
	ClientID    string
	CampaignID  string
	Destination string
}

// InsertSent writes rows in one insert.
func (s *Store) InsertSent(ctx context.Context, rows []Sent) error {
	err := s.insertRows(ctx, `INSERT INTO forward_sent (date, at, platform, kafka_partition, kafka_offset,
		event_id, client_id, campaign_id, destination)`, len(rows), func(i int) []any {
		r := &rows[i]
		at := r.At.UTC()
		return []any{utcDay(at), at, r.Platform, uint32(r.Partition), uint64(r.Offset), string(r.EventID[:]),
			r.ClientID, r.CampaignID, r.Destination}
	})
	if err != nil {
		return fmt.Errorf("store: insert sent: %w", err)
	}
	return nil
}

// SentKey is one conversion done at one destination.
type SentKey struct {
	Offset      int64
	EventID     [16]byte
	Destination string
}

// SentSince returns the conversions done by platform's forwarder for a
// partition at offsets ≥ from (at most limit rows, the highest offsets).
func (s *Store) SentSince(ctx context.Context, platform string, partition int, from int64, limit int) ([]SentKey, error) {
	if from < 0 {
		from = 0
	}
	var rows []struct {
		Offset      uint64 `ch:"kafka_offset"`
		EventID     string `ch:"event_id"`
		Destination string `ch:"destination"`
	}
	err := s.conn.Select(ctx, &rows, `SELECT kafka_offset, event_id, destination FROM forward_sent
		WHERE platform = ? AND kafka_partition = ? AND kafka_offset >= ?
		ORDER BY kafka_offset DESC LIMIT ?`, platform, uint32(partition), uint64(from), limit)
	if err != nil {
		return nil, fmt.Errorf("store: sent conversions of %s partition %d: %w", platform, partition, err)
	}
	out := make([]SentKey, len(rows))
	for i, r := range rows {
		out[i] = SentKey{Offset: int64(r.Offset), Destination: r.Destination}
		copy(out[i].EventID[:], r.EventID)
	}
	return out, nil
}

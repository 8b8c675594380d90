package store

import (
	"context"
	"fmt"
	"time"
)

// ForwardStatus is the forward role's word on one instruction version's
// credentials for one platform: Status says why that platform's work is
// held (e.g. "Google credentials expired at …; send new credentials"), ""
// that the credentials work again. The latest (largest Seq) counts.
type ForwardStatus struct {
	At                 time.Time
	Seq                uint64 // orders the changes; the relay uses the time in nanoseconds
	ClientID           string
	CampaignID         string
	Platform           string
	InstructionVersion uint32
	Status             string
}

// InsertForwardStatus records status changes in one insert.
func (s *Store) InsertForwardStatus(ctx context.Context, rows []ForwardStatus) error {
	err := s.insertRows(ctx, `INSERT INTO forward_status (at, seq, client_id, campaign_id, platform, instruction_version, status)`,
		len(rows), func(i int) []any {
			r := &rows[i]
			return []any{r.At.UTC(), r.Seq, r.ClientID, r.CampaignID, r.Platform, r.InstructionVersion, r.Status}
		})
	if err != nil {
		return fmt.Errorf("store: insert forward status: %w", err)
	}
	return nil
}

// ForwardStatuses returns the latest status of each platform for version
// of a client's campaign, those that are not empty, by platform.
func (s *Store) ForwardStatuses(ctx context.Context, clientID, campaignID string, version uint32) ([]ForwardStatus, error) {
	var rows []struct {
		At       time.Time `ch:"last_at"`
		Seq      uint64    `ch:"last_seq"`
		Platform string    `ch:"platform"`
		Status   string    `ch:"last_status"`
	}
	err := s.conn.Select(ctx, &rows, `SELECT platform, max(seq) AS last_seq, argMax(at, seq) AS last_at, argMax(status, seq) AS last_status
		FROM forward_status
		WHERE client_id = ? AND campaign_id = ? AND instruction_version = ?
		GROUP BY platform
		HAVING last_status != ''
		ORDER BY platform`, clientID, campaignID, version)
	if err != nil {
		return nil, fmt.Errorf("store: forward status of %s v%d: %w", campaignID, version, err)
	}
	out := make([]ForwardStatus, len(rows))
	for i, r := range rows {
		out[i] = ForwardStatus{At: r.At.UTC(), Seq: r.Seq, ClientID: clientID, CampaignID: campaignID, Platform: r.Platform,
			InstructionVersion: version, Status: r.Status}
	}
	return out, nil
}

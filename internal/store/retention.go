package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Retention periods of our promises as a processor and as a controller.
const (
	// ProcessorGrace is how long visitor data is kept after a client stops
	// using us.
	ProcessorGrace = 61 * 24 * time.Hour // two months
	// ControllerRetention is how long our own customer records are kept
	// after their last change once the client has ended (an active client's
	// record is still needed to serve it).
	ControllerRetention = 5 * 365 * 24 * time.Hour
)

// visitorTables hold processor data: every table keyed by client_id whose
// rows derive from visitors' hits.
var visitorTables = []string{"events", "conversions_daily", "bots_daily"}

// Audit records an action on a client's data.
func (s *Store) Audit(ctx context.Context, actor, action, clientID, campaignID, detail string) error {
	err := s.insertOne(ctx, "INSERT INTO audit_log (at, actor, action, client_id, campaign_id, detail)",
		time.Now().UTC(), actor, action, clientID, campaignID, detail)
	if err != nil {
		return fmt.Errorf("store: audit %s: %w", action, err)
	}
	return nil
}

// EraseCampaign deletes every visitor-derived row of a client's campaign
// (asynchronous ClickHouse mutations; they are durable once this returns)
// and records the erasure in the audit log.
func (s *Store) EraseCampaign(ctx context.Context, actor, clientID, campaignID string) error {
	for _, t := range visitorTables {
		if err := s.conn.Exec(ctx, "ALTER TABLE "+t+" DELETE WHERE client_id = ? AND campaign_id = ?", clientID, campaignID); err != nil {
			return fmt.Errorf("store: erase %s of campaign %s: %w", t, campaignID, err)
		}
	}
	return s.Audit(ctx, actor, "erase_campaign", clientID, campaignID, "tables: "+strings.Join(visitorTables, ","))
}

// EndClient records that a client stopped using us. Its visitor data is
// purged ProcessorGrace later by EnforceRetention.
func (s *Store) EndClient(ctx context.Context, actor, clientID string) error {
	var rows []struct {
		Name  string `ch:"name"`
		Token string `ch:"token_hash"`
	}
	if err := s.conn.Select(ctx, &rows, `SELECT argMax(name, version) AS name, argMax(token_hash, version) AS token_hash
		FROM clients WHERE client_id = ? GROUP BY client_id`, clientID); err != nil {
		return fmt.Errorf("store: end client: %w", err)
	}
	if len(rows) != 1 {
		return ErrNotFound
	}
	err := s.insertOne(ctx, "INSERT INTO clients (client_id, name, token_hash, deleted, updated_at, version)",
		clientID, rows[0].Name, rows[0].Token, uint8(1), time.Now().UTC(), version())
	if err != nil {
		return fmt.Errorf("store: end client: %w", err)
	}
	return s.Audit(ctx, actor, "end_client", clientID, "", "visitor data purged after "+ProcessorGrace.String())
}

// RetentionResult says what EnforceRetention purged.
type RetentionResult struct {
	PurgedVisitorData []string // clients whose visitor data was deleted
	PurgedClients     []string // client records deleted
}

// EnforceRetention deletes the visitor data of clients that ended more than
// ProcessorGrace before now, and the records (and campaigns) of ended
// clients unchanged for ControllerRetention. Every purge is audited.
func (s *Store) EnforceRetention(ctx context.Context, now time.Time) (RetentionResult, error) {
	var res RetentionResult
	var ended []struct {
		ID string `ch:"client_id"`
	}
	err := s.conn.Select(ctx, &ended, `SELECT client_id FROM clients GROUP BY client_id
		HAVING argMax(deleted, version) = 1 AND argMax(updated_at, version) < toDateTime(?)`,
		now.Add(-ProcessorGrace).UTC().Format(time.DateTime))
	if err != nil {
		return res, fmt.Errorf("store: retention: ended clients: %w", err)
	}
	for _, c := range ended {
		var n []struct {
			N uint64 `ch:"n"`
		}
		if err := s.conn.Select(ctx, &n, `SELECT count() AS n FROM events WHERE client_id = ?`, c.ID); err != nil {
			return res, fmt.Errorf("store: retention: %w", err)
		}
		if len(n) == 1 && n[0].N == 0 {
			continue // already purged (or mutation pending on aggregates only)
		}
		for _, t := range visitorTables {
			if err := s.conn.Exec(ctx, "ALTER TABLE "+t+" DELETE WHERE client_id = ?", c.ID); err != nil {
				return res, fmt.Errorf("store: retention: purge %s of %s: %w", t, c.ID, err)
			}
		}
		if err := s.Audit(ctx, "retention", "purge_visitor_data", c.ID, "", fmt.Sprintf("%d events; client ended more than %s ago", n[0].N, ProcessorGrace)); err != nil {
			return res, err
		}
		res.PurgedVisitorData = append(res.PurgedVisitorData, c.ID)
	}
	var stale []struct {
		ID string `ch:"client_id"`
	}
	err = s.conn.Select(ctx, &stale, `SELECT client_id FROM clients GROUP BY client_id
		HAVING argMax(deleted, version) = 1 AND argMax(updated_at, version) < toDateTime(?)`, now.Add(-ControllerRetention).UTC().Format(time.DateTime))
	if err != nil {
		return res, fmt.Errorf("store: retention: stale clients: %w", err)
	}
	for _, c := range stale {
		for _, t := range append([]string{"clients", "campaigns"}, visitorTables...) {
			if err := s.conn.Exec(ctx, "ALTER TABLE "+t+" DELETE WHERE client_id = ?", c.ID); err != nil {
				return res, fmt.Errorf("store: retention: purge %s of %s: %w", t, c.ID, err)
			}
		}
		if err := s.Audit(ctx, "retention", "purge_client_record", c.ID, "", "unchanged for more than five years"); err != nil {
			return res, err
		}
		res.PurgedClients = append(res.PurgedClients, c.ID)
	}
	return res, nil
}

// WaitMutations blocks until no mutation of the database is pending, or ctx
// ends.
func (s *Store) WaitMutations(ctx context.Context) error {
	for {
		var n []struct {
			N uint64 `ch:"n"`
		}
		if err := s.conn.Select(ctx, &n, `SELECT count() AS n FROM system.mutations WHERE database = ? AND is_done = 0`, s.db); err != nil {
			return fmt.Errorf("store: mutations: %w", err)
		}
		if len(n) == 1 && n[0].N == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

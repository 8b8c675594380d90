package store

import (
	"context"
	"encoding/json"
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
// rows derive from visitors' hits. audienceTable (hashed e-mails of
// audience members) is handled apart: it is what tells the forwarder which
// members to remove from the platforms, so it goes only once none is left.
var visitorTables = []string{"events", "conversions_daily", "bots_daily",
	"audience_facts", "forward_sent", "forward_dead_letters"}

// recordTables are our records of processing for a client: what left for
// which platform, under which instruction version and consent basis, in
// counts and ids only (never a visitor's data). Like the instructions they
// are kept after an erasure or the two-month purge, as proof of what was
// done on the client's instructions, and go with the client's own records
// five years after its last change.
var recordTables = []string{"forward_ledger", "forward_intents"}

const audienceTable = "audience_members"

// revokeForwarding adds a revoked version to every active forwarding
// instruction of clientID (only campaignID's when it is not empty), so the
// forwarder stops and removes the audience members it added. It returns
// the campaigns revoked.
func (s *Store) revokeForwarding(ctx context.Context, actor, clientID, campaignID, note string) ([]string, error) {
	cur, err := s.CurrentInstructions(ctx)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, c := range cur {
		if c.ClientID != clientID || c.Revoked || (campaignID != "" && c.CampaignID != campaignID) {
			continue
		}
		spec, _ := json.Marshal(map[string]string{"note": note})
		_, err := s.AddInstruction(ctx, Instruction{ClientID: clientID, CampaignID: c.CampaignID, Actor: actor,
			Revoked: true, Spec: string(spec)}, nil)
		if err != nil {
			return done, fmt.Errorf("store: revoke forwarding of %s: %w", c.CampaignID, err)
		}
		if err := s.Audit(ctx, actor, "instruction_revoked", clientID, c.CampaignID, note); err != nil {
			return done, err
		}
		done = append(done, c.CampaignID)
	}
	return done, nil
}

// liveAudienceMembers counts the members of clientID (campaignID's only,
// when not empty) still added on a platform.
func (s *Store) liveAudienceMembers(ctx context.Context, clientID, campaignID string) (uint64, error) {
	var n []struct {
		N uint64 `ch:"n"`
	}
	err := s.conn.Select(ctx, &n, `SELECT count() AS n FROM (
			SELECT argMax(action, seq) AS a FROM audience_members
			WHERE client_id = ? AND (? = '' OR campaign_id = ?)
			GROUP BY platform, campaign_id, destination, member
		) WHERE a = 'add'`, clientID, campaignID, campaignID)
	if err != nil || len(n) != 1 {
		return 0, fmt.Errorf("store: live audience members: %v", err)
	}
	return n[0].N, nil
}

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
//
// The campaign's partner shares are revoked first (their tokens stop
// working at once; the share records stay, like the client's other
// instructions, until the client record goes). Forwarding of the campaign
// is revoked next: the forwarder removes the members it added to platform
// audiences, and EnforceRetention deletes the campaign's audience records
// once none is left there.
func (s *Store) EraseCampaign(ctx context.Context, actor, clientID, campaignID string) error {
	if _, err := s.revokeShares(ctx, actor, clientID, campaignID, "erasure requested"); err != nil {
		return err
	}
	if _, err := s.revokeForwarding(ctx, actor, clientID, campaignID, "erasure requested"); err != nil {
		return err
	}
	for _, t := range visitorTables {
		if err := s.deleteWhere(ctx, t, "client_id = ? AND campaign_id = ?", clientID, campaignID); err != nil {
			return fmt.Errorf("store: erase %s of campaign %s: %w", t, campaignID, err)
		}
	}
	return s.Audit(ctx, actor, "erase_campaign", clientID, campaignID, "tables: "+strings.Join(visitorTables, ",")+"; audience records once removed from the platforms; partner shares revoked")
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
	if _, err := s.revokeForwarding(ctx, actor, clientID, "", "client ended"); err != nil {
		return err
	}
	return s.Audit(ctx, actor, "end_client", clientID, "", "visitor data purged after "+ProcessorGrace.String())
}

// RetentionResult says what EnforceRetention purged.
type RetentionResult struct {
	PurgedVisitorData []string // clients whose visitor data was deleted
	PurgedClients     []string // client records deleted
	PurgedAudiences   []string // client/campaign whose audience records were deleted
}

// EnforceRetention deletes the visitor data of clients that ended more than
// ProcessorGrace before now, and the records (campaigns, instructions,
// partner shares) of ended clients unchanged for ControllerRetention. Every
// purge is audited.
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
			if err := s.deleteWhere(ctx, t, "client_id = ?", c.ID); err != nil {
				return res, fmt.Errorf("store: retention: purge %s of %s: %w", t, c.ID, err)
			}
		}
		if err := s.Audit(ctx, "retention", "purge_visitor_data", c.ID, "", fmt.Sprintf("%d events; client ended more than %s ago", n[0].N, ProcessorGrace)); err != nil {
			return res, err
		}
		res.PurgedVisitorData = append(res.PurgedVisitorData, c.ID)
	}
	// Audience records go once the forwarder removed every member: for
	// ended clients past the grace period, and for erased campaigns.
	var erased []struct {
		Client   string `ch:"client_id"`
		Campaign string `ch:"campaign_id"`
	}
	if err := s.conn.Select(ctx, &erased, `SELECT DISTINCT client_id, campaign_id FROM audit_log WHERE action = 'erase_campaign'`); err != nil {
		return res, fmt.Errorf("store: retention: erasures: %w", err)
	}
	for _, c := range ended {
		erased = append(erased, struct {
			Client   string `ch:"client_id"`
			Campaign string `ch:"campaign_id"`
		}{c.ID, ""})
	}
	for _, e := range erased {
		live, err := s.liveAudienceMembers(ctx, e.Client, e.Campaign)
		if err != nil {
			return res, err
		}
		var n []struct {
			N uint64 `ch:"n"`
		}
		if err := s.conn.Select(ctx, &n, `SELECT count() AS n FROM audience_members WHERE client_id = ? AND (? = '' OR campaign_id = ?)`, e.Client, e.Campaign, e.Campaign); err != nil {
			return res, fmt.Errorf("store: retention: %w", err)
		}
		if live > 0 || n[0].N == 0 {
			continue // still on a platform (the forwarder removes it), or nothing left
		}
		if err := s.deleteWhere(ctx, audienceTable, "client_id = ? AND (? = '' OR campaign_id = ?)", e.Client, e.Campaign, e.Campaign); err != nil {
			return res, fmt.Errorf("store: retention: purge audience records: %w", err)
		}
		if err := s.Audit(ctx, "retention", "purge_audience_records", e.Client, e.Campaign, fmt.Sprintf("%d rows", n[0].N)); err != nil {
			return res, err
		}
		res.PurgedAudiences = append(res.PurgedAudiences, e.Client+"/"+e.Campaign)
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
		tables := append([]string{"partner_shares", "clients", "campaigns", "campaign_guards", "forward_instructions", "forward_status", audienceTable}, recordTables...)
		for _, t := range append(tables, visitorTables...) {
			if err := s.deleteWhere(ctx, t, "client_id = ?", c.ID); err != nil {
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

// WaitMutations blocks until no mutation of the database is pending on the
// connected node, or ctx ends. (On a cluster it says nothing of the other
// nodes; and 18.16 can leave a mutation pending in system.mutations of a
// replica that was restarted and fetched the mutated parts, so tests of a
// cluster look at the rows instead.)
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

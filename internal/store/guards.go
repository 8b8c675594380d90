package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

type guardRow struct {
	ID            string   `ch:"campaign_id"`
	AllowedHosts  []string `ch:"allowed_hosts"`
	S2SSecret     string   `ch:"s2s_secret"`
	RequireSigned uint8    `ch:"require_signed"`
}

// withGuards turns campaign rows into campaigns with their guards (the
// zero Guards where none were ever set).
func (s *Store) withGuards(ctx context.Context, rows []campaignRow) ([]Campaign, error) {
	out := make([]Campaign, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		out[i], ids[i] = r.campaign(), r.ID
	}
	var gs []guardRow
	err := s.conn.Select(ctx, &gs, `SELECT campaign_id,
			argMax(allowed_hosts, version) AS allowed_hosts,
			argMax(s2s_secret, version) AS s2s_secret,
			argMax(require_signed, version) AS require_signed
		FROM campaign_guards WHERE has(?, campaign_id) GROUP BY campaign_id`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: campaign guards: %w", err)
	}
	byID := make(map[string]Guards, len(gs))
	for _, g := range gs {
		byID[g.ID] = Guards{AllowedHosts: g.AllowedHosts, S2SSecret: g.S2SSecret, RequireSigned: g.RequireSigned == 1}
	}
	for i := range out {
		out[i].Guards = byID[out[i].ID]
	}
	return out, nil
}

// setGuards writes a new version of a campaign's guards.
func (s *Store) setGuards(ctx context.Context, campaignID, clientID string, g Guards) error {
	req := uint8(0)
	if g.RequireSigned {
		req = 1
	}
	hosts := g.AllowedHosts
	if hosts == nil {
		hosts = []string{}
	}
	if err := s.insertOne(ctx, "INSERT INTO campaign_guards (campaign_id, client_id, allowed_hosts, s2s_secret, require_signed, version)",
		campaignID, clientID, hosts, g.S2SSecret, req, version()); err != nil {
		return fmt.Errorf("guards of %s: %w", campaignID, err)
	}
	return nil
}

// RotateS2SSecret gives campaign c a new random secret for the signed
// server-to-server endpoint (the previous one stops working once ingest
// refreshes its campaigns, within seconds) and returns c with it.
func (s *Store) RotateS2SSecret(ctx context.Context, c Campaign) (Campaign, error) {
	var b [32]byte
	rand.Read(b[:]) // never fails (Go ≥ 1.24)
	c.S2SSecret = "jps_" + base64.RawURLEncoding.EncodeToString(b[:])
	if err := s.setGuards(ctx, c.ID, c.ClientID, c.Guards); err != nil {
		return Campaign{}, fmt.Errorf("store: rotate secret: %w", err)
	}
	return c, nil
}

package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Share is a client's instruction to let a partner read anonymised weekly
// aggregates of one campaign (see README, "Partners"). The partner token
// is never stored, only its SHA-256 (HashToken).
type Share struct {
	ID          string
	ClientID    string
	CampaignID  string
	Name        string // the partner, as the client named it
	MinVisitors uint32 // a week is published only with at least this many distinct visitors
	CreatedAt   time.Time
	CreatedBy   string // actor: "client:<id>" for the client API
	Revoked     bool
	RevokedAt   time.Time // zero unless Revoked
	RevokedBy   string
}

// Limits of a share.
const (
	// MinShareVisitors is the smallest k a client may choose: a week with
	// fewer distinct visitors is never published to a partner.
	MinShareVisitors = 10
	// MaxShareVisitors bounds min_visitors (it only has to be sane).
	MaxShareVisitors = 1_000_000
	// MaxShareName is the longest partner name, in characters.
	MaxShareName = 100
)

// PartnerTokenPrefix starts every partner token. Client tokens start with
// TokenPrefix instead, so neither kind is ever looked up as the other.
const PartnerTokenPrefix = "jpp_"

// shareMu serialises revocations within this process, so a share is
// revoked (and audited) once even when two requests race.
var shareMu sync.Mutex

type shareRow struct {
	ID          string    `ch:"share_id"`
	ClientID    string    `ch:"client_id"`
	CampaignID  string    `ch:"campaign_id"`
	Name        string    `ch:"name"`
	TokenHash   string    `ch:"th"`
	MinVisitors uint32    `ch:"min_visitors"`
	CreatedAt   time.Time `ch:"created_at"`
	CreatedBy   string    `ch:"created_by"`
	Revoked     uint8     `ch:"is_revoked"`
	RevokedAt   time.Time `ch:"revoked_at"`
	RevokedBy   string    `ch:"revoked_by"`
	Version     uint64    `ch:"v"`
}

func (r shareRow) share() Share {
	sh := Share{ID: r.ID, ClientID: r.ClientID, CampaignID: r.CampaignID, Name: r.Name, MinVisitors: r.MinVisitors,
		CreatedAt: r.CreatedAt.UTC(), CreatedBy: r.CreatedBy, Revoked: r.Revoked == 1, RevokedBy: r.RevokedBy}
	if sh.Revoked {
		sh.RevokedAt = r.RevokedAt.UTC()
	}
	return sh
}

// shareSelect reads the latest version of each share. client_id and
// campaign_id never change, so they are grouped on (and usable in WHERE);
// the other columns are aliased to names no aggregate reads (ClickHouse
// substitutes aliases everywhere in a query). Callers append a WHERE
// clause before the GROUP BY via %s and conditions after HAVING.
const shareSelect = `
	SELECT share_id, client_id, campaign_id,
		argMax(name, version) AS name,
		argMax(token_hash, version) AS th,
		argMax(min_visitors, version) AS min_visitors,
		argMax(created_at, version) AS created_at,
		argMax(created_by, version) AS created_by,
		argMax(revoked, version) AS is_revoked,
		argMax(revoked_at, version) AS revoked_at,
		argMax(revoked_by, version) AS revoked_by,
		max(version) AS v
	FROM partner_shares
	WHERE %s
	GROUP BY share_id, client_id, campaign_id`

const shareCols = `share_id, client_id, campaign_id, name, token_hash, min_visitors, created_at, created_by, revoked, revoked_at, revoked_by, version`

// noTime is what revoked_at holds while a share is not revoked.
var noTime = time.Unix(0, 0).UTC()

func (s *Store) insertShare(ctx context.Context, r shareRow) error {
	revokedAt := r.RevokedAt
	if r.Revoked == 0 {
		revokedAt = noTime
	}
	return s.insertOne(ctx, "INSERT INTO partner_shares ("+shareCols+")",
		r.ID, r.ClientID, r.CampaignID, r.Name, r.TokenHash, r.MinVisitors, r.CreatedAt, r.CreatedBy,
		r.Revoked, revokedAt, r.RevokedBy, r.Version)
}

// ValidShareName reports whether name (already trimmed) is acceptable as a
// partner name: 1 to MaxShareName characters of valid UTF-8, no control
// characters.
func ValidShareName(name string) bool {
	n := utf8.RuneCountInString(name)
	if n == 0 || n > MaxShareName || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// CreateShare records the client's instruction to share campaignID with a
// partner and returns the share with the partner token. Only the token's
// SHA-256 is stored: it cannot be shown again. The caller has checked that
// clientID owns campaignID. The creation is audited (ids, never the token).
func (s *Store) CreateShare(ctx context.Context, actor, clientID, campaignID, name string, minVisitors uint32) (Share, string, error) {
	name = strings.TrimSpace(name)
	if !ValidShareName(name) {
		return Share{}, "", fmt.Errorf("store: create share: name must be 1 to %d characters", MaxShareName)
	}
	if minVisitors < MinShareVisitors || minVisitors > MaxShareVisitors {
		return Share{}, "", fmt.Errorf("store: create share: min_visitors must be %d to %d", MinShareVisitors, MaxShareVisitors)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Share{}, "", fmt.Errorf("store: create share: %w", err)
	}
	token := PartnerTokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	r := shareRow{ID: newID("ps_"), ClientID: clientID, CampaignID: campaignID, Name: name, TokenHash: HashToken(token),
		MinVisitors: minVisitors, CreatedAt: time.Now().UTC().Truncate(time.Second), CreatedBy: actor, Version: version()}
	if err := s.insertShare(ctx, r); err != nil {
		return Share{}, "", fmt.Errorf("store: create share: %w", err)
	}
	if err := s.Audit(ctx, actor, "partner_share_created", clientID, campaignID,
		fmt.Sprintf("share %s; min_visitors %d", r.ID, minVisitors)); err != nil {
		return Share{}, "", err
	}
	return r.share(), token, nil
}

// Shares returns every share of a client's campaign, revoked ones
// included, oldest first (by created_at, a second; then by id).
func (s *Store) Shares(ctx context.Context, clientID, campaignID string) ([]Share, error) {
	rows, err := s.shareRows(ctx, `client_id = ? AND campaign_id = ?`, ` ORDER BY created_at, share_id`, clientID, campaignID)
	if err != nil {
		return nil, fmt.Errorf("store: shares of %s: %w", campaignID, err)
	}
	out := make([]Share, len(rows))
	for i, r := range rows {
		out[i] = r.share()
	}
	return out, nil
}

func (s *Store) shareRows(ctx context.Context, where, tail string, args ...any) ([]shareRow, error) {
	var rows []shareRow
	if err := s.conn.Select(ctx, &rows, fmt.Sprintf(shareSelect, where)+tail, args...); err != nil {
		return nil, err
	}
	return rows, nil
}

// RevokeShare revokes a share of a client's campaign: its token stops
// working at the next request (partner tokens are not cached). Revoking a
// revoked share changes nothing. ErrNotFound when the share is not one of
// that campaign of that client. The revocation is audited.
func (s *Store) RevokeShare(ctx context.Context, actor, clientID, campaignID, shareID string) (Share, error) {
	shareMu.Lock()
	defer shareMu.Unlock()
	rows, err := s.shareRows(ctx, `client_id = ? AND campaign_id = ? AND share_id = ?`, ``, clientID, campaignID, shareID)
	if err != nil {
		return Share{}, fmt.Errorf("store: revoke share %s: %w", shareID, err)
	}
	if len(rows) != 1 {
		return Share{}, ErrNotFound
	}
	return s.revokeShare(ctx, actor, rows[0], "revoked by "+actor)
}

// revokeShare writes the revoked version of r (shareMu held) and audits it.
func (s *Store) revokeShare(ctx context.Context, actor string, r shareRow, note string) (Share, error) {
	if r.Revoked == 1 {
		return r.share(), nil
	}
	r.Revoked, r.RevokedAt, r.RevokedBy = 1, time.Now().UTC().Truncate(time.Second), actor
	// A higher version than the current one even if this replica's clock
	// lags the one that created the share.
	r.Version = max(version(), r.Version+1)
	if err := s.insertShare(ctx, r); err != nil {
		return Share{}, fmt.Errorf("store: revoke share %s: %w", r.ID, err)
	}
	if err := s.Audit(ctx, actor, "partner_share_revoked", r.ClientID, r.CampaignID, "share "+r.ID+"; "+note); err != nil {
		return Share{}, err
	}
	return r.share(), nil
}

// revokeShares revokes every live share of a client's campaign (of all its
// campaigns when campaignID is empty) and returns the shares revoked.
func (s *Store) revokeShares(ctx context.Context, actor, clientID, campaignID, note string) ([]string, error) {
	shareMu.Lock()
	defer shareMu.Unlock()
	rows, err := s.shareRows(ctx, `client_id = ? AND (? = '' OR campaign_id = ?)`, ``, clientID, campaignID, campaignID)
	if err != nil {
		return nil, fmt.Errorf("store: revoke shares of %s: %w", clientID, err)
	}
	var done []string
	for _, r := range rows {
		if r.Revoked == 1 {
			continue
		}
		if _, err := s.revokeShare(ctx, actor, r, note); err != nil {
			return done, err
		}
		done = append(done, r.ID)
	}
	return done, nil
}

// liveClients selects the clients that have not ended. Share lookups test
// membership here rather than absence from the ended clients: while a
// purged client's rows are being deleted (mutations, one table at a time)
// it is in neither set, and its shares must not come back to life.
const liveClients = `SELECT client_id FROM clients GROUP BY client_id HAVING argMax(deleted, version) = 0`

// ShareByToken returns the live share whose partner token is token: not
// revoked, of a live campaign of a live client. Anything else is
// ErrNotFound, so a share stops working at once when it is revoked, when
// its campaign is erased (EraseCampaign revokes it) or when its client
// ends. Client tokens are never shares.
func (s *Store) ShareByToken(ctx context.Context, token string) (Share, error) {
	if !strings.HasPrefix(token, PartnerTokenPrefix) {
		return Share{}, ErrNotFound
	}
	h := HashToken(token)
	// The WHERE clause only narrows the scan; the HAVING clause decides on
	// the latest version of the share.
	rows, err := s.shareRows(ctx, `share_id IN (SELECT share_id FROM partner_shares WHERE token_hash = ?)`,
		` HAVING th = ? AND is_revoked = 0 AND client_id IN (`+liveClients+`)`, h, h)
	if err != nil {
		return Share{}, fmt.Errorf("store: share by token: %w", err)
	}
	if len(rows) != 1 {
		return Share{}, ErrNotFound
	}
	sh := rows[0].share()
	if _, err := s.ClientCampaign(ctx, sh.ClientID, sh.CampaignID); err != nil {
		return Share{}, err // ErrNotFound when the campaign is gone
	}
	return sh, nil
}

// WeekCounts are the conversion figures of one ISO week (Week is its
// Monday, UTC), bots excluded. They are NOT anonymised: only report's
// partner endpoint reads them, and it publishes them only through its
// threshold and rounding.
type WeekCounts struct {
	Week         time.Time `ch:"week"`
	PageViews    uint64    `ch:"page_views"`
	ApplyClicks  uint64    `ch:"apply_clicks"`
	Applications uint64    `ch:"applications"`
	// Visitors counts distinct daily visitor hashes over the week: a
	// person seen on three days of the week counts three times.
	Visitors uint64 `ch:"visitors"`
}

// CampaignWeeks reads the conversion aggregate of one campaign per ISO week
// over the UTC days [from, to] (callers pass whole weeks: a Monday and a
// Sunday). Weeks without rows are absent. The caller has checked that
// clientID owns campaignID.
func (s *Store) CampaignWeeks(ctx context.Context, clientID, campaignID string, from, to time.Time) ([]WeekCounts, error) {
	var rows []WeekCounts
	err := s.conn.Select(ctx, &rows, `
		SELECT toMonday(date) AS week,
			sumMerge(page_views) AS page_views, sumMerge(apply_clicks) AS apply_clicks,
			sumMerge(applications) AS applications, uniqMerge(visitors) AS visitors
		FROM conversions_daily
		WHERE client_id = ? AND campaign_id = ? AND date >= toDate(?) AND date <= toDate(?)
		GROUP BY week ORDER BY week`,
		clientID, campaignID, from.UTC().Format(time.DateOnly), to.UTC().Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("store: campaign weeks: %w", err)
	}
	for i := range rows {
		rows[i].Week = rows[i].Week.UTC()
	}
	return rows, nil
}

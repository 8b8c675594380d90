package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Client is an employer or agency account: a controller on whose documented
// instructions we process its visitors' data.
type Client struct {
	ID        string
	Name      string
	UpdatedAt time.Time
}

// ConsentlessMode says what happens to hits that carry no consent at all.
type ConsentlessMode string

// Consent-less modes of a campaign.
const (
	// ConsentlessCount counts such hits anonymously (measurement only,
	// without any identifier). It is the default.
	ConsentlessCount ConsentlessMode = "count"
	// ConsentlessDrop drops them.
	ConsentlessDrop ConsentlessMode = "drop"
)

// Campaign is a job-ad campaign of a client.
type Campaign struct {
	ID          string
	ClientID    string
	Name        string
	Consentless ConsentlessMode
	// Sensitive campaigns (special categories of data) are never forwarded.
	Sensitive bool
	UpdatedAt time.Time
	Guards
}

// Guards protect a campaign against forged hits (guards.go).
type Guards struct {
	// AllowedHosts are the page hosts browser hits may come from ("jobs.example.com",
	// or "*.example.com" for its subdomains); empty allows any.
	AllowedHosts []string
	// S2SSecret signs the campaign's server-to-server requests; empty: the
	// endpoint is off for the campaign.
	S2SSecret string
	// RequireSigned accepts application events only from the signed
	// server-to-server endpoint.
	RequireSigned bool
}

var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether s is acceptable as a client or campaign id.
func ValidID(s string) bool { return validID.MatchString(s) }

func newID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// TokenPrefix starts every client API token.
const TokenPrefix = "jpt_"

// HashToken returns the stored form of a client API token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func version() uint64 { return uint64(time.Now().UnixNano()) }

// CreateClient creates a client and returns it with a fresh API token. Only
// the token's SHA-256 is stored: the token cannot be shown again.
func (s *Store) CreateClient(ctx context.Context, name string) (Client, string, error) {
	if strings.TrimSpace(name) == "" {
		return Client{}, "", fmt.Errorf("store: create client: empty name")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Client{}, "", fmt.Errorf("store: create client: %w", err)
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	c := Client{ID: newID("cl_"), Name: name, UpdatedAt: time.Now().UTC().Truncate(time.Second)}
	err := s.insertOne(ctx, "INSERT INTO clients (client_id, name, token_hash, deleted, updated_at, version)",
		c.ID, c.Name, HashToken(token), uint8(0), c.UpdatedAt, version())
	if err != nil {
		return Client{}, "", fmt.Errorf("store: create client: %w", err)
	}
	return c, token, nil
}

// ClientByToken returns the live client whose API token is token.
func (s *Store) ClientByToken(ctx context.Context, token string) (Client, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return Client{}, ErrNotFound
	}
	var rows []struct {
		ID        string    `ch:"client_id"`
		Name      string    `ch:"name"`
		UpdatedAt time.Time `ch:"updated_at"`
	}
	err := s.conn.Select(ctx, &rows, `
		SELECT client_id, argMax(name, version) AS name, argMax(updated_at, version) AS updated_at
		FROM clients
		GROUP BY client_id
		HAVING argMax(token_hash, version) = ? AND argMax(deleted, version) = 0`, HashToken(token))
	if err != nil {
		return Client{}, fmt.Errorf("store: client by token: %w", err)
	}
	if len(rows) != 1 {
		return Client{}, ErrNotFound
	}
	return Client{ID: rows[0].ID, Name: rows[0].Name, UpdatedAt: rows[0].UpdatedAt}, nil
}

// CampaignOptions are the settings of a new campaign.
type CampaignOptions struct {
	ID           string // optional; generated when empty
	Consentless  ConsentlessMode
	Sensitive    bool
	AllowedHosts []string // Guards.AllowedHosts
}

// CreateCampaign creates a campaign owned by clientID.
func (s *Store) CreateCampaign(ctx context.Context, clientID, name string, opts CampaignOptions) (Campaign, error) {
	if opts.ID == "" {
		opts.ID = newID("cmp_")
	}
	if !ValidID(opts.ID) {
		return Campaign{}, fmt.Errorf("store: create campaign: invalid id %q", opts.ID)
	}
	switch opts.Consentless {
	case "":
		opts.Consentless = ConsentlessCount
	case ConsentlessCount, ConsentlessDrop:
	default:
		return Campaign{}, fmt.Errorf("store: create campaign: consentless must be %q or %q", ConsentlessCount, ConsentlessDrop)
	}
	c := Campaign{ID: opts.ID, ClientID: clientID, Name: name, Consentless: opts.Consentless,
		Sensitive: opts.Sensitive, UpdatedAt: time.Now().UTC().Truncate(time.Second),
		Guards: Guards{AllowedHosts: opts.AllowedHosts}}
	sens := uint8(0)
	if c.Sensitive {
		sens = 1
	}
	err := s.insertOne(ctx, "INSERT INTO campaigns (campaign_id, client_id, name, consentless, sensitive, deleted, updated_at, version)",
		c.ID, c.ClientID, c.Name, string(c.Consentless), sens, uint8(0), c.UpdatedAt, version())
	if err != nil {
		return Campaign{}, fmt.Errorf("store: create campaign: %w", err)
	}
	if len(c.AllowedHosts) > 0 {
		if err := s.setGuards(ctx, c.ID, c.ClientID, c.Guards); err != nil {
			return Campaign{}, fmt.Errorf("store: create campaign: %w", err)
		}
	}
	return c, nil
}

type campaignRow struct {
	ID          string    `ch:"campaign_id"`
	ClientID    string    `ch:"client_id"`
	Name        string    `ch:"name"`
	Consentless string    `ch:"consentless"`
	Sensitive   uint8     `ch:"sensitive"`
	UpdatedAt   time.Time `ch:"updated_at"`
}

const campaignSelect = `
	SELECT campaign_id,
		argMax(client_id, version) AS client_id,
		argMax(name, version) AS name,
		toString(argMax(consentless, version)) AS consentless,
		argMax(sensitive, version) AS sensitive,
		argMax(updated_at, version) AS updated_at
	FROM campaigns
	GROUP BY campaign_id
	HAVING argMax(deleted, version) = 0`

func (r campaignRow) campaign() Campaign {
	return Campaign{ID: r.ID, ClientID: r.ClientID, Name: r.Name,
		Consentless: ConsentlessMode(r.Consentless), Sensitive: r.Sensitive == 1, UpdatedAt: r.UpdatedAt}
}

// endedClients selects the clients that stopped using us.
const endedClients = `SELECT client_id FROM clients GROUP BY client_id HAVING argMax(deleted, version) = 1`

// Campaigns returns every live campaign of a live client: the campaigns
// ingest accepts hits for. A client that ended stops being tracked at once.
func (s *Store) Campaigns(ctx context.Context) ([]Campaign, error) {
	var rows []campaignRow
	if err := s.conn.Select(ctx, &rows, campaignSelect+` AND client_id NOT IN (`+endedClients+`)`); err != nil {
		return nil, fmt.Errorf("store: campaigns: %w", err)
	}
	return s.withGuards(ctx, rows)
}

// ClientCampaign returns campaign id if it belongs to clientID; otherwise
// ErrNotFound, whether or not it exists for another client.
func (s *Store) ClientCampaign(ctx context.Context, clientID, id string) (Campaign, error) {
	var rows []campaignRow
	if err := s.conn.Select(ctx, &rows, campaignSelect+` AND campaign_id = ? AND client_id = ?`, id, clientID); err != nil {
		return Campaign{}, fmt.Errorf("store: campaign %s: %w", id, err)
	}
	if len(rows) != 1 {
		return Campaign{}, ErrNotFound
	}
	cs, err := s.withGuards(ctx, rows)
	if err != nil {
		return Campaign{}, err
	}
	return cs[0], nil
}

// ClientCampaigns returns the live campaigns of clientID.
func (s *Store) ClientCampaigns(ctx context.Context, clientID string) ([]Campaign, error) {
	var rows []campaignRow
	if err := s.conn.Select(ctx, &rows, campaignSelect+` AND client_id = ? ORDER BY campaign_id`, clientID); err != nil {
		return nil, fmt.Errorf("store: campaigns of %s: %w", clientID, err)
	}
	return s.withGuards(ctx, rows)
}

// UpdateCampaign writes a new version of c (owned by c.ClientID).
func (s *Store) UpdateCampaign(ctx context.Context, c Campaign) (Campaign, error) {
	switch c.Consentless {
	case ConsentlessCount, ConsentlessDrop:
	default:
		return Campaign{}, fmt.Errorf("store: update campaign: consentless must be %q or %q", ConsentlessCount, ConsentlessDrop)
	}
	c.UpdatedAt = time.Now().UTC().Truncate(time.Second)
	sens := uint8(0)
	if c.Sensitive {
		sens = 1
	}
	err := s.insertOne(ctx, "INSERT INTO campaigns (campaign_id, client_id, name, consentless, sensitive, deleted, updated_at, version)",
		c.ID, c.ClientID, c.Name, string(c.Consentless), sens, uint8(0), c.UpdatedAt, version())
	if err != nil {
		return Campaign{}, fmt.Errorf("store: update campaign: %w", err)
	}
	if err := s.setGuards(ctx, c.ID, c.ClientID, c.Guards); err != nil {
		return Campaign{}, fmt.Errorf("store: update campaign: %w", err)
	}
	return c, nil
}

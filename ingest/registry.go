package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

// CampaignSource lists live campaigns; *store.Store implements it.
type CampaignSource interface {
	Campaigns(ctx context.Context) ([]store.Campaign, error)
}

// campaignInfo is what ingest needs to know about a campaign per hit.
type campaignInfo struct {
	clientID      []byte
	dropNoConsent bool
	hosts         [][]byte // allowed page hosts, lowercase; "*.d" for d's subdomains; empty: any
	secret        []byte   // signs /s2s requests; nil: endpoint off
	requireSigned bool     // applications only through /s2s
}

// Registry is an in-memory snapshot of the live campaigns, refreshed in the
// background so hits never wait on storage. With a snapshot file (Load) it
// also starts, and keeps answering, while the source is down.
type Registry struct {
	src   CampaignSource
	log   *slog.Logger
	snap  atomic.Pointer[map[string]campaignInfo]
	known atomic.Bool // loaded from the source or a snapshot file at least once
	file  string      // snapshot file written after each refresh; "" for none
}

// NewRegistry returns an empty registry; call Load (or Refresh) before
// serving.
func NewRegistry(src CampaignSource, log *slog.Logger) *Registry {
	r := &Registry{src: src, log: log}
	empty := map[string]campaignInfo{}
	r.snap.Store(&empty)
	return r
}

// Refresh reloads the snapshot from the source.
func (r *Registry) Refresh(ctx context.Context) error {
	cs, err := r.src.Campaigns(ctx)
	if err != nil {
		return fmt.Errorf("ingest: refresh campaigns: %w", err)
	}
	saved := savedCampaigns{Written: time.Now().UTC(), Campaigns: make([]savedCampaign, len(cs))}
	for i, c := range cs {
		saved.Campaigns[i] = savedCampaign{ID: c.ID, ClientID: c.ClientID, DropNoConsent: c.Consentless == store.ConsentlessDrop,
			AllowedHosts: c.AllowedHosts, S2SSecret: c.S2SSecret, RequireSigned: c.RequireSigned}
	}
	r.install(saved.Campaigns)
	if r.file != "" {
		if err := writeSnapshot(r.file, &saved); err != nil {
			r.log.Warn("writing the campaign snapshot failed (a start while ClickHouse is down would use an older one)", "err", err)
		}
	}
	return nil
}

// Load fills the registry at start and keeps the snapshot file up to date
// from then on: from the source when it answers, else from file, written
// by an earlier refresh. It fails only when neither is available; the
// registry is then empty, and Known false until a refresh succeeds.
func (r *Registry) Load(ctx context.Context, file string) error {
	r.file = file
	err := r.Refresh(ctx)
	if err == nil {
		return nil
	}
	saved, ferr := readSnapshot(file)
	if ferr != nil {
		return errors.Join(err, ferr)
	}
	r.install(saved.Campaigns)
	r.log.Warn("campaign source unavailable: serving the campaign snapshot until it answers",
		"campaigns", len(saved.Campaigns), "written", saved.Written, "err", err)
	return nil
}

// Known reports whether the registry has ever been loaded, from the source
// or from a snapshot file: before that every hit is an unknown campaign.
func (r *Registry) Known() bool { return r.known.Load() }

func (r *Registry) install(cs []savedCampaign) {
	m := make(map[string]campaignInfo, len(cs))
	for _, c := range cs {
		info := campaignInfo{clientID: []byte(c.ClientID), dropNoConsent: c.DropNoConsent, requireSigned: c.RequireSigned}
		for _, h := range c.AllowedHosts {
			info.hosts = append(info.hosts, []byte(strings.ToLower(h)))
		}
		if c.S2SSecret != "" {
			info.secret = []byte(c.S2SSecret)
		}
		m[c.ID] = info
	}
	r.snap.Store(&m)
	r.known.Store(true)
}

// savedCampaigns is the snapshot file: what ingest needs of each live
// campaign, nothing about visitors. It holds the campaigns' server-to-server
// secrets, so it is written readable by its owner only.
type savedCampaigns struct {
	Written   time.Time       `json:"written"`
	Campaigns []savedCampaign `json:"campaigns"`
}

type savedCampaign struct {
	ID            string   `json:"id"`
	ClientID      string   `json:"client_id"`
	DropNoConsent bool     `json:"drop_no_consent,omitempty"`
	AllowedHosts  []string `json:"allowed_hosts,omitempty"`
	S2SSecret     string   `json:"s2s_secret,omitempty"`
	RequireSigned bool     `json:"require_signed,omitempty"`
}

// writeSnapshot replaces file atomically (temporary file, fsync, rename),
// with mode 0600 (os.CreateTemp's).
func writeSnapshot(file string, s *savedCampaigns) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("ingest: campaign snapshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("ingest: campaign snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".campaigns-*")
	if err != nil {
		return fmt.Errorf("ingest: campaign snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return fmt.Errorf("ingest: campaign snapshot: %w", err)
	}
	return nil
}

func readSnapshot(file string) (*savedCampaigns, error) {
	if file == "" {
		return nil, errors.New("ingest: no campaign snapshot configured")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ingest: campaign snapshot: %w", err)
	}
	var s savedCampaigns
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("ingest: campaign snapshot %s: %w", file, err)
	}
	return &s, nil
}

// Run refreshes every interval until ctx ends.
func (r *Registry) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("campaign refresh failed; serving the campaigns known before", "err", err)
			}
		}
	}
}

// lookup returns the campaign with the given id. It does not allocate.
func (r *Registry) lookup(id []byte) (campaignInfo, bool) {
	c, ok := (*r.snap.Load())[string(id)]
	return c, ok
}

package ingest

import (
	"context"
	"fmt"
	"log/slog"
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
}

// Registry is an in-memory snapshot of the live campaigns, refreshed in the
// background so hits never wait on storage.
type Registry struct {
	src  CampaignSource
	log  *slog.Logger
	snap atomic.Pointer[map[string]campaignInfo]
}

// NewRegistry returns an empty registry; call Refresh before serving.
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
	m := make(map[string]campaignInfo, len(cs))
	for _, c := range cs {
		m[c.ID] = campaignInfo{clientID: []byte(c.ClientID), dropNoConsent: c.Consentless == store.ConsentlessDrop}
	}
	r.snap.Store(&m)
	return nil
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
				r.log.Warn("campaign refresh failed; serving the previous snapshot", "err", err)
			}
		}
	}
}

// lookup returns the campaign with the given id. It does not allocate.
func (r *Registry) lookup(id []byte) (campaignInfo, bool) {
	c, ok := (*r.snap.Load())[string(id)]
	return c, ok
}

// Package salt keeps the daily random salt of the cookieless visitor hash.
//
// A day's salt is random (crypto/rand), created once in ClickHouse and
// shared by every ingest replica. The next day's salt is fetched an hour
// ahead so midnight never waits on storage. Once a day is over its salt is
// wiped from memory and its ClickHouse partition dropped, so yesterday's
// visitor hashes can never be recomputed.
package salt

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Store is where salts live; *store.Store implements it.
type Store interface {
	Salt(ctx context.Context, day time.Time) ([32]byte, error)
	DropSaltsBefore(ctx context.Context, day time.Time) ([]string, error)
}

type daySalt struct {
	day  int64 // unix day number
	salt [32]byte
}

// Keeper serves the current salt without blocking.
type Keeper struct {
	st   Store
	log  *slog.Logger
	now  func() time.Time
	cur  atomic.Pointer[daySalt]
	next atomic.Pointer[daySalt]
	// retired is a past day's salt no longer served; tick wipes it one
	// interval later, when no hash can still be using it.
	retired *daySalt
}

// New returns a Keeper; call Load before serving and Run in the background.
func New(st Store, log *slog.Logger) *Keeper {
	return &Keeper{st: st, log: log, now: time.Now}
}

func dayNumber(t time.Time) int64 { return t.Unix() / 86400 }

// Load fetches today's salt. Ingest is not ready before it succeeds.
func (k *Keeper) Load(ctx context.Context) error {
	now := k.now().UTC()
	s, err := k.st.Salt(ctx, now)
	if err != nil {
		return fmt.Errorf("salt: load today's salt: %w", err)
	}
	k.cur.Store(&daySalt{day: dayNumber(now), salt: s})
	return nil
}

// Current returns the salt for the UTC day of now, or nil if it is not known
// (storage unreachable across midnight). It never returns another day's
// salt. It does not allocate.
func (k *Keeper) Current(now time.Time) *[32]byte {
	d := dayNumber(now)
	if c := k.cur.Load(); c != nil && c.day == d {
		return &c.salt
	}
	if n := k.next.Load(); n != nil && n.day == d {
		return &n.salt
	}
	return nil
}

// Run refreshes salts every interval until ctx ends: it re-reads today's
// salt (so racing replicas converge), fetches tomorrow's in the last hour of
// the day, wipes past salts from memory and drops them from storage.
func (k *Keeper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		k.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (k *Keeper) tick(ctx context.Context) {
	now := k.now().UTC()
	today := dayNumber(now)
	if k.retired != nil {
		clear(k.retired.salt[:]) // destroyed: yesterday's hashes cannot be recomputed
		k.retired = nil
	}
	prev := k.cur.Load()
	if s, err := k.st.Salt(ctx, now); err != nil {
		k.log.Warn("salt refresh failed", "err", err)
		if n := k.next.Load(); n != nil && n.day == today {
			k.cur.Store(n) // the salt fetched ahead
		}
	} else {
		k.cur.Store(&daySalt{day: today, salt: s})
	}
	if prev != nil && prev.day < today && k.cur.Load() != prev {
		k.retired = prev
	}
	if now.Add(time.Hour).UTC().Truncate(24 * time.Hour).After(now.Truncate(24 * time.Hour)) {
		tomorrow := now.Add(time.Hour)
		if s, err := k.st.Salt(ctx, tomorrow); err != nil {
			k.log.Warn("fetching tomorrow's salt failed", "err", err)
		} else {
			k.next.Store(&daySalt{day: dayNumber(tomorrow), salt: s})
		}
	}
	if n := k.next.Load(); n != nil && n.day < today {
		k.next.Store(nil)
	}
	dropped, err := k.st.DropSaltsBefore(ctx, now)
	if err != nil {
		k.log.Warn("dropping old salts failed", "err", err)
	} else if len(dropped) > 0 {
		k.log.Info("destroyed past visitor salts", "days", dropped)
	}
}

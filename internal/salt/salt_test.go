package salt

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// memStore is a Store keeping salts in memory, like ClickHouse would.
type memStore struct {
	mu    sync.Mutex
	salts map[string][32]byte
	fail  bool
	n     byte
}

func (m *memStore) Salt(_ context.Context, day time.Time) ([32]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return [32]byte{}, errors.New("clickhouse down")
	}
	k := day.UTC().Format(time.DateOnly)
	s, ok := m.salts[k]
	if !ok {
		m.n++
		s = [32]byte{m.n, 0xaa}
		m.salts[k] = s
	}
	return s, nil
}

func (m *memStore) DropSaltsBefore(_ context.Context, day time.Time) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.salts {
		if k < day.UTC().Format(time.DateOnly) {
			delete(m.salts, k)
			out = append(out, k)
		}
	}
	return out, nil
}

func TestRotation(t *testing.T) {
	st := &memStore{salts: map[string][32]byte{}}
	k := New(st, slog.Default())
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	k.now = func() time.Time { return now }
	if k.Current(now) != nil {
		t.Fatal("salt before Load")
	}
	if err := k.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	today := *k.Current(now)
	if today == ([32]byte{}) {
		t.Fatal("zero salt")
	}
	// Midnight without the next salt fetched: no salt rather than yesterday's.
	if k.Current(now.Add(12*time.Hour)) != nil {
		t.Fatal("yesterday's salt served after midnight")
	}
	// In the last hour of the day, tomorrow's salt is fetched ahead.
	now = time.Date(2026, 11, 25, 23, 30, 0, 0, time.UTC)
	k.tick(context.Background())
	tomorrow := k.Current(time.Date(2026, 11, 26, 0, 0, 1, 0, time.UTC))
	if tomorrow == nil || *tomorrow == today {
		t.Fatalf("tomorrow's salt %v, today's %v", tomorrow, today)
	}
	// Storage down at midnight: the prefetched salt still serves.
	st.fail = true
	now = time.Date(2026, 11, 26, 0, 5, 0, 0, time.UTC)
	k.tick(context.Background())
	if s := k.Current(now); s == nil || *s != *tomorrow {
		t.Fatal("prefetched salt not used across midnight")
	}
	// The previous day's salt is wiped from memory one tick later.
	old := k.retired
	if old == nil || old.salt != today {
		t.Fatal("yesterday's salt not retired")
	}
	k.tick(context.Background())
	if old.salt != ([32]byte{}) {
		t.Fatal("retired salt not wiped from memory")
	}
	// Once storage answers, past salts are destroyed there too.
	st.fail = false
	k.tick(context.Background())
	if _, ok := st.salts["2026-11-25"]; ok {
		t.Fatal("yesterday's salt kept in storage")
	}
	if len(st.salts) != 1 {
		t.Fatalf("storage holds %d salts, want only today's", len(st.salts))
	}
}

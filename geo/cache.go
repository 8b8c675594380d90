package geo

import "sync/atomic"

const cacheBits = 12

// cache is a fixed-size, lock-free, direct-mapped map from non-zero
// uint64 keys to uint64 values. A put may evict another key or be dropped
// under contention; a get never returns a value stored under another key.
// It does not allocate.
type cache [1 << cacheBits]slot

// slot is a seqlock: seq is odd while a writer holds the slot, and a
// reader accepts key and val only if seq was even and unchanged around its
// reads. All fields are atomics, so readers and writers never race.
type slot struct {
	seq atomic.Uint32
	key atomic.Uint64
	val atomic.Uint64
}

func (c *cache) slot(key uint64) *slot {
	// Fibonacci hashing spreads neighbouring networks over the table.
	return &c[(key*0x9e3779b97f4a7c15)>>(64-cacheBits)]
}

func (c *cache) get(key uint64) (uint64, bool) {
	s := c.slot(key)
	seq := s.seq.Load()
	if seq&1 != 0 {
		return 0, false
	}
	k, v := s.key.Load(), s.val.Load()
	if s.seq.Load() != seq || k != key {
		return 0, false
	}
	return v, true
}

func (c *cache) put(key, val uint64) {
	s := c.slot(key)
	seq := s.seq.Load()
	if seq&1 != 0 || !s.seq.CompareAndSwap(seq, seq+1) {
		return // another writer has the slot: skip, it is only a cache
	}
	s.key.Store(key)
	s.val.Store(val)
	s.seq.Store(seq + 2)
}

package pipeline

import "crypto/sha256"

// clientKey maps a page's (campaign, client event id) to a set key. The
// domain prefix keeps it apart from server event ids.
func clientKey(campaign, eid []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte("jobpixel client event\x00"))
	h.Write(campaign)
	h.Write([]byte{0})
	h.Write(eid)
	var k [16]byte
	copy(k[:], h.Sum(nil))
	return k
}

// idSet is a bounded set of recently seen event ids: inserting beyond its
// capacity evicts the oldest. It is not safe for concurrent use.
type idSet struct {
	ring []([16]byte)
	next int
	full bool
	m    map[[16]byte]struct{}
}

func newIDSet(capacity int) *idSet {
	return &idSet{ring: make([][16]byte, capacity), m: make(map[[16]byte]struct{}, capacity)}
}

func (s *idSet) has(id [16]byte) bool {
	_, ok := s.m[id]
	return ok
}

func (s *idSet) add(id [16]byte) {
	if _, ok := s.m[id]; ok {
		return
	}
	if s.full {
		delete(s.m, s.ring[s.next])
	}
	s.ring[s.next] = id
	s.m[id] = struct{}{}
	s.next++
	if s.next == len(s.ring) {
		s.next = 0
		s.full = true
	}
}

package pipeline

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

package relay

// keySet is a set of strings that remembers at most n of the latest
// additions (a FIFO ring).
type keySet struct {
	m    map[string]struct{}
	ring []string
	next int
}

func newKeySet(n int) *keySet {
	return &keySet{m: make(map[string]struct{}, min(n, 1<<16)), ring: make([]string, n)}
}

func (s *keySet) has(k string) bool {
	_, ok := s.m[k]
	return ok
}

func (s *keySet) add(k string) {
	if s.has(k) {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.m, old)
	}
	s.ring[s.next] = k
	s.m[k] = struct{}{}
	s.next = (s.next + 1) % len(s.ring)
}

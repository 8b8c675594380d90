package consent

import (
	"sort"
	"strings"
)

// bitWriter builds TC strings bit by bit, for tests only.
type bitWriter struct{ bits []byte }

func (w *bitWriter) put(v uint64, n int) *bitWriter {
	for i := n - 1; i >= 0; i-- {
		w.bits = append(w.bits, byte(v>>i&1))
	}
	return w
}

func (w *bitWriter) flag(b bool) *bitWriter {
	if b {
		return w.put(1, 1)
	}
	return w.put(0, 1)
}

// mask writes an n-bit field whose first bit stands for id 1.
func (w *bitWriter) mask(ids []int, n int) *bitWriter {
	for i := 1; i <= n; i++ {
		w.flag(contains(ids, i))
	}
	return w
}

func (w *bitWriter) String() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var sb strings.Builder
	for i := 0; i < len(w.bits); i += 6 {
		v := 0
		for j := 0; j < 6; j++ {
			v <<= 1
			if i+j < len(w.bits) {
				v |= int(w.bits[i+j])
			}
		}
		sb.WriteByte(alphabet[v])
	}
	return sb.String()
}

func contains(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// testRange is a range entry exactly as written, so that tests can write
// invalid ones.
type testRange struct{ first, last int }

type testRestriction struct {
	purpose, typ int
	ranges       []testRange
}

// testTC describes a core segment for the test encoder. Zero fields get
// valid defaults.
type testTC struct {
	version         int // default 2
	created         uint64
	cmpID           int // default 10
	lang, cc        string
	policy          int
	purposes, li    []int
	special         []int
	p1Treatment     bool
	serviceSpecific bool

	vendorConsents, vendorLI []int
	rangeEncode              bool        // range-encode the vendor sections
	consentRanges            []testRange // written verbatim (range encoding) when not nil
	maxVendorID              int         // overrides MaxVendorId of the consent section when > 0
	restrictions             []testRestriction
	extra                    []string // optional segments appended with '.'
	truncateBits             int      // drop this many bits from the end of the core
}

func maxOf(ids []int) int {
	m := 0
	for _, id := range ids {
		m = max(m, id)
	}
	return m
}

// rangesOf turns ids into maximal ranges.
func rangesOf(ids []int) []testRange {
	s := append([]int(nil), ids...)
	sort.Ints(s)
	var rs []testRange
	for _, id := range s {
		if n := len(rs); n > 0 && rs[n-1].last+1 >= id {
			rs[n-1].last = max(rs[n-1].last, id)
			continue
		}
		rs = append(rs, testRange{id, id})
	}
	return rs
}

func writeRanges(w *bitWriter, rs []testRange) {
	w.put(uint64(len(rs)), 12)
	for _, r := range rs {
		if r.first == r.last {
			w.put(0, 1).put(uint64(r.first), 16)
		} else {
			w.put(1, 1).put(uint64(r.first), 16).put(uint64(r.last), 16)
		}
	}
}

func writeVendors(w *bitWriter, ids []int, rangeEncode bool, maxID int, verbatim []testRange) {
	if maxID == 0 {
		maxID = maxOf(ids)
		for _, r := range verbatim {
			maxID = max(maxID, r.last)
		}
	}
	w.put(uint64(maxID), 16)
	if verbatim != nil {
		w.put(1, 1)
		writeRanges(w, verbatim)
		return
	}
	if rangeEncode {
		w.put(1, 1)
		writeRanges(w, rangesOf(ids))
		return
	}
	w.put(0, 1).mask(ids, maxID)
}

func (t testTC) encode() string {
	w := &bitWriter{}
	if t.version == 0 {
		t.version = 2
	}
	if t.cmpID == 0 {
		t.cmpID = 10
	}
	if t.lang == "" {
		t.lang = "EN"
	}
	if t.cc == "" {
		t.cc = "DE"
	}
	if t.policy == 0 {
		t.policy = 4
	}
	if t.created == 0 {
		t.created = 17_000_000_000 // deciseconds: 2023-11-14
	}
	w.put(uint64(t.version), 6)
	w.put(t.created, 36).put(t.created, 36)
	w.put(uint64(t.cmpID), 12).put(3, 12).put(1, 6)
	w.put(uint64(t.lang[0]-'A'), 6).put(uint64(t.lang[1]-'A'), 6)
	w.put(150, 12).put(uint64(t.policy), 6)
	w.flag(t.serviceSpecific).flag(false)
	w.mask(t.special, 12).mask(t.purposes, 24).mask(t.li, 24)
	w.flag(t.p1Treatment)
	w.put(uint64(t.cc[0]-'A'), 6).put(uint64(t.cc[1]-'A'), 6)
	writeVendors(w, t.vendorConsents, t.rangeEncode, t.maxVendorID, t.consentRanges)
	writeVendors(w, t.vendorLI, t.rangeEncode, 0, nil)
	w.put(uint64(len(t.restrictions)), 12)
	for _, r := range t.restrictions {
		w.put(uint64(r.purpose), 6).put(uint64(r.typ), 2)
		writeRanges(w, r.ranges)
	}
	if t.truncateBits > 0 {
		w.bits = w.bits[:len(w.bits)-t.truncateBits]
	}
	s := w.String()
	for _, e := range t.extra {
		s += "." + e
	}
	return s
}

// vendorsSegment encodes a disclosed (typ 1) or allowed (typ 2) vendors segment.
func vendorsSegment(typ int, ids []int, rangeEncode bool) string {
	w := &bitWriter{}
	w.put(uint64(typ), 3)
	writeVendors(w, ids, rangeEncode, 0, nil)
	return w.String()
}

// publisherSegment encodes a publisher TC segment (type 3).
func publisherSegment(consents, li []int, custom, customLI []int, numCustom int) string {
	w := &bitWriter{}
	w.put(3, 3).mask(consents, 24).mask(li, 24).put(uint64(numCustom), 6)
	w.mask(custom, numCustom).mask(customLI, numCustom)
	return w.String()
}

func ids(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

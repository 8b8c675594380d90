package consent

import (
	"bytes"
	"math/bits"
	"time"
)

// This file holds the one TC string decoder behind both Parse and
// Summarize. It reads bits straight out of the base64url text (no decoded
// copy), records the first fault without allocating, and fills a *TCString
// only when it is given one. Sharing the walk guarantees that Parse and
// Summarize accept and reject exactly the same strings.

// b64 maps a base64url character to its 6-bit value; 0xff marks any other byte.
var b64 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// Segment types, as numbered in the first three bits of a segment.
const (
	segCore        = 0
	segDisclosed   = 1
	segAllowed     = 2
	segPublisherTC = 3
)

const (
	bitsPerEntry       = 17 // the smallest range entry: IsARange(1) + VendorId(16)
	bitsPerRestriction = 20 // PurposeId(6) + RestrictionType(2) + NumEntries(12)
)

// fault is the first problem found in a string. Its strings are constants
// and its detail is a format applied (by Parse only) to a and b, so that
// recording it never allocates. A format has at most two verbs and no "%%".
// An empty field marks a problem with the string as a whole, whose offset
// is in bytes.
type fault struct {
	err    error
	seg    int
	off    int
	field  string
	format string
	a, b   int
}

type walker struct {
	src   []byte
	seg   int // index of the current segment
	start int // byte offset of the current segment in src
	pos   int // next bit within the current segment
	nbits int // bits in the current segment
	fault fault

	tc  *TCString                 // nil when only summarizing
	ids [numPlatforms]int         // vendor ids to summarize; 0 = none
	sum Summary                   // filled as the walk goes
	lim [3][numPlatforms]Purposes // restrictions per type per summarized vendor
}

func (w *walker) ok() bool { return w.fault.err == nil }

// fail records a fault unless one is already recorded: the first one wins.
func (w *walker) fail(err error, field string, off int, format string, a, b int) {
	if w.fault.err != nil {
		return
	}
	w.fault = fault{err: err, seg: w.seg, off: off, field: field, format: format, a: a, b: b}
}

// u reads the next n bits (0 <= n <= 64) as an unsigned big-endian integer.
// On truncation it records a fault and returns 0; after a fault it reads
// nothing.
func (w *walker) u(n int, field string) uint64 {
	if w.fault.err != nil {
		return 0
	}
	if n > w.nbits-w.pos {
		w.fail(ErrTruncated, field, w.pos, "needs %d bits, %d left", n, w.nbits-w.pos)
		return 0
	}
	var v uint64
	pos := w.pos
	for n > 0 {
		c := uint64(b64[w.src[w.start+pos/6]])
		avail := 6 - pos%6
		take := min(avail, n)
		v = v<<take | (c>>(avail-take))&(1<<take-1)
		pos += take
		n -= take
	}
	w.pos = pos
	return v
}

// bit returns bit i of the current segment; the caller has checked i < nbits.
func (w *walker) bit(i int) bool {
	return b64[w.src[w.start+i/6]]>>(5-i%6)&1 == 1
}

// run decodes src, filling tc when it is not nil.
func (w *walker) run(src []byte, tc *TCString) {
	w.src, w.tc = src, tc
	if len(src) == 0 {
		w.fail(ErrEmpty, "", 0, "", 0, 0)
		return
	}
	if len(src) > MaxLen {
		w.fail(ErrTooLong, "", 0, "%d bytes, limit %d", len(src), MaxLen)
		return
	}
	for i, c := range src {
		if c != '.' && b64[c] == 0xff {
			w.fail(ErrEncoding, "", i, "byte 0x%02x at offset %d", int(c), i)
			return
		}
	}
	var seen [4]bool
	for start := 0; ; {
		end := len(src)
		if i := bytes.IndexByte(src[start:], '.'); i >= 0 {
			end = start + i
		}
		w.start, w.pos, w.nbits = start, 0, (end-start)*6
		if end == start {
			w.fail(ErrSegment, "", start, "segment %d is empty (byte %d)", w.seg, start)
			return
		}
		if w.seg == 0 {
			w.core()
		} else {
			typ := int(w.u(3, "segment type"))
			if !w.ok() {
				return
			}
			switch {
			case typ == segCore:
				w.fail(ErrSegment, "segment type", 0, "core segment repeated", 0, 0)
			case typ > segPublisherTC:
				w.fail(ErrSegment, "segment type", 0, "unknown segment type %d", typ, 0)
			case seen[typ]:
				w.fail(ErrSegment, "segment type", 0, "segment type %d repeated", typ, 0)
			case typ == segDisclosed:
				var dst *VendorSet
				if w.tc != nil {
					w.tc.DisclosedVendors = new(VendorSet)
					dst = w.tc.DisclosedVendors
				}
				w.vendorSet("disclosed vendors", dst)
			case typ == segAllowed:
				var dst *VendorSet
				if w.tc != nil {
					w.tc.AllowedVendors = new(VendorSet)
					dst = w.tc.AllowedVendors
				}
				w.vendorSet("allowed vendors", dst)
			case typ == segPublisherTC:
				w.publisherTC()
			}
			if typ < len(seen) {
				seen[typ] = true
			}
		}
		if !w.ok() || end == len(src) {
			break
		}
		start = end + 1
		w.seg++
	}
	w.finish()
}

func (w *walker) core() {
	off := w.pos
	if v := w.u(6, "version"); w.ok() && v != 2 {
		w.fail(ErrVersion, "version", off, "version %d, want %d", int(v), 2)
		return
	}
	created := w.u(36, "created")
	updated := w.u(36, "last updated")
	off = w.pos
	cmpID := int(w.u(12, "cmp id"))
	if w.ok() && cmpID < 2 {
		w.fail(ErrField, "cmp id", off, "cmp id %d, want >= %d", cmpID, 2)
	}
	cmpVersion := int(w.u(12, "cmp version"))
	screen := int(w.u(6, "consent screen"))
	lang := w.letters("consent language")
	listVersion := int(w.u(12, "vendor list version"))
	policy := int(w.u(6, "policy version"))
	serviceSpecific := w.u(1, "is service specific") == 1
	nonStandard := w.u(1, "use non-standard texts") == 1
	special := SpecialFeatures(bits.Reverse16(uint16(w.u(12, "special feature opt-ins")) << 4))
	consents := Purposes(bits.Reverse32(uint32(w.u(24, "purposes consent")) << 8))
	li := Purposes(bits.Reverse32(uint32(w.u(24, "purposes li transparency")) << 8))
	p1t := w.u(1, "purpose one treatment") == 1
	cc := w.letters("publisher cc")
	if !w.ok() {
		return
	}

	w.sum = Summary{
		CmpID:                  cmpID,
		PolicyVersion:          policy,
		IsServiceSpecific:      serviceSpecific,
		PurposeOneTreatment:    p1t,
		SpecialFeatureOptIns:   special,
		PurposesConsent:        consents,
		PurposesLITransparency: li,
	}
	if tc := w.tc; tc != nil {
		tc.Version = 2
		tc.Created = deciseconds(created)
		tc.LastUpdated = deciseconds(updated)
		tc.CmpID = cmpID
		tc.CmpVersion = cmpVersion
		tc.ConsentScreen = screen
		tc.ConsentLanguage = string(lang[:])
		tc.VendorListVersion = listVersion
		tc.PolicyVersion = policy
		tc.IsServiceSpecific = serviceSpecific
		tc.UseNonStandardTexts = nonStandard
		tc.SpecialFeatureOptIns = special
		tc.PurposesConsent = consents
		tc.PurposesLITransparency = li
		tc.PurposeOneTreatment = p1t
		tc.PublisherCC = string(cc[:])
	}

	var consentDst, liDst *VendorSet
	if w.tc != nil {
		consentDst, liDst = &w.tc.VendorConsents, &w.tc.VendorLegitimateInterests
	}
	hits := w.vendorSet("vendor consents", consentDst)
	for k := range w.ids {
		w.sum.vendors[k].Consent = hits&(1<<k) != 0
	}
	hits = w.vendorSet("vendor legitimate interests", liDst)
	for k := range w.ids {
		w.sum.vendors[k].LegitimateInterest = hits&(1<<k) != 0
	}
	w.restrictions()
}

func deciseconds(ds uint64) time.Time { return time.UnixMilli(int64(ds) * 100).UTC() }

// letters reads a two-letter code: two 6-bit values 0..25 for A..Z.
func (w *walker) letters(field string) [2]byte {
	off := w.pos
	a, b := w.u(6, field), w.u(6, field)
	if w.ok() && (a > 25 || b > 25) {
		w.fail(ErrField, field, off, "letter values %d and %d, want 0..25", int(a), int(b))
	}
	return [2]byte{'A' + byte(a), 'A' + byte(b)}
}

// vendorSet reads a vendor section (MaxVendorId, IsRangeEncoding, then a
// bitfield or range entries) into dst when dst is not nil. The result has
// bit k set when the set holds w.ids[k].
func (w *walker) vendorSet(field string, dst *VendorSet) (hits uint8) {
	off := w.pos
	maxID := int(w.u(16, field))
	if w.ok() && maxID > MaxVendorID {
		w.fail(ErrLimit, field, off, "max vendor id %d, limit %d", maxID, MaxVendorID)
	}
	isRange := w.u(1, field) == 1
	if !w.ok() {
		return 0
	}
	if dst != nil {
		dst.MaxVendorID, dst.RangeEncoded = maxID, isRange
	}
	var ranges *[]VendorRange
	if dst != nil {
		ranges = &dst.Ranges
	}
	if isRange {
		n := int(w.u(12, field))
		return w.entries(field, n, maxID, ranges)
	}
	return w.bitfield(field, maxID, ranges)
}

// bitfield reads maxID bits, one per vendor id from 1.
func (w *walker) bitfield(field string, maxID int, dst *[]VendorRange) (hits uint8) {
	if maxID > w.nbits-w.pos {
		w.fail(ErrTruncated, field, w.pos, "bitfield of %d bits, %d left", maxID, w.nbits-w.pos)
		return 0
	}
	base := w.pos
	for k, id := range w.ids {
		if id > 0 && id <= maxID && w.bit(base+id-1) {
			hits |= 1 << k
		}
	}
	if dst != nil {
		var rs []VendorRange
		for i := 0; i < maxID; {
			if !w.bit(base + i) {
				i++
				continue
			}
			j := i + 1
			for j < maxID && w.bit(base+j) {
				j++
			}
			rs = append(rs, VendorRange{First: uint16(i + 1), Last: uint16(j)})
			i = j
		}
		*dst = rs
	}
	w.pos += maxID
	return hits
}

// entries reads n range entries: ascending, non-overlapping, ids 1..maxID.
func (w *walker) entries(field string, n, maxID int, dst *[]VendorRange) (hits uint8) {
	if !w.ok() {
		return 0
	}
	if n*bitsPerEntry > w.nbits-w.pos {
		// Fail before allocating for entries that cannot be there.
		w.fail(ErrTruncated, field, w.pos, "%d range entries need at least %d more bits", n, n*bitsPerEntry-(w.nbits-w.pos))
		return 0
	}
	if dst != nil && n > 0 {
		*dst = make([]VendorRange, 0, n)
	}
	prev := 0
	for i := 0; i < n; i++ {
		off := w.pos
		isRange := w.u(1, field) == 1
		first := int(w.u(16, field))
		last := first
		if isRange {
			last = int(w.u(16, field))
		}
		if !w.ok() {
			return 0
		}
		switch {
		case first == 0:
			w.fail(ErrRange, field, off, "vendor id 0 in entry %d of %d", i+1, n)
		case last < first:
			w.fail(ErrRange, field, off, "range %d-%d ends before it starts", first, last)
		case first <= prev:
			w.fail(ErrRange, field, off, "entry starting at %d is not after the previous one ending at %d", first, prev)
		case last > maxID:
			w.fail(ErrRange, field, off, "vendor %d beyond max vendor id %d", last, maxID)
		}
		if !w.ok() {
			return 0
		}
		prev = last
		for k, id := range w.ids {
			if id >= first && id <= last {
				hits |= 1 << k
			}
		}
		if dst != nil {
			*dst = append(*dst, VendorRange{First: uint16(first), Last: uint16(last)})
		}
	}
	return hits
}

func (w *walker) restrictions() {
	const field = "publisher restrictions"
	n := int(w.u(12, field))
	if !w.ok() {
		return
	}
	if n*bitsPerRestriction > w.nbits-w.pos {
		w.fail(ErrTruncated, field, w.pos, "%d restrictions need at least %d more bits", n, n*bitsPerRestriction-(w.nbits-w.pos))
		return
	}
	if w.tc != nil && n > 0 {
		w.tc.PublisherRestrictions = make([]Restriction, 0, n)
	}
	for i := 0; i < n; i++ {
		off := w.pos
		purpose := int(w.u(6, field))
		typ := RestrictionType(w.u(2, field))
		entries := int(w.u(12, field))
		if !w.ok() {
			return
		}
		if purpose < 1 || purpose > 24 {
			w.fail(ErrField, field, off, "purpose id %d in restriction %d, want 1..24", purpose, i+1)
			return
		}
		if typ > RequireLI {
			w.fail(ErrField, field, off, "undefined restriction type %d in restriction %d", int(typ), i+1)
			return
		}
		var dst *[]VendorRange
		if w.tc != nil {
			w.tc.PublisherRestrictions = append(w.tc.PublisherRestrictions, Restriction{Purpose: purpose, Type: typ})
			dst = &w.tc.PublisherRestrictions[len(w.tc.PublisherRestrictions)-1].Vendors
		}
		hits := w.entries(field, entries, MaxVendorID, dst)
		for k := range w.ids {
			if hits&(1<<k) != 0 {
				w.lim[typ][k] |= 1 << (purpose - 1)
			}
		}
	}
}

func (w *walker) publisherTC() {
	const field = "publisher tc"
	consents := Purposes(bits.Reverse32(uint32(w.u(24, field)) << 8))
	li := Purposes(bits.Reverse32(uint32(w.u(24, field)) << 8))
	n := int(w.u(6, field))
	custom := reverseN(w.u(n, field), n)
	customLI := reverseN(w.u(n, field), n)
	if !w.ok() || w.tc == nil {
		return
	}
	w.tc.PublisherTC = &PublisherTC{
		PurposesConsent:              consents,
		PurposesLITransparency:       li,
		NumCustomPurposes:            n,
		CustomPurposesConsent:        custom,
		CustomPurposesLITransparency: customLI,
	}
}

// reverseN turns an n-bit field whose first bit stands for id 1 into a mask
// with bit id-1 set.
func reverseN(v uint64, n int) uint64 {
	if n == 0 {
		return 0
	}
	return bits.Reverse64(v << (64 - n))
}

// finish computes the summarized vendors' effective purposes.
func (w *walker) finish() {
	if !w.ok() {
		return
	}
	for k, id := range w.ids {
		v := &w.sum.vendors[k]
		v.ID = id
		if id == 0 {
			*v = VendorSummary{}
			continue
		}
		v.NotAllowed = w.lim[NotAllowed][k]
		v.RequireConsent = w.lim[RequireConsent][k]
		v.RequireLI = w.lim[RequireLI][k]
		v.effective(&w.sum)
	}
}

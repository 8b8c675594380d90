package consent

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"time"
)

// GoogleVendorID is Google's id in the IAB Global Vendor List.
const GoogleVendorID = 755

// Limits that bound the work and memory spent on one TC string. Parse
// allocates O(len(s)) memory at most and Summarize allocates nothing.
const (
	// MaxLen is the longest TC string accepted, in bytes. Real strings are a
	// few hundred bytes to a few KiB: they travel in cookies and URLs.
	MaxLen = 16 << 10

	// MaxVendorID is the highest vendor id accepted anywhere in a TC string
	// (MaxVendorId fields, ranges, publisher restrictions). The wire format
	// allows 65,535; the Global Vendor List's ids are below 1,500 in 2025.
	MaxVendorID = 10_000
)

// Errors returned by Parse and Summarize. Every error from Parse is an
// *Error wrapping exactly one of them (use errors.Is); Summarize returns
// them bare so that it never allocates.
var (
	ErrEmpty     = errors.New("tcf: empty string")
	ErrTooLong   = errors.New("tcf: string too long")
	ErrEncoding  = errors.New("tcf: invalid base64url")
	ErrTruncated = errors.New("tcf: truncated")
	ErrVersion   = errors.New("tcf: unsupported version")
	ErrSegment   = errors.New("tcf: invalid segment")
	ErrRange     = errors.New("tcf: invalid vendor range")
	ErrLimit     = errors.New("tcf: value exceeds limit")
	ErrField     = errors.New("tcf: invalid field value")
)

// Error is the error Parse returns for a malformed TC string.
type Error struct {
	// Field is what was being decoded, e.g. "vendor consents"; empty for a
	// problem with the string as a whole (ErrEmpty, ErrTooLong, ErrEncoding,
	// an empty segment).
	Field string
	// Segment is the index of the '.'-separated segment, 0 for the core.
	Segment int
	// Offset is the bit offset of Field within its segment, or a byte
	// offset in the string when Field is empty.
	Offset int
	// Detail says what is wrong; may be empty.
	Detail string
	// Err is one of the Err* variables of this package.
	Err error
}

func (e *Error) Error() string {
	msg := e.Err.Error()
	if e.Field != "" {
		msg += fmt.Sprintf(": %s at bit %d of segment %d", e.Field, e.Offset, e.Segment)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Purposes is a set of TCF purpose ids 1..24: bit p-1 stands for purpose p.
type Purposes uint32

// PurposesOf returns the set of the given purpose ids; ids outside 1..24
// are ignored.
func PurposesOf(ids ...int) Purposes {
	var p Purposes
	for _, id := range ids {
		if id >= 1 && id <= 24 {
			p |= 1 << (id - 1)
		}
	}
	return p
}

// Has reports whether purpose id is in the set.
func (p Purposes) Has(id int) bool { return id >= 1 && id <= 24 && p&(1<<(id-1)) != 0 }

// IDs returns the purpose ids in the set in ascending order.
func (p Purposes) IDs() []int { return maskIDs(uint64(p)) }

// SpecialFeatures is a set of TCF special feature ids 1..12: bit f-1 stands
// for special feature f.
type SpecialFeatures uint16

// Has reports whether special feature id is in the set.
func (f SpecialFeatures) Has(id int) bool { return id >= 1 && id <= 12 && f&(1<<(id-1)) != 0 }

// IDs returns the special feature ids in the set in ascending order.
func (f SpecialFeatures) IDs() []int { return maskIDs(uint64(f)) }

func maskIDs(m uint64) []int {
	ids := make([]int, 0, bits.OnesCount64(m))
	for m != 0 {
		i := bits.TrailingZeros64(m)
		ids = append(ids, i+1)
		m &^= 1 << i
	}
	return ids
}

// VendorRange is an inclusive range of vendor ids.
type VendorRange struct {
	First, Last uint16
}

// VendorSet is a set of vendor ids decoded from a TC string.
type VendorSet struct {
	// MaxVendorID is the set's MaxVendorId field: no id in the set is larger.
	MaxVendorID int
	// RangeEncoded reports the encoding found in the string: range entries
	// rather than a bitfield.
	RangeEncoded bool
	// Ranges holds the ids as ascending, non-overlapping ranges.
	Ranges []VendorRange
}

// Has reports whether vendor id is in the set.
func (s *VendorSet) Has(id int) bool { return rangesHave(s.Ranges, id) }

// Len returns the number of ids in the set.
func (s *VendorSet) Len() int {
	n := 0
	for _, r := range s.Ranges {
		n += int(r.Last) - int(r.First) + 1
	}
	return n
}

// IDs returns the ids in the set in ascending order.
func (s *VendorSet) IDs() []int { return rangesIDs(s.Ranges) }

func rangesHave(rs []VendorRange, id int) bool {
	i := sort.Search(len(rs), func(i int) bool { return int(rs[i].Last) >= id })
	return i < len(rs) && int(rs[i].First) <= id
}

func rangesIDs(rs []VendorRange) []int {
	var ids []int
	for _, r := range rs {
		for id := int(r.First); id <= int(r.Last); id++ {
			ids = append(ids, id)
		}
	}
	return ids
}

// RestrictionType is the type of a publisher restriction.
type RestrictionType uint8

// Publisher restriction types, as numbered in the TC string.
const (
	NotAllowed     RestrictionType = 0 // the vendor may not process the purpose at all
	RequireConsent RestrictionType = 1 // the vendor must rely on consent, not legitimate interest
	RequireLI      RestrictionType = 2 // the vendor must rely on legitimate interest, not consent
)

func (t RestrictionType) String() string {
	switch t {
	case NotAllowed:
		return "not allowed"
	case RequireConsent:
		return "require consent"
	case RequireLI:
		return "require legitimate interest"
	}
	return fmt.Sprintf("restriction type %d", uint8(t))
}

// Restriction is one publisher restriction: a purpose, a restriction type
// and the vendors it applies to.
type Restriction struct {
	Purpose int // 1..24
	Type    RestrictionType
	Vendors []VendorRange // ascending, non-overlapping
}

// Applies reports whether the restriction names vendor id.
func (r *Restriction) Applies(id int) bool { return rangesHave(r.Vendors, id) }

// PublisherTC is the publisher purposes segment (segment type 3).
type PublisherTC struct {
	PurposesConsent        Purposes
	PurposesLITransparency Purposes
	// NumCustomPurposes is the number of publisher custom purposes (0..63).
	NumCustomPurposes int
	// CustomPurposesConsent and CustomPurposesLITransparency hold bit i-1 for
	// custom purpose i.
	CustomPurposesConsent        uint64
	CustomPurposesLITransparency uint64
}

// TCString is a decoded IAB TCF v2 (v2.0 to v2.2) TC string.
type TCString struct {
	Version              int       // always 2
	Created, LastUpdated time.Time // UTC, decisecond precision
	CmpID                int
	CmpVersion           int
	ConsentScreen        int
	ConsentLanguage      string // two upper-case letters, ISO 639-1
	VendorListVersion    int
	PolicyVersion        int // 2 for TCF v2.0/v2.1, 4 or later for v2.2
	IsServiceSpecific    bool
	UseNonStandardTexts  bool
	SpecialFeatureOptIns SpecialFeatures
	PurposesConsent      Purposes
	// PurposesLITransparency holds the purposes whose legitimate-interest
	// transparency was established and not objected to.
	PurposesLITransparency Purposes
	PurposeOneTreatment    bool
	PublisherCC            string // two upper-case letters, ISO 3166-1 alpha-2

	VendorConsents            VendorSet
	VendorLegitimateInterests VendorSet
	// PublisherRestrictions are in the order of the string; the same purpose
	// and type may appear more than once.
	PublisherRestrictions []Restriction

	// The optional segments: nil when absent from the string.
	DisclosedVendors *VendorSet   // segment type 1
	AllowedVendors   *VendorSet   // segment type 2
	PublisherTC      *PublisherTC // segment type 3
}

// Parse decodes a TC string: the core segment followed by optional
// segments (disclosed vendors, allowed vendors, publisher TC) in any order,
// each at most once. Parse is strict: it returns an *Error for anything
// malformed, including a version other than 2, a CMP id below 2, language
// or country letters outside A..Z, vendor ranges that are out of order,
// overlap, start at 0 or end beyond MaxVendorId, restriction purposes
// outside 1..24 or of the undefined type 3, and anything beyond MaxLen or
// MaxVendorID. Trailing padding bits are ignored. Parse never panics.
func Parse(s string) (*TCString, error) {
	if len(s) > MaxLen {
		// Checked before copying: do not allocate for an oversized input.
		return nil, &Error{Err: ErrTooLong, Detail: fmt.Sprintf("%d bytes, limit %d", len(s), MaxLen)}
	}
	tc := new(TCString)
	var w walker
	w.run([]byte(s), tc)
	if w.fault.err != nil {
		return nil, w.fault.asError()
	}
	return tc, nil
}

func (f *fault) asError() *Error {
	e := &Error{Segment: f.seg, Offset: f.off, Field: f.field, Err: f.err}
	if f.format != "" {
		args := []any{f.a, f.b}
		e.Detail = fmt.Sprintf(f.format, args[:min(len(args), strings.Count(f.format, "%"))]...)
	}
	return e
}

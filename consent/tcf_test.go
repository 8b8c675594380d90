package consent

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const publicFixture = "COvzTO5OvzTO5BRAAAENAPCoALIAADgAAAAAAewAwABAAlAB6ABBFADBQAQA9hAAAcAA"

func TestParseTable(t *testing.T) {
	tests := []struct {
		name         string
		tc           string
		purposes     []int
		vendors      []int
		vendorLI     []int
		restrictions int
	}{
		// The fixture has three restrictions, two of them naming no vendor.
		{"public fixture", publicFixture, []int{1, 3, 4, 7}, []int{2, 37, 61}, []int{2, 6, 8}, 3},
		{"all refused", "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", []int{}, nil, nil, 0},
		{"bitfield, encoder", testTC{purposes: []int{1, 2}, vendorConsents: []int{1, 5, 755}, vendorLI: []int{3}}.encode(),
			[]int{1, 2}, []int{1, 5, 755}, []int{3}, 0},
		{"ranges, encoder", testTC{purposes: []int{24}, vendorConsents: []int{1, 2, 3, 10, 755, 756}, vendorLI: []int{9}, rangeEncode: true}.encode(),
			[]int{24}, []int{1, 2, 3, 10, 755, 756}, []int{9}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := checkAgreement(t, tt.tc, Vendors{})
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.PurposesConsent.IDs(); !reflect.DeepEqual(got, nonNil(tt.purposes)) {
				t.Errorf("purposes consent = %v, want %v", got, tt.purposes)
			}
			if got := tc.VendorConsents.IDs(); !reflect.DeepEqual(got, tt.vendors) {
				t.Errorf("vendor consents = %v, want %v", got, tt.vendors)
			}
			if got := tc.VendorLegitimateInterests.IDs(); !reflect.DeepEqual(got, tt.vendorLI) {
				t.Errorf("vendor LI = %v, want %v", got, tt.vendorLI)
			}
			if len(tc.PublisherRestrictions) != tt.restrictions {
				t.Errorf("%d restrictions, want %d", len(tc.PublisherRestrictions), tt.restrictions)
			}
		})
	}
}

func TestParseAllFields(t *testing.T) {
	s := testTC{
		created: 15_834_362_809, cmpID: 81, lang: "FR", cc: "IT", policy: 5,
		purposes: []int{1, 24}, li: []int{2, 23}, special: []int{1, 12},
		p1Treatment: true, serviceSpecific: true,
		vendorConsents: []int{2, 755}, vendorLI: []int{8},
		restrictions: []testRestriction{{purpose: 2, typ: 1, ranges: []testRange{{1, 3}, {755, 755}}}},
		extra: []string{
			publisherSegment([]int{1, 2}, []int{7}, []int{1, 63}, []int{2}, 63),
			vendorsSegment(1, []int{1, 2, 755}, true),
			vendorsSegment(2, []int{4}, false),
		},
	}.encode()
	tc, err := checkAgreement(t, s, Vendors{})
	if err != nil {
		t.Fatal(err)
	}
	want := &TCString{
		Version: 2, Created: deciseconds(15_834_362_809), LastUpdated: deciseconds(15_834_362_809),
		CmpID: 81, CmpVersion: 3, ConsentScreen: 1, ConsentLanguage: "FR", VendorListVersion: 150,
		PolicyVersion: 5, IsServiceSpecific: true, SpecialFeatureOptIns: 1 | 1<<11,
		PurposesConsent: PurposesOf(1, 24), PurposesLITransparency: PurposesOf(2, 23),
		PurposeOneTreatment: true, PublisherCC: "IT",
		VendorConsents:            VendorSet{MaxVendorID: 755, Ranges: []VendorRange{{2, 2}, {755, 755}}},
		VendorLegitimateInterests: VendorSet{MaxVendorID: 8, Ranges: []VendorRange{{8, 8}}},
		PublisherRestrictions:     []Restriction{{Purpose: 2, Type: RequireConsent, Vendors: []VendorRange{{1, 3}, {755, 755}}}},
		DisclosedVendors:          &VendorSet{MaxVendorID: 755, RangeEncoded: true, Ranges: []VendorRange{{1, 2}, {755, 755}}},
		AllowedVendors:            &VendorSet{MaxVendorID: 4, Ranges: []VendorRange{{4, 4}}},
		PublisherTC: &PublisherTC{PurposesConsent: PurposesOf(1, 2), PurposesLITransparency: PurposesOf(7),
			NumCustomPurposes: 63, CustomPurposesConsent: 1 | 1<<62, CustomPurposesLITransparency: 2},
	}
	if !reflect.DeepEqual(tc, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", tc, want)
	}
	if got := tc.Created.Format("2006-01-02T15:04:05.0Z07:00"); got != "2020-03-05T19:24:40.9Z" {
		t.Errorf("Created = %s", got)
	}
}

// TestParseErrors: each malformed input fails with the right error kind, in
// Parse and Summarize alike.
func TestParseErrors(t *testing.T) {
	ok := testTC{purposes: []int{1}, vendorConsents: []int{755}}
	good := ok.encode()
	tests := []struct {
		name string
		tc   string
		want error
	}{
		{"empty", "", ErrEmpty},
		{"too long", strings.Repeat("A", MaxLen+1), ErrTooLong},
		{"padding", good + "=", ErrEncoding},
		{"standard base64 char", "+" + good[1:], ErrEncoding},
		{"space", good[:10] + " " + good[11:], ErrEncoding},
		{"non-ascii", good[:10] + "é" + good[12:], ErrEncoding},
		{"version 1", testTC{version: 1}.encode(), ErrVersion},
		{"version 3", testTC{version: 3}.encode(), ErrVersion},
		{"tcf v1.1 string", "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", ErrVersion},
		{"only version", "C", ErrTruncated},
		{"truncated header", good[:20], ErrTruncated},
		{"truncated restrictions", testTC{truncateBits: 12}.encode(), ErrTruncated},
		{"cmp id 0", testTC{}.withCmp(0), ErrField},
		{"cmp id 1", testTC{}.withCmp(1), ErrField},
		{"language letter 26", testTC{lang: "A["}.encode(), ErrField},
		{"country letter 62", testTC{cc: "\x7f\x41"}.encode(), ErrField},
		{"empty segment", good + "..", ErrSegment},
		{"trailing dot", good + ".", ErrSegment},
		{"leading dot", "." + good, ErrSegment},
		{"core twice", good + "." + good, ErrSegment},
		{"unknown segment type 4", good + ".gAAA", ErrSegment},
		{"unknown segment type 7", good + "._AAA", ErrSegment},
		{"disclosed twice", good + "." + vendorsSegment(1, []int{1}, false) + "." + vendorsSegment(1, []int{2}, false), ErrSegment},
		{"truncated disclosed", good + ".I", ErrTruncated},
		{"truncated publisher tc", good + ".YA", ErrTruncated},
		{"vendor 0", testTC{consentRanges: []testRange{{0, 0}}, maxVendorID: 5}.encode(), ErrRange},
		{"range backwards", testTC{consentRanges: []testRange{{9, 3}}, maxVendorID: 10}.encode(), ErrRange},
		{"ranges out of order", testTC{consentRanges: []testRange{{5, 6}, {1, 2}}}.encode(), ErrRange},
		{"ranges overlap", testTC{consentRanges: []testRange{{1, 5}, {5, 6}}}.encode(), ErrRange},
		{"duplicate single ids", testTC{consentRanges: []testRange{{4, 4}, {4, 4}}}.encode(), ErrRange},
		{"range beyond max vendor id", testTC{consentRanges: []testRange{{1, 11}}, maxVendorID: 10}.encode(), ErrRange},
		{"max vendor id over limit", testTC{consentRanges: []testRange{}, maxVendorID: MaxVendorID + 1}.encode(), ErrLimit},
		{"max vendor id 65535", testTC{consentRanges: []testRange{}, maxVendorID: 65535}.encode(), ErrLimit},
		{"bitfield longer than string", func() string {
			w := &bitWriter{bits: coreHeaderBits()}
			return w.put(5000, 16).put(0, 1).put(0xffff, 64).String()
		}(), ErrTruncated},
		{"restriction purpose 0", testTC{restrictions: []testRestriction{{purpose: 0, typ: 0}}}.encode(), ErrField},
		{"restriction purpose 25", testTC{restrictions: []testRestriction{{purpose: 25, typ: 0}}}.encode(), ErrField},
		{"restriction type 3", testTC{restrictions: []testRestriction{{purpose: 1, typ: 3}}}.encode(), ErrField},
		{"restriction vendor 0", testTC{restrictions: []testRestriction{{purpose: 1, typ: 0, ranges: []testRange{{0, 2}}}}}.encode(), ErrRange},
		{"restriction ranges out of order", testTC{restrictions: []testRestriction{{purpose: 1, typ: 0, ranges: []testRange{{7, 7}, {3, 3}}}}}.encode(), ErrRange},
		{"restriction vendor over limit", testTC{restrictions: []testRestriction{{purpose: 1, typ: 0, ranges: []testRange{{1, MaxVendorID + 1}}}}}.encode(), ErrRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkAgreement(t, tt.tc, Vendors{Meta: 3, LinkedIn: 9})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%q) error = %v, want %v", tt.tc, err, tt.want)
			}
			t.Log(err)
		})
	}
	if _, err := checkAgreement(t, good, Vendors{}); err != nil {
		t.Fatalf("the unbroken string fails: %v", err)
	}
}

// withCmp encodes t with a cmp id the encoder's default would replace.
func (t testTC) withCmp(id int) string {
	t.cmpID = 99
	s := t.encode()
	w := &bitWriter{}
	for _, c := range []byte(s) {
		w.put(uint64(b64[c]), 6)
	}
	const cmpOffset = 6 + 36 + 36
	for i := 0; i < 12; i++ {
		w.bits[cmpOffset+i] = byte(id >> (11 - i) & 1)
	}
	return w.String()
}

// TestParseHostileSizes: strings that claim huge sets or counts are
// rejected without allocating for the claim.
func TestParseHostileSizes(t *testing.T) {
	hostile := []string{
		// 4095 range entries announced, none present.
		func() string {
			w := &bitWriter{}
			w.bits = coreHeaderBits()
			w.put(MaxVendorID, 16).put(1, 1).put(4095, 12)
			return w.String()
		}(),
		// 4095 restrictions announced, none present.
		func() string {
			w := &bitWriter{}
			w.bits = coreHeaderBits()
			w.put(0, 16).put(0, 1).put(0, 16).put(0, 1).put(4095, 12)
			return w.String()
		}(),
		// One restriction with 4095 entries announced.
		func() string {
			w := &bitWriter{}
			w.bits = coreHeaderBits()
			w.put(0, 16).put(0, 1).put(0, 16).put(0, 1).put(1, 12).put(1, 6).put(0, 2).put(4095, 12)
			return w.String()
		}(),
	}
	for _, s := range hostile {
		if _, err := Parse(s); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Parse(%q) = %v, want truncated", s, err)
		}
		r := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				Parse(s)
			}
		})
		if n := r.AllocedBytesPerOp(); n > 2048 {
			t.Errorf("Parse of a %d-byte hostile string allocates %d bytes", len(s), n)
		}
	}
	// The largest set a string can hold is bounded by the string: a full
	// bitfield of MaxVendorID ids is one range.
	all := testTC{vendorConsents: ids(1, MaxVendorID)}.encode()
	tc, err := Parse(all)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tc.VendorConsents.Ranges); n != 1 || tc.VendorConsents.Len() != MaxVendorID {
		t.Fatalf("%d ranges, %d ids", n, tc.VendorConsents.Len())
	}
}

// coreHeaderBits returns the 213 bits of a valid core header.
func coreHeaderBits() []byte {
	w := &bitWriter{}
	for _, c := range []byte(testTC{}.encode()) {
		w.put(uint64(b64[c]), 6)
	}
	return w.bits[:213]
}

func TestSummarizeRestrictions(t *testing.T) {
	const meta, linkedin = 100, 200
	vendors := Vendors{Meta: meta, LinkedIn: linkedin}
	s := testTC{
		purposes:       []int{1, 2, 3, 4, 7},
		li:             []int{2, 7, 8},
		vendorConsents: []int{755, meta},
		vendorLI:       []int{755, linkedin},
		restrictions: []testRestriction{
			{purpose: 3, typ: 0, ranges: []testRange{{meta, meta}}},                      // Meta may not do P3
			{purpose: 7, typ: 1, ranges: []testRange{{1, 754}, {755, 755}}},              // P7 requires consent for 1..755 (adjacent ranges)
			{purpose: 2, typ: 2, ranges: []testRange{{755, 755}}},                        // Google must use LI for P2
			{purpose: 8, typ: 1, ranges: []testRange{{linkedin, linkedin}}},              // LinkedIn: P8 requires consent
			{purpose: 3, typ: 0, ranges: []testRange{{meta - 1, meta}, {meta + 1, 150}}}, // duplicate restriction
		},
	}.encode()
	sum, err := Summarize([]byte(s), vendors)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkAgreement(t, s, vendors); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		p    Platform
		want VendorSummary
	}{
		{Google, VendorSummary{ID: 755, Consent: true, LegitimateInterest: true,
			RequireConsent: PurposesOf(7), RequireLI: PurposesOf(2),
			ConsentPurposes: PurposesOf(1, 3, 4, 7), LIPurposes: PurposesOf(2, 8)}},
		{Meta, VendorSummary{ID: meta, Consent: true, NotAllowed: PurposesOf(3), RequireConsent: PurposesOf(7),
			ConsentPurposes: PurposesOf(1, 2, 4, 7)}},
		{LinkedIn, VendorSummary{ID: linkedin, LegitimateInterest: true, RequireConsent: PurposesOf(7, 8),
			LIPurposes: PurposesOf(2)}},
	}
	for _, tt := range tests {
		if got := sum.vendors[tt.p.index()]; got != tt.want {
			t.Errorf("%v: got %+v\nwant %+v", tt.p, got, tt.want)
		}
	}
	// A platform without a vendor id is not summarized.
	sum, _ = Summarize([]byte(s), Vendors{})
	if got := sum.vendors[Meta.index()]; got != (VendorSummary{}) {
		t.Errorf("Meta without vendor id: %+v", got)
	}
}

func TestPurposes(t *testing.T) {
	p := PurposesOf(1, 7, 24, 0, 25, -1)
	if !p.Has(1) || !p.Has(7) || !p.Has(24) || p.Has(0) || p.Has(25) || p.Has(2) {
		t.Fatalf("PurposesOf = %b", p)
	}
	if got := p.IDs(); !reflect.DeepEqual(got, []int{1, 7, 24}) {
		t.Fatalf("IDs = %v", got)
	}
	f := SpecialFeatures(1 | 1<<11)
	if !f.Has(1) || !f.Has(12) || f.Has(13) || f.Has(0) || !reflect.DeepEqual(f.IDs(), []int{1, 12}) {
		t.Fatalf("special features %v", f.IDs())
	}
	for _, tt := range []struct {
		r    RestrictionType
		want string
	}{{NotAllowed, "not allowed"}, {RequireConsent, "require consent"}, {RequireLI, "require legitimate interest"}, {3, "restriction type 3"}} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%d: %q", tt.r, got)
		}
	}
}

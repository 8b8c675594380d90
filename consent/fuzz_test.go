package consent

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// fuzzSeeds returns TC strings covering every decoder path: the fixtures,
// strings from the test encoder (both encodings, restrictions, all
// optional segments) and a few broken ones.
func fuzzSeeds(f *testing.F) []string {
	seeds := []string{
		publicFixture, realAllGranted, realGoogleOnly, realRefused,
		tcAll, tcNoVendors, tcP7ByLI, tcGoogleP1NotAllowed, tcMetaP4RequireLI, tcGoogleP7RequireConsent,
		testTC{vendorConsents: []int{1, 2, 3, 755}, vendorLI: ids(1, 40), rangeEncode: true,
			restrictions: []testRestriction{{purpose: 1, typ: 0, ranges: []testRange{{1, 3}, {755, 755}}}, {purpose: 7, typ: 2, ranges: []testRange{{2, 2}}}},
			extra:        []string{vendorsSegment(1, ids(1, 30), false), vendorsSegment(2, []int{5, 9}, true), publisherSegment([]int{1}, []int{2}, []int{1}, []int{2}, 2)},
		}.encode(),
		"", "C", "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", tcMalformed, publicFixture + ".", publicFixture + ".gAAA",
	}
	if raw, err := os.ReadFile("testdata/fixtures.json"); err == nil {
		var fx fixtureFile
		if json.Unmarshal(raw, &fx) == nil {
			for _, c := range fx.Cases {
				seeds = append(seeds, c.TC)
			}
		}
	}
	return seeds
}

// checkParsed verifies the invariants Parse promises for an accepted string.
func checkParsed(t *testing.T, s string, tc *TCString) {
	t.Helper()
	sets := []*VendorSet{&tc.VendorConsents, &tc.VendorLegitimateInterests, tc.DisclosedVendors, tc.AllowedVendors}
	for _, set := range sets {
		if set == nil {
			continue
		}
		if set.MaxVendorID > MaxVendorID {
			t.Fatalf("%q: max vendor id %d", s, set.MaxVendorID)
		}
		checkRanges(t, s, set.Ranges, set.MaxVendorID)
	}
	for _, r := range tc.PublisherRestrictions {
		if r.Purpose < 1 || r.Purpose > 24 || r.Type > RequireLI {
			t.Fatalf("%q: restriction %+v", s, r)
		}
		checkRanges(t, s, r.Vendors, MaxVendorID)
	}
	if tc.Version != 2 || tc.CmpID < 2 || len(tc.ConsentLanguage) != 2 || len(tc.PublisherCC) != 2 {
		t.Fatalf("%q: header %+v", s, tc)
	}
	if p := tc.PublisherTC; p != nil && (p.NumCustomPurposes > 63 || p.CustomPurposesConsent>>p.NumCustomPurposes != 0) {
		t.Fatalf("%q: publisher tc %+v", s, p)
	}
}

func checkRanges(t *testing.T, s string, rs []VendorRange, maxID int) {
	t.Helper()
	prev := 0
	for _, r := range rs {
		if r.First == 0 || int(r.First) <= prev || r.Last < r.First || int(r.Last) > maxID {
			t.Fatalf("%q: bad ranges %v (max %d)", s, rs, maxID)
		}
		prev = int(r.Last)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tc, err := checkAgreement(t, s, Vendors{Meta: 2, LinkedIn: 37})
		if err == nil {
			checkParsed(t, s, tc)
		}
	})
}

// FuzzParseBits mutates the decoded bits of a core segment and of one
// optional segment rather than their base64url text, so that the fuzzer
// explores field values instead of mostly producing invalid characters.
func FuzzParseBits(f *testing.F) {
	enc := base64.RawURLEncoding
	for _, s := range fuzzSeeds(f) {
		segs := strings.Split(s, ".")
		core, err := enc.DecodeString(segs[0])
		if err != nil {
			continue
		}
		var extra []byte
		if len(segs) > 1 {
			extra, _ = enc.DecodeString(segs[1])
		}
		f.Add(core, extra)
	}
	f.Fuzz(func(t *testing.T, core, extra []byte) {
		s := enc.EncodeToString(core)
		if len(extra) > 0 {
			s += "." + enc.EncodeToString(extra)
		}
		tc, err := checkAgreement(t, s, Vendors{Meta: 2, LinkedIn: 37})
		if err == nil {
			checkParsed(t, s, tc)
		}
	})
}

func FuzzSummarize(f *testing.F) {
	for i, s := range fuzzSeeds(f) {
		f.Add([]byte(s), uint16(i), uint16(GoogleVendorID-i))
	}
	f.Fuzz(func(t *testing.T, s []byte, meta, linkedin uint16) {
		vendors := Vendors{Meta: meta, LinkedIn: linkedin}
		sum, err := Summarize(s, vendors)
		if err != nil {
			if sum != (Summary{}) {
				t.Fatalf("error %v with a non-zero summary", err)
			}
		}
		if len(s) <= MaxLen {
			checkAgreement(t, string(s), vendors)
		}
		if len(s) == 0 {
			return // absent, not malformed: Resolve does not call Summarize
		}
		// Resolve never lets a malformed string grant anything.
		d := Resolve(&Signals{TCF: s, AdUserData: Granted, AdPersonalization: Granted}, vendors)
		if (err != nil) != d.Has(TCFInvalid) || (err != nil && d.TCFError() != err) {
			t.Fatalf("Summarize error %v, decision %v", err, d)
		}
		if err != nil && d&adBits != 0 {
			t.Fatalf("malformed string, decision %v", d)
		}
	})
}

func FuzzGCS(f *testing.F) {
	for _, s := range []string{"", "G100", "G101", "G110", "G111", "G1", "G1-1", "g111", "G11111", "granted", "denied", "1", "0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseGCS(b)
		if err != nil && g != (GCS{}) {
			t.Fatalf("ParseGCS(%q) = %+v with error %v", b, g, err)
		}
		if err == nil && len(b) > 0 {
			if len(b) != 4 || string(b[:2]) != "G1" || g.AdStorage == Unknown || g.AnalyticsStorage == Unknown {
				t.Fatalf("ParseGCS(%q) accepted %+v", b, g)
			}
			if (b[2] == '1') != (g.AdStorage == Granted) || (b[3] == '1') != (g.AnalyticsStorage == Granted) {
				t.Fatalf("ParseGCS(%q) = %+v", b, g)
			}
		}
		if st, err := ParseState(b); (err == nil) != (st != Unknown || len(b) == 0) {
			t.Fatalf("ParseState(%q) = %v, %v", b, st, err)
		}
		if gd, err := ParseGDPR(b); (err == nil) != (gd != GDPRUnknown || len(b) == 0) {
			t.Fatalf("ParseGDPR(%q) = %v, %v", b, gd, err)
		}
	})
}

// FuzzResolve checks the precedence invariants over arbitrary signals.
func FuzzResolve(f *testing.F) {
	f.Add(uint8(0), []byte(tcAll), uint32(0), uint16(metaID), uint16(linkedinID))
	f.Add(uint8(1), []byte(realAllGranted), uint32(0x5555), uint16(0), uint16(0))
	f.Add(uint8(2), []byte(""), uint32(0xffff_ffff), uint16(1), uint16(2))
	f.Fuzz(func(t *testing.T, gdpr uint8, tcf []byte, packed uint32, meta, linkedin uint16) {
		st := func(i int) State { return State(packed >> (2 * i) & 3) }
		sig := Signals{
			GDPR: GDPR(gdpr % 4), TCF: tcf,
			GCS:       GCS{st(0), st(1)},
			AdStorage: st(2), AnalyticsStorage: st(3), AdUserData: st(4), AdPersonalization: st(5),
			GPC: packed>>12&1 == 1, DNT: packed>>13&1 == 1,
			Explicit: Explicit{st(7), st(8), st(9), st(10)},
		}
		d := Resolve(&sig, Vendors{Meta: meta, LinkedIn: linkedin})
		if (sig.GPC || sig.DNT) && d&adBits != 0 {
			t.Fatalf("GPC/DNT but %v", d)
		}
		if d.Has(Measurement) == (sig.Explicit.Measurement != Unknown && sig.Explicit.Measurement != Granted) {
			t.Fatalf("measurement %v with explicit %v", d.Has(Measurement), sig.Explicit.Measurement)
		}
		// A denial anywhere wins.
		denied := func(s State) bool { return s != Unknown && s != Granted }
		if d.Has(AdUserData) && (denied(sig.AdUserData) || denied(sig.Explicit.AdUserData)) {
			t.Fatalf("ad_user_data granted despite a denial: %v", d)
		}
		if d.Has(AdStorage) && (denied(sig.GCS.AdStorage) || denied(sig.AdStorage) || denied(sig.Explicit.AdStorage)) {
			t.Fatalf("ad_storage granted despite a denial: %v", d)
		}
		// Missing means denied.
		if d.Has(AdUserData) && sig.AdUserData != Granted && sig.Explicit.AdUserData != Granted && len(tcf) == 0 {
			t.Fatalf("ad_user_data granted by nobody: %v", d)
		}
		if sig.GDPR == GDPRApplies && len(tcf) == 0 && d&(adBits|AnalyticsStorage) != 0 {
			t.Fatalf("gdpr=1 without a TC string: %v", d)
		}
		for p := Google; p <= LinkedIn; p++ {
			if d.AllowsAudience(p) && !d.AllowsAds(p) {
				t.Fatalf("audience without ads: %v", d)
			}
		}
		if d&^(Decision(1<<11-1)|0xfff<<16) != 0 { // bits 11-15 and 28-31 are reserved
			t.Fatalf("reserved bits set: %#x", uint32(d))
		}
	})
}

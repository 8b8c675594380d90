package consent

import (
	"errors"
	"testing"
)

const (
	metaID     = 100
	linkedinID = 200
	// Real TCF v2.2 strings (see testdata/fixtures.json).
	// P1-P10 consent; vendors 30, 50, 209, 253, 273, 394, 755 consented.
	realAllGranted = "CQHkJEAQHkJEAAHABBENBNFoAP_AAAAAACQgF5wBwAPAAyAGiAP0AiIBigF5gAAAHLQAYAAgqIIAAFIAMAAQVECQAYAAgqIOgAwABBUQhABgACCohKADAAEFRAAA.f_gAAAAAAAAA"
	// P1, 2, 3, 4, 7, 9, 10 consent; only 755 consented; require-consent restrictions for 755.
	realGoogleOnly = "CQgvstgQgvstgAcABBSVCVFwAPLAAAAAAChQF5wAQF5gAAAECQAQF5joAIC8yUAEBeZSACAvMAAA.flgAAAAAAAAA.IF5wAQF5gAAA"
	// Everything refused.
	realRefused = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"
)

var testVendors = Vendors{Meta: metaID, LinkedIn: linkedinID}

var (
	allVendors   = VendorGoogle | VendorMeta | VendorLinkedIn
	allAudiences = AudienceGoogle | AudienceMeta | AudienceLinkedIn
	allAds       = AdStorage | AdUserData | AdPersonalization | allVendors | allAudiences
	cmAll        = Signals{GCS: GCS{Granted, Granted}, AdUserData: Granted, AdPersonalization: Granted}
)

// TC strings built for the matrix.
var (
	tcAll = testTC{purposes: ids(1, 11), li: []int{2, 7, 8, 9, 10},
		vendorConsents: []int{metaID, linkedinID, GoogleVendorID}, vendorLI: []int{GoogleVendorID}}.encode()
	tcNoVendors = testTC{purposes: ids(1, 11), li: []int{2, 7, 8, 9, 10}}.encode()
	tcP1Only    = testTC{purposes: []int{1}, vendorConsents: []int{GoogleVendorID, metaID, linkedinID}}.encode()
	tcNoP7      = testTC{purposes: []int{1, 3, 4}, vendorConsents: []int{GoogleVendorID, metaID, linkedinID}}.encode()
	tcP7ByLI    = testTC{purposes: []int{1, 3, 4}, li: []int{7},
		vendorConsents: []int{GoogleVendorID, metaID}, vendorLI: []int{GoogleVendorID}}.encode()
	// Google may not use P1.
	tcGoogleP1NotAllowed = testTC{purposes: ids(1, 11), vendorConsents: []int{GoogleVendorID, metaID, linkedinID},
		restrictions: []testRestriction{{purpose: 1, typ: 0, ranges: []testRange{{GoogleVendorID, GoogleVendorID}}}}}.encode()
	// Meta must use LI for P4: no personalisation for Meta.
	tcMetaP4RequireLI = testTC{purposes: ids(1, 11), li: []int{4}, vendorConsents: []int{GoogleVendorID, metaID, linkedinID},
		vendorLI: []int{metaID}, restrictions: []testRestriction{{purpose: 4, typ: 2, ranges: []testRange{{metaID, metaID}}}}}.encode()
	// P7 only by LI, and Google must use consent for P7: no conversions for Google.
	tcGoogleP7RequireConsent = testTC{purposes: []int{1, 3, 4}, li: []int{7},
		vendorConsents: []int{GoogleVendorID, metaID, linkedinID}, vendorLI: []int{GoogleVendorID, metaID, linkedinID},
		restrictions: []testRestriction{{purpose: 7, typ: 1, ranges: []testRange{{GoogleVendorID, GoogleVendorID}}}}}.encode()
	tcMalformed = tcAll[:40]
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		sig     Signals
		vendors Vendors // testVendors when zero
		want    Decision
	}{
		{"no signal: count only", Signals{}, Vendors{}, Measurement},
		{"consent mode all granted", cmAll, Vendors{},
			Measurement | SourceConsentMode | AnalyticsStorage | allAds},
		{"gcs alone: storage only", Signals{GCS: GCS{Granted, Granted}}, Vendors{},
			Measurement | SourceConsentMode | AdStorage | AnalyticsStorage},
		{"ad_user_data alone: conversions for all platforms", Signals{AdUserData: Granted}, Vendors{},
			Measurement | SourceConsentMode | AdUserData | allVendors},
		{"consent mode: gcs grants ad_storage, field denies it", Signals{GCS: GCS{Granted, Denied}, AdStorage: Denied}, Vendors{},
			Measurement | SourceConsentMode},
		{"explicit alone grants", Signals{Explicit: Explicit{Measurement: Granted, AdStorage: Granted, AdUserData: Granted, AdPersonalization: Granted}}, Vendors{},
			Measurement | SourceExplicit | AnalyticsStorage | allAds},
		{"explicit measurement denied refuses counting", Signals{Explicit: Explicit{Measurement: Denied}}, Vendors{},
			SourceExplicit},
		{"explicit measurement denied beats consent mode", Signals{GCS: GCS{Granted, Granted}, Explicit: Explicit{Measurement: Denied}}, Vendors{},
			SourceConsentMode | SourceExplicit | AdStorage},
		{"explicit restricts consent mode", func() Signals { s := cmAll; s.Explicit.AdPersonalization = Denied; return s }(), Vendors{},
			Measurement | SourceConsentMode | SourceExplicit | AnalyticsStorage | AdStorage | AdUserData | allVendors},
		{"invalid state counts as denied", Signals{AdUserData: Granted, Explicit: Explicit{AdUserData: 7, Measurement: 9}}, Vendors{},
			SourceConsentMode | SourceExplicit},

		{"tcf all granted", Signals{TCF: []byte(tcAll)}, Vendors{},
			Measurement | SourceTCF | AnalyticsStorage | AdStorage | AdUserData | AdPersonalization | VendorGoogle | AudienceGoogle |
				VendorMeta | AudienceMeta | VendorLinkedIn | AudienceLinkedIn},
		{"tcf all granted, meta and linkedin vendor ids configured", Signals{TCF: []byte(tcAll)}, testVendors,
			Measurement | SourceTCF | AnalyticsStorage | allAds},
		{"tcf all purposes, no vendor consents", Signals{TCF: []byte(tcNoVendors)}, testVendors,
			Measurement | SourceTCF | AnalyticsStorage | AdStorage | AdUserData | AdPersonalization},
		{"tcf all purposes, no vendor consents, no meta/linkedin ids: they follow the purposes", Signals{TCF: []byte(tcNoVendors)}, Vendors{},
			Measurement | SourceTCF | AnalyticsStorage | AdStorage | AdUserData | AdPersonalization |
				VendorMeta | VendorLinkedIn | AudienceMeta | AudienceLinkedIn},
		{"tcf P1 only: ad storage", Signals{TCF: []byte(tcP1Only)}, testVendors,
			Measurement | SourceTCF | AdStorage},
		{"tcf no P7: no ad user data", Signals{TCF: []byte(tcNoP7)}, testVendors,
			Measurement | SourceTCF | AdStorage | AdPersonalization},
		{"tcf P7 by LI: google via vendor LI, meta has no LI bit", Signals{TCF: []byte(tcP7ByLI)}, testVendors,
			Measurement | SourceTCF | AdStorage | AdUserData | AdPersonalization | VendorGoogle | AudienceGoogle},
		{"tcf restriction: google not allowed P1", Signals{TCF: []byte(tcGoogleP1NotAllowed)}, testVendors,
			Measurement | SourceTCF | AnalyticsStorage | AdStorage | AdUserData | AdPersonalization |
				VendorMeta | AudienceMeta | VendorLinkedIn | AudienceLinkedIn},
		{"tcf restriction: meta requires LI for P4", Signals{TCF: []byte(tcMetaP4RequireLI)}, testVendors,
			Measurement | SourceTCF | AnalyticsStorage | AdStorage | AdUserData | AdPersonalization |
				allVendors | AudienceGoogle | AudienceLinkedIn},
		{"tcf restriction: google requires consent for P7", Signals{TCF: []byte(tcGoogleP7RequireConsent)}, testVendors,
			Measurement | SourceTCF | AdStorage | AdUserData | AdPersonalization |
				VendorMeta | VendorLinkedIn | AudienceMeta | AudienceLinkedIn},
		{"tcf grants, consent mode denies ad_user_data", Signals{TCF: []byte(tcAll), AdUserData: Denied}, testVendors,
			Measurement | SourceTCF | SourceConsentMode | AnalyticsStorage | AdStorage | AdPersonalization},
		{"tcf grants, explicit denies personalisation", Signals{TCF: []byte(tcAll), Explicit: Explicit{AdPersonalization: Denied}}, testVendors,
			Measurement | SourceTCF | SourceExplicit | AnalyticsStorage | AdStorage | AdUserData | allVendors},
		{"tcf refuses, consent mode grants: denied", func() Signals { s := cmAll; s.TCF = []byte(realRefused); return s }(), testVendors,
			Measurement | SourceTCF | SourceConsentMode},
		{"malformed tcf is a denial", func() Signals { s := cmAll; s.TCF = []byte(tcMalformed); return s }(), testVendors,
			Measurement | SourceTCF | SourceConsentMode | TCFInvalid | 4<<tcfErrorShift},
		{"gdpr=1 without tcf denies ads", func() Signals { s := cmAll; s.GDPR = GDPRApplies; return s }(), testVendors,
			Measurement | SourceConsentMode | GDPRInScope},
		{"gdpr=0 without tcf: consent mode decides", func() Signals { s := cmAll; s.GDPR = GDPRNotApplies; return s }(), testVendors,
			Measurement | SourceConsentMode | GDPROutOfScope | AnalyticsStorage | allAds},
		{"gdpr=0 with a refusing tcf: still denied", func() Signals {
			s := cmAll
			s.GDPR, s.TCF = GDPRNotApplies, []byte(realRefused)
			return s
		}(), testVendors,
			Measurement | SourceConsentMode | SourceTCF | GDPROutOfScope},
		{"gdpr=1 with tcf all granted", Signals{GDPR: GDPRApplies, TCF: []byte(tcAll)}, testVendors,
			Measurement | SourceTCF | GDPRInScope | AnalyticsStorage | allAds},

		{"gpc overrides a tcf yes", Signals{TCF: []byte(tcAll), GPC: true}, testVendors,
			Measurement | SourceTCF | GPC | AnalyticsStorage},
		{"gpc overrides consent mode and explicit", func() Signals {
			s := cmAll
			s.GPC, s.Explicit = true, Explicit{AdUserData: Granted}
			return s
		}(), testVendors,
			Measurement | SourceConsentMode | SourceExplicit | GPC | AnalyticsStorage},
		{"dnt acts like gpc for ads", func() Signals { s := cmAll; s.DNT = true; return s }(), testVendors,
			Measurement | SourceConsentMode | DNT | AnalyticsStorage},

		{"real v2.2 string, all granted, meta/linkedin not tcf vendors", Signals{GDPR: GDPRApplies, TCF: []byte(realAllGranted)}, Vendors{},
			Measurement | SourceTCF | GDPRInScope | AnalyticsStorage | allAds},
		{"real v2.2 string, all granted, meta/linkedin ids not consented", Signals{GDPR: GDPRApplies, TCF: []byte(realAllGranted)}, testVendors,
			Measurement | SourceTCF | GDPRInScope | AnalyticsStorage | AdStorage | AdUserData | AdPersonalization | VendorGoogle | AudienceGoogle},
		{"real v2.2 string, google only, no P8", Signals{GDPR: GDPRApplies, TCF: []byte(realGoogleOnly)}, testVendors,
			Measurement | SourceTCF | GDPRInScope | AdStorage | AdUserData | AdPersonalization | VendorGoogle | AudienceGoogle},
		{"public fixture: 755 not consented", Signals{TCF: []byte(publicFixture)}, Vendors{},
			Measurement | SourceTCF | AdStorage | AdUserData | AdPersonalization | VendorMeta | VendorLinkedIn | AudienceMeta | AudienceLinkedIn},
		{"vendor id beyond MaxVendorID is a vendor nobody consented to", Signals{TCF: []byte(tcAll)}, Vendors{Meta: 60000, LinkedIn: MaxVendorID + 1},
			Measurement | SourceTCF | AnalyticsStorage | AdStorage | AdUserData | AdPersonalization | VendorGoogle | AudienceGoogle},
		{"real refused string", Signals{GDPR: GDPRApplies, TCF: []byte(realRefused)}, testVendors,
			Measurement | SourceTCF | GDPRInScope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vendors := tt.vendors
			got := Resolve(&tt.sig, vendors)
			if got != tt.want {
				t.Fatalf("Resolve = %v\n           want %v", got, tt.want)
			}
			// Structural invariants of every decision.
			if got.Has(GPC) || got.Has(DNT) {
				for p := Google; p <= LinkedIn; p++ {
					if got.AllowsAds(p) || got.AllowsAudience(p) {
						t.Fatalf("GPC/DNT but %v allowed", p)
					}
				}
			}
			for p := Google; p <= LinkedIn; p++ {
				if got.AllowsAudience(p) && !got.AllowsAds(p) {
					t.Fatalf("audience without ads for %v", p)
				}
				if got&vendorBit(p) != 0 && got&AdUserData == 0 {
					t.Fatalf("vendor bit without ad_user_data for %v", p)
				}
				if got&audienceBit(p) != 0 && (got&vendorBit(p) == 0 || got&AdPersonalization == 0) {
					t.Fatalf("audience bit without vendor bit or ad_personalization for %v", p)
				}
			}
		})
	}
}

func TestResolveTCFError(t *testing.T) {
	tests := []struct {
		tc   string
		want error
	}{
		{tcAll, nil},
		{tcMalformed, ErrTruncated},
		{"BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", ErrVersion},
		{tcAll + "=", ErrEncoding},
		{tcAll + ".", ErrSegment},
		{testTC{consentRanges: []testRange{{3, 1}}, maxVendorID: 5}.encode(), ErrRange},
		{testTC{cmpID: 1}.withCmp(1), ErrField},
		{testTC{consentRanges: []testRange{}, maxVendorID: 60000}.encode(), ErrLimit},
	}
	for _, tt := range tests {
		d := Resolve(&Signals{TCF: []byte(tt.tc), AdUserData: Granted}, testVendors)
		if err := d.TCFError(); err != tt.want {
			t.Errorf("%q: TCFError = %v, want %v", tt.tc, err, tt.want)
		}
		if d.Has(TCFInvalid) != (tt.want != nil) {
			t.Errorf("%q: TCFInvalid = %v", tt.tc, d.Has(TCFInvalid))
		}
		if tt.want != nil && d&(AdUserData|allVendors) != 0 {
			t.Errorf("%q: malformed string but %v", tt.tc, d)
		}
	}
	// Every code round-trips, and an unknown code is still an error.
	for code, err := range tcfErrors {
		if code == 0 {
			continue
		}
		d := TCFInvalid | tcfErrorCode(err)
		if d.TCFError() != err {
			t.Errorf("code %d: %v", code, d.TCFError())
		}
	}
	if d := TCFInvalid | tcfErrorCode(errors.New("other")); d.TCFError() == nil || d>>tcfErrorShift&0xf != 0xf {
		t.Errorf("unknown error: %v", d)
	}
	if d := Decision(TCFInvalid); d.TCFError() == nil {
		t.Error("TCFInvalid without a code must still report an error")
	}
}

func TestResolveNil(t *testing.T) {
	if got := Resolve(nil, Vendors{}); got != Measurement {
		t.Fatalf("Resolve(nil) = %v", got)
	}
}

// TestDecisionLayout pins the wire layout: these values are stored in Kafka
// and must never change.
func TestDecisionLayout(t *testing.T) {
	layout := map[Decision]uint32{
		Measurement: 1 << 0, AnalyticsStorage: 1 << 1, AdStorage: 1 << 2, AdUserData: 1 << 3,
		AdPersonalization: 1 << 4, VendorGoogle: 1 << 5, VendorMeta: 1 << 6, VendorLinkedIn: 1 << 7,
		AudienceGoogle: 1 << 8, AudienceMeta: 1 << 9, AudienceLinkedIn: 1 << 10,
		SourceTCF: 1 << 16, SourceConsentMode: 1 << 17, SourceExplicit: 1 << 18, GPC: 1 << 19, DNT: 1 << 20,
		GDPRInScope: 1 << 21, GDPROutOfScope: 1 << 22, TCFInvalid: 1 << 23,
	}
	for d, want := range layout {
		if uint32(d) != want {
			t.Errorf("%v = %#x, want %#x", d, uint32(d), want)
		}
	}
	codes := []error{nil, ErrEmpty, ErrTooLong, ErrEncoding, ErrTruncated, ErrVersion, ErrSegment, ErrRange, ErrLimit, ErrField}
	for i, err := range codes {
		if tcfErrors[i] != err {
			t.Errorf("tcf error code %d is %v, want %v", i, tcfErrors[i], err)
		}
	}
	if tcfErrorMask != 0x0f000000 {
		t.Errorf("tcf error mask %#x", tcfErrorMask)
	}
}

func TestDecisionMethods(t *testing.T) {
	d := AdUserData | AdPersonalization | VendorGoogle | AudienceGoogle | VendorMeta
	tests := []struct {
		p             Platform
		ads, audience bool
	}{
		{Google, true, true},
		{Meta, true, false},
		{LinkedIn, false, false},
		{0, false, false},
		{9, false, false},
	}
	for _, tt := range tests {
		if got := d.AllowsAds(tt.p); got != tt.ads {
			t.Errorf("AllowsAds(%v) = %v", tt.p, got)
		}
		if got := d.AllowsAudience(tt.p); got != tt.audience {
			t.Errorf("AllowsAudience(%v) = %v", tt.p, got)
		}
		if (d | GPC).AllowsAds(tt.p) {
			t.Errorf("AllowsAds(%v) with GPC", tt.p)
		}
	}
	if (VendorGoogle).AllowsAds(Google) {
		t.Error("AllowsAds without ad_user_data")
	}
	if got := (Measurement | AdUserData | SourceTCF | TCFInvalid | 4<<tcfErrorShift | 1<<30).String(); got != "measurement|ad_user_data|src_tcf|tcf_invalid|bit30|tcf_error=4" {
		t.Errorf("String = %q", got)
	}
	if got := Decision(0).String(); got != "none" {
		t.Errorf("String = %q", got)
	}
	for p, want := range map[Platform]string{Google: "google", Meta: "meta", LinkedIn: "linkedin", 0: "platform(0)"} {
		if got := p.String(); got != want {
			t.Errorf("Platform(%d).String() = %q", p, got)
		}
	}
	if got := testVendors.ID(Google); got != GoogleVendorID {
		t.Errorf("Google id %d", got)
	}
	if got := testVendors.ID(0); got != 0 {
		t.Errorf("invalid platform id %d", got)
	}
}

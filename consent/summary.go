package consent

// Vendors maps ad platforms to TCF vendor ids. Google's id is fixed
// (GoogleVendorID). A zero id means the platform is not a TCF vendor: see
// the package documentation for how its consent is then decided.
type Vendors struct {
	Meta     uint16
	LinkedIn uint16
}

// ID returns platform p's TCF vendor id, 0 for none or an unknown platform.
func (v Vendors) ID(p Platform) int {
	switch p {
	case Google:
		return GoogleVendorID
	case Meta:
		return int(v.Meta)
	case LinkedIn:
		return int(v.LinkedIn)
	}
	return 0
}

// VendorSummary is what a TC string says about one vendor.
type VendorSummary struct {
	// ID is the vendor id; 0 when the platform has no TCF vendor id, in
	// which case every other field is zero too.
	ID int

	Consent            bool // the vendor consent bit
	LegitimateInterest bool // the vendor legitimate-interest bit

	// Purposes named for this vendor by publisher restrictions, by type.
	NotAllowed, RequireConsent, RequireLI Purposes

	// ConsentPurposes are the purposes the vendor may pursue on consent:
	// the user consented to the purpose and to the vendor, and no
	// restriction forbids the purpose or requires legitimate interest for it.
	ConsentPurposes Purposes
	// LIPurposes are the purposes the vendor may pursue on legitimate
	// interest: transparency established for the purpose, the vendor's
	// legitimate-interest bit set, and no restriction forbids the purpose or
	// requires consent for it.
	LIPurposes Purposes
}

// effective computes ConsentPurposes and LIPurposes.
func (v *VendorSummary) effective(s *Summary) {
	v.ConsentPurposes, v.LIPurposes = 0, 0
	if v.Consent {
		v.ConsentPurposes = s.PurposesConsent &^ (v.NotAllowed | v.RequireLI)
	}
	if v.LegitimateInterest {
		v.LIPurposes = s.PurposesLITransparency &^ (v.NotAllowed | v.RequireConsent)
	}
}

// Summary is the part of a TC string that consent decisions need.
type Summary struct {
	CmpID                  int
	PolicyVersion          int
	IsServiceSpecific      bool
	PurposeOneTreatment    bool
	SpecialFeatureOptIns   SpecialFeatures
	PurposesConsent        Purposes
	PurposesLITransparency Purposes

	vendors [numPlatforms]VendorSummary
}

// Summarize decodes TC string s in one pass and returns its Summary for the
// configured vendors. It accepts and rejects exactly the strings Parse does,
// but does not allocate: on failure it returns one of the Err* variables
// itself, without the position details Parse gives. s is only read, and not
// retained.
func Summarize(s []byte, vendors Vendors) (Summary, error) {
	var w walker
	for p := Google; p <= LinkedIn; p++ {
		w.ids[p.index()] = vendors.ID(p)
	}
	w.run(s, nil)
	if w.fault.err != nil {
		return Summary{}, w.fault.err
	}
	return w.sum, nil
}

// Summary returns the Summary of tc for the configured vendors: the same
// value Summarize returns for the string tc was parsed from.
func (tc *TCString) Summary(vendors Vendors) Summary {
	s := Summary{
		CmpID:                  tc.CmpID,
		PolicyVersion:          tc.PolicyVersion,
		IsServiceSpecific:      tc.IsServiceSpecific,
		PurposeOneTreatment:    tc.PurposeOneTreatment,
		SpecialFeatureOptIns:   tc.SpecialFeatureOptIns,
		PurposesConsent:        tc.PurposesConsent,
		PurposesLITransparency: tc.PurposesLITransparency,
	}
	for p := Google; p <= LinkedIn; p++ {
		id := vendors.ID(p)
		if id == 0 {
			continue
		}
		v := VendorSummary{
			ID:                 id,
			Consent:            tc.VendorConsents.Has(id),
			LegitimateInterest: tc.VendorLegitimateInterests.Has(id),
		}
		for i := range tc.PublisherRestrictions {
			r := &tc.PublisherRestrictions[i]
			if !r.Applies(id) {
				continue
			}
			bit := PurposesOf(r.Purpose)
			switch r.Type {
			case NotAllowed:
				v.NotAllowed |= bit
			case RequireConsent:
				v.RequireConsent |= bit
			case RequireLI:
				v.RequireLI |= bit
			}
		}
		v.effective(&s)
		s.vendors[p.index()] = v
	}
	return s
}

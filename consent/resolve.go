package consent

// Signals are the consent signals of one hit. The zero value means "no
// signal at all". Resolve only reads a Signals and retains nothing.
type Signals struct {
	// GDPR is the `gdpr` parameter (ParseGDPR).
	GDPR GDPR
	// TCF is the raw TC string (`gdpr_consent`); empty means absent.
	TCF []byte

	// Google Consent Mode: the gcs parameter (ParseGCS) and the explicit
	// Consent Mode fields (ParseState).
	GCS               GCS
	AdStorage         State
	AnalyticsStorage  State
	AdUserData        State
	AdPersonalization State

	// GPC is true when the Sec-GPC request header is "1" or the page saw
	// navigator.globalPrivacyControl == true.
	GPC bool
	// DNT is true when the DNT request header is "1".
	DNT bool

	// Explicit is the tracker's own consent object, set by the site.
	Explicit Explicit
}

// Explicit is the consent object a site passes to our tracker, typically
// from its own consent banner.
type Explicit struct {
	// Measurement covers measurement and analytics: Denied refuses even
	// anonymous counting of the hit.
	Measurement       State
	AdStorage         State
	AdUserData        State
	AdPersonalization State
}

// votes collects, per permission bit, whether some source granted it and
// whether some source denied it.
type votes struct{ granted, denied Decision }

func (v *votes) add(bit Decision, s State) {
	switch s {
	case Unknown:
	case Granted:
		v.granted |= bit
	default: // Denied, and any invalid value
		v.denied |= bit
	}
}

// tcfBits are the general permissions a TC string votes on.
const tcfBits = AnalyticsStorage | AdStorage | AdUserData | AdPersonalization

// Resolve turns the signals of a hit into one Decision, following the
// precedence rules of the package documentation (and PRECEDENCE.md). A
// malformed TC string counts as a denial; the Decision then has TCFInvalid
// set and TCFError tells why. vendors gives the Meta and LinkedIn TCF vendor
// ids. A nil sig is treated as no signal. Resolve does not allocate.
func Resolve(sig *Signals, vendors Vendors) Decision {
	if sig == nil {
		return Resolve(&Signals{}, vendors)
	}
	var d Decision
	var v votes

	// Google Consent Mode.
	if sig.GCS != (GCS{}) || sig.AdStorage != Unknown || sig.AnalyticsStorage != Unknown ||
		sig.AdUserData != Unknown || sig.AdPersonalization != Unknown {
		d |= SourceConsentMode
	}
	v.add(AdStorage, sig.GCS.AdStorage)
	v.add(AnalyticsStorage, sig.GCS.AnalyticsStorage)
	v.add(AdStorage, sig.AdStorage)
	v.add(AnalyticsStorage, sig.AnalyticsStorage)
	v.add(AdUserData, sig.AdUserData)
	v.add(AdPersonalization, sig.AdPersonalization)

	// The tracker's explicit object.
	e := &sig.Explicit
	if *e != (Explicit{}) {
		d |= SourceExplicit
	}
	v.add(AnalyticsStorage, e.Measurement)
	v.add(AdStorage, e.AdStorage)
	v.add(AdUserData, e.AdUserData)
	v.add(AdPersonalization, e.AdPersonalization)

	// IAB TCF.
	switch sig.GDPR {
	case GDPRApplies:
		d |= GDPRInScope
	case GDPRNotApplies:
		d |= GDPROutOfScope
	}
	tcfVoted := false
	var vendorOK, audienceOK Decision // vendor-level permissions from the TC string
	switch {
	case len(sig.TCF) > 0:
		d |= SourceTCF
		tcfVoted = true
		s, err := Summarize(sig.TCF, vendors)
		if err != nil {
			d |= TCFInvalid | tcfErrorCode(err)
			v.denied |= tcfBits
			break
		}
		var granted Decision
		granted, vendorOK, audienceOK = tcfVotes(&s)
		v.granted |= granted
		v.denied |= tcfBits &^ granted
	case sig.GDPR == GDPRApplies:
		// GDPR applies but the CMP produced no TC string (yet): nothing
		// was consented to.
		tcfVoted = true
		v.denied |= tcfBits
	}

	// A permission needs a grant from some source and a denial from none.
	perm := v.granted &^ v.denied
	d |= perm

	// Per-platform permissions.
	if !tcfVoted {
		// No vendor-level signal: the platforms follow the general ones.
		vendorOK, audienceOK = vendorBits, audienceBits
	}
	if perm&AdUserData != 0 {
		d |= vendorOK
		if perm&AdPersonalization != 0 {
			// Audiences need conversions permission for the same platform.
			d |= audienceOK & ((d & vendorBits) << audienceShift)
		}
	}

	// Anonymous counting is allowed unless explicitly refused.
	if e.Measurement == Unknown || e.Measurement == Granted {
		d |= Measurement
	}

	// GPC and DNT withdraw every ad permission, whatever granted it.
	if sig.GPC {
		d |= GPC
	}
	if sig.DNT {
		d |= DNT
	}
	if d&(GPC|DNT) != 0 {
		d &^= adBits
	}
	return d
}

// tcfVotes maps a valid TC string to the general permissions it grants
// (it denies the rest of tcfBits) and to per-platform vendor permissions.
func tcfVotes(s *Summary) (granted, vendorOK, audienceOK Decision) {
	pc, li := s.PurposesConsent, s.PurposesLITransparency
	p1 := pc.Has(1)
	if p1 {
		granted |= AdStorage
	}
	if p1 && (pc.Has(7) || li.Has(7)) {
		granted |= AdUserData
	}
	if pc.Has(3) && pc.Has(4) {
		granted |= AdPersonalization
	}
	if p1 && (pc.Has(8) || li.Has(8)) {
		granted |= AnalyticsStorage
	}
	for p := Google; p <= LinkedIn; p++ {
		vs := &s.vendors[p.index()]
		var conv, aud bool
		if vs.ID == 0 {
			// Not a TCF vendor: follow the general ad purposes.
			conv = granted&AdUserData != 0
			aud = granted&AdPersonalization != 0
		} else {
			c, l := vs.ConsentPurposes, vs.LIPurposes
			conv = c.Has(1) && (c.Has(7) || l.Has(7))
			aud = c.Has(3) && c.Has(4)
		}
		if conv {
			vendorOK |= vendorBit(p)
		}
		if aud {
			audienceOK |= audienceBit(p)
		}
	}
	return granted, vendorOK, audienceOK
}

package consent

import (
	"fmt"
	"strings"
)

// Platform is an ad platform we may forward data to. The zero value is not
// a platform: every permission check fails for it.
type Platform uint8

// Platforms.
const (
	Google Platform = iota + 1
	Meta
	LinkedIn
)

const numPlatforms = 3

func (p Platform) valid() bool { return p >= Google && p <= LinkedIn }
func (p Platform) index() int  { return int(p - Google) }

func (p Platform) String() string {
	switch p {
	case Google:
		return "google"
	case Meta:
		return "meta"
	case LinkedIn:
		return "linkedin"
	}
	return fmt.Sprintf("platform(%d)", uint8(p))
}

// Decision is the consent decision for one hit, a bitmask. It travels in
// the Kafka wire format as a uint32, so its layout is STABLE: a bit keeps
// its meaning forever; new bits take reserved positions, none is
// renumbered or reused.
//
//	bit  0  Measurement        the hit may be counted in anonymous aggregates
//	bit  1  AnalyticsStorage   analytics identifiers (first-party cookies) may be used
//	bit  2  AdStorage          advertising identifiers (e.g. click ids) may be stored
//	bit  3  AdUserData         user data may be sent to ad platforms (conversions)
//	bit  4  AdPersonalization  data may be used for personalised ads (audiences)
//	bit  5  VendorGoogle       vendor-level permission for Google (conversions)
//	bit  6  VendorMeta         vendor-level permission for Meta (conversions)
//	bit  7  VendorLinkedIn     vendor-level permission for LinkedIn (conversions)
//	bit  8  AudienceGoogle     vendor-level personalisation permission for Google
//	bit  9  AudienceMeta       vendor-level personalisation permission for Meta
//	bit 10  AudienceLinkedIn   vendor-level personalisation permission for LinkedIn
//	                           (VendorX: AdUserData granted and X allowed by the
//	                           TC string; AudienceX: VendorX, AdPersonalization
//	                           granted and X allowed to personalise)
//	bits 11-15                 reserved (permissions), zero
//	bit 16  SourceTCF          a TC string was present (valid or not)
//	bit 17  SourceConsentMode  a Consent Mode signal was present (gcs or a field)
//	bit 18  SourceExplicit     the tracker's explicit consent object was present
//	bit 19  GPC                Global Privacy Control was on
//	bit 20  DNT                Do Not Track was on
//	bit 21  GDPRInScope        gdpr=1
//	bit 22  GDPROutOfScope     gdpr=0 (neither bit: unknown)
//	bit 23  TCFInvalid         the TC string was malformed and counted as a denial
//	bits 24-27                 why the TC string was malformed: see TCFError
//	bits 28-31                 reserved, zero
//
// Bits 0-10 are permissions; bits 16-27 only record what the decision was
// made from. Permission bits already include every rule (GPC, DNT, vendor
// consent): AllowsAds and AllowsAudience combine the bits a forwarder needs.
type Decision uint32

// Decision bits. See Decision for the stable layout.
const (
	Measurement       Decision = 1 << 0
	AnalyticsStorage  Decision = 1 << 1
	AdStorage         Decision = 1 << 2
	AdUserData        Decision = 1 << 3
	AdPersonalization Decision = 1 << 4
	VendorGoogle      Decision = 1 << 5
	VendorMeta        Decision = 1 << 6
	VendorLinkedIn    Decision = 1 << 7
	AudienceGoogle    Decision = 1 << 8
	AudienceMeta      Decision = 1 << 9
	AudienceLinkedIn  Decision = 1 << 10

	SourceTCF         Decision = 1 << 16
	SourceConsentMode Decision = 1 << 17
	SourceExplicit    Decision = 1 << 18
	GPC               Decision = 1 << 19
	DNT               Decision = 1 << 20
	GDPRInScope       Decision = 1 << 21
	GDPROutOfScope    Decision = 1 << 22
	TCFInvalid        Decision = 1 << 23
)

const (
	tcfErrorShift = 24
	tcfErrorMask  = 0xf << tcfErrorShift

	vendorBits   = VendorGoogle | VendorMeta | VendorLinkedIn
	audienceBits = AudienceGoogle | AudienceMeta | AudienceLinkedIn
	// audienceShift moves a platform's vendor bit to its audience bit.
	audienceShift = 3

	// adBits are the permissions that GPC and DNT withdraw.
	adBits = AdStorage | AdUserData | AdPersonalization | vendorBits | audienceBits
)

// tcfErrors numbers the TC string errors stored in bits 24-27. The codes
// are part of the stable layout: append, never reorder. Code 15 stands for
// an error that is not one of these.
var tcfErrors = [...]error{
	0: nil,
	1: ErrEmpty,
	2: ErrTooLong,
	3: ErrEncoding,
	4: ErrTruncated,
	5: ErrVersion,
	6: ErrSegment,
	7: ErrRange,
	8: ErrLimit,
	9: ErrField,
}

// errUnknownTCF is reported for code 15 (or an unassigned code).
var errUnknownTCF = fmt.Errorf("tcf: unclassified error")

func tcfErrorCode(err error) Decision {
	for i, e := range tcfErrors {
		if e == err && err != nil {
			return Decision(i) << tcfErrorShift
		}
	}
	return 0xf << tcfErrorShift
}

// TCFError returns why the TC string was rejected (one of the Err*
// variables, comparable with ==), or nil if it was not. It does not
// allocate, so ingest can use it as a metric label on every hit.
func (d Decision) TCFError() error {
	code := int(d&tcfErrorMask) >> tcfErrorShift
	if code == 0 {
		if d&TCFInvalid != 0 {
			return errUnknownTCF
		}
		return nil
	}
	if code < len(tcfErrors) {
		return tcfErrors[code]
	}
	return errUnknownTCF
}

// Has reports whether every bit of f is set in d.
func (d Decision) Has(f Decision) bool { return d&f == f }

// vendorBit and audienceBit return platform p's bits, 0 for an unknown platform.
func vendorBit(p Platform) Decision {
	if !p.valid() {
		return 0
	}
	return VendorGoogle << p.index()
}

func audienceBit(p Platform) Decision {
	if !p.valid() {
		return 0
	}
	return AudienceGoogle << p.index()
}

// AllowsAds reports whether user identifiers of this hit may be sent to
// platform p for conversions: ad_user_data granted, vendor permission for
// p, and neither GPC nor DNT.
func (d Decision) AllowsAds(p Platform) bool {
	v := vendorBit(p)
	return v != 0 && d.Has(AdUserData|v) && d&(GPC|DNT) == 0
}

// AllowsAudience reports whether this hit may also feed p's audiences
// (remarketing, Customer Match, Matched Audiences): AllowsAds(p) plus
// ad_personalization granted and personalisation permission for p.
func (d Decision) AllowsAudience(p Platform) bool {
	return d.AllowsAds(p) && d.Has(AdPersonalization|audienceBit(p))
}

var decisionNames = [32]string{
	0: "measurement", 1: "analytics_storage", 2: "ad_storage", 3: "ad_user_data",
	4: "ad_personalization", 5: "vendor_google", 6: "vendor_meta", 7: "vendor_linkedin",
	8: "audience_google", 9: "audience_meta", 10: "audience_linkedin",
	16: "src_tcf", 17: "src_consent_mode", 18: "src_explicit", 19: "gpc", 20: "dnt",
	21: "gdpr_in_scope", 22: "gdpr_out_of_scope", 23: "tcf_invalid",
}

// String lists the set bits, e.g. "measurement|ad_user_data|src_tcf", for
// logs and tests; the TCF error code prints as "tcf_error=N".
func (d Decision) String() string {
	if d == 0 {
		return "none"
	}
	var b strings.Builder
	for i := 0; i < 32; i++ {
		if d&(1<<i) == 0 || (i >= tcfErrorShift && i < tcfErrorShift+4) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		if name := decisionNames[i]; name != "" {
			b.WriteString(name)
		} else {
			fmt.Fprintf(&b, "bit%d", i)
		}
	}
	if code := int(d&tcfErrorMask) >> tcfErrorShift; code != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		fmt.Fprintf(&b, "tcf_error=%d", code)
	}
	return b.String()
}

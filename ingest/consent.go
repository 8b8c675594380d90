package ingest

import (
	"strings"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/uaclass"
)

// decision is the consent outcome ingest acts on.
type decision struct {
	bits        uint32 // consent.Decision, carried in the hit
	measurement bool   // the hit may be counted
	ads         bool   // identifiers may travel for at least one platform
	anySignal   bool   // the page sent any consent signal at all
}

// state parses a Consent Mode value; a garbled value counts as denied.
func (s *Server) state(b []byte) consent.State {
	st, err := consent.ParseState(b)
	if err != nil {
		s.m.consentInvalid.Inc()
		return consent.Denied
	}
	return st
}

// resolve computes the consent decision of a hit from every signal it
// carries (see consent.Resolve and the README's precedence table). It does
// not allocate.
func (s *Server) resolve(raw *rawHit, meta *reqMeta) decision {
	var sig consent.Signals
	var err error
	if sig.GDPR, err = consent.ParseGDPR(raw.v[fGDPR]); err != nil {
		s.m.consentInvalid.Inc()
	}
	sig.TCF = raw.v[fTCF]
	if sig.GCS, err = consent.ParseGCS(raw.v[fGCS]); err != nil {
		s.m.consentInvalid.Inc()
		sig.GCS = consent.GCS{AdStorage: consent.Denied, AnalyticsStorage: consent.Denied}
	}
	sig.AdStorage = s.state(raw.v[fAdStorage])
	sig.AnalyticsStorage = s.state(raw.v[fAnalyticsStorage])
	sig.AdUserData = s.state(raw.v[fAdUserData])
	sig.AdPersonalization = s.state(raw.v[fAdPersonal])
	sig.GPC = meta.gpc || (len(raw.v[fGPC]) == 1 && raw.v[fGPC][0] == '1')
	sig.DNT = meta.dnt
	m := raw.v[fExMeasurement]
	if len(m) == 0 {
		m = raw.v[fExAnalytics]
	}
	sig.Explicit = consent.Explicit{
		Measurement:       s.state(m),
		AdStorage:         s.state(raw.v[fExAdStorage]),
		AdUserData:        s.state(raw.v[fExAdUserData]),
		AdPersonalization: s.state(raw.v[fExAdPersonal]),
	}
	d := consent.Resolve(&sig, s.vendors)
	if d&consent.TCFInvalid != 0 {
		s.m.consentInvalid.Inc()
		s.m.tcfInvalid.WithLabelValues(strings.TrimPrefix(d.TCFError().Error(), "tcf: ")).Inc()
	}
	return decision{
		bits:        uint32(d),
		measurement: d.Has(consent.Measurement),
		ads:         d.AllowsAds(consent.Google) || d.AllowsAds(consent.Meta) || d.AllowsAds(consent.LinkedIn),
		anySignal:   d&(consent.SourceTCF|consent.SourceConsentMode|consent.SourceExplicit) != 0,
	}
}

type uaClass struct {
	browser, os, device uint8
	bot                 bool
}

// classify reduces the user agent to browser family, OS family and device
// class, and flags bots (crawler list, automation markers in the UA or in
// Sec-CH-UA).
func (s *Server) classify(meta *reqMeta) uaClass {
	c := uaclass.Classify(meta.ua, meta.chUA)
	return uaClass{browser: uint8(c.Browser), os: uint8(c.OS), device: uint8(c.Device), bot: c.IsBot()}
}

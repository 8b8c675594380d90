package ingest

import (
	"net/netip"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/schemas"
)

// build turns a validated raw hit into b.hit: it resolves consent, looks up
// the country on the full address, computes the daily visitor hash,
// classifies the user agent, and keeps identifiers only where consent allows
// ads. It returns a reject reason or "". It does not allocate in steady
// state; b's buffers hold the derived fields until b is reused.
func (s *Server) build(b *builder, raw *rawHit, meta *reqMeta, camp *campaignInfo) string {
	h := &b.hit
	*h = schemas.Hit{}
	dec := s.resolve(raw, meta)
	if !dec.measurement {
		return reasonNoConsent
	}
	if !dec.anySignal && camp.dropNoConsent {
		return reasonNoConsent
	}
	ads := dec.ads
	s.ids.next(&h.ID)
	h.ReceivedMs = meta.now.UnixMilli()
	h.Event = schemas.ParseEvent(raw.v[fEvent])
	h.Consent = dec.bits
	h.Campaign = raw.v[fCampaign]
	h.Client = camp.clientID
	h.ClientEventID = raw.v[fEID]
	h.Vacancy = raw.v[fVacancy]

	ip := meta.ip
	if s.deps.Geo != nil && ip.IsValid() {
		var region []byte
		h.Country, region = s.deps.Geo.Lookup(ip, b.region[:0])
		b.region, h.Region = region, region
	}
	if salt := s.deps.Salts.Current(meta.now); salt != nil && ip.IsValid() {
		h.Visitor = anonymize.Visitor(salt, ip, meta.ua, camp.clientID)
	}
	if !meta.signed { // a signed hit's user agent is the sender's server
		cls := s.classify(meta)
		h.Browser, h.OS, h.Device = cls.browser, cls.os, cls.device
		if cls.bot {
			h.Flags |= schemas.FlagBot
		}
	}
	if ads && ip.IsValid() {
		h.IP = ip.As16()
		h.Flags |= schemas.FlagFullIP
	} else if ip.IsValid() {
		h.IP = s.cfg.Truncation.IP(ip).As16()
	}
	opts := &s.urlStrict
	if ads {
		opts = &s.urlAds
	}
	b.url = anonymize.URL(b.url[:0], raw.v[fURL], opts)
	b.ref = anonymize.URL(b.ref[:0], raw.v[fReferrer], opts)
	h.URL, h.Referrer = b.url, b.ref
	var tr anonymize.Tracking
	tr.Parse(h.URL) // the scrubbed URL: utm values are already clean
	b.utmDecode(&tr)
	if !ads {
		return ""
	}
	// Ad consent: carry what forwarding needs, hashed where it can be.
	h.UserAgent = meta.ua
	if len(raw.v[fEmail]) > 0 {
		if out, ok := anonymize.EmailMeta(b.emMeta[:0], raw.v[fEmail]); ok {
			b.emMeta, h.EmailMeta = out, out
		}
		if out, ok := anonymize.EmailGoogle(b.emGoogle[:0], raw.v[fEmail]); ok {
			b.emGoogle, h.EmailGoogle = out, out
		}
	}
	var ids anonymize.Tracking
	ids.Parse(raw.v[fURL])
	h.Gclid = firstNonEmpty(raw.v[fGclid], ids.Gclid)
	h.Gbraid = firstNonEmpty(raw.v[fGbraid], ids.Gbraid)
	h.Wbraid = firstNonEmpty(raw.v[fWbraid], ids.Wbraid)
	h.Fbp = raw.v[fFbp]
	h.LiFatID = firstNonEmpty(raw.v[fLiFatID], ids.LiFatID)
	h.Fbc = raw.v[fFbc]
	if len(h.Fbc) == 0 {
		if id := firstNonEmpty(raw.v[fFbclid], ids.Fbclid); len(id) > 0 {
			// _fbc format: fb.1.{ms}.{fbclid}, fbclid kept verbatim.
			b.fbc = append(b.fbc[:0], "fb.1."...)
			b.fbc = appendInt(b.fbc, h.ReceivedMs)
			b.fbc = append(b.fbc, '.')
			b.fbc = append(b.fbc, id...)
			h.Fbc = b.fbc
		}
	}
	return ""
}

func firstNonEmpty(a, b []byte) []byte {
	if len(a) > 0 {
		return a
	}
	return b
}

func appendInt(dst []byte, n int64) []byte {
	var tmp [20]byte
	i := len(tmp)
	if n == 0 {
		return append(dst, '0')
	}
	for n > 0 {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, tmp[i:]...)
}

// Geo looks up where a full address is: its ISO country code and region
// (subdivision) code, the region appended to dst.
type Geo interface {
	Lookup(a netip.Addr, dst []byte) (country [2]byte, region []byte)
}

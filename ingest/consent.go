package ingest

import "github.com/jobpixel/jobpixel/uaclass"

// decision is the consent outcome ingest acts on.
type decision struct {
	bits        uint32 // consent.Decision, carried in the hit
	measurement bool   // the hit may be counted
	ads         bool   // identifiers may travel for at least one platform
	anySignal   bool   // the page sent any consent signal at all
}

// resolve computes the consent decision of a hit.
func (s *Server) resolve(raw *rawHit, meta *reqMeta) decision {
	// Placeholder until the consent package lands: no ad consent, count.
	return decision{measurement: true}
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

// Package consent decodes consent signals and resolves them into one
// decision per hit. It is pure: bytes in, values out, standard library only.
//
// # IAB TCF v2
//
// Parse decodes a TC string (TCF v2.0 to v2.2) into a TCString: the core
// segment with vendor consents, vendor legitimate interests and publisher
// restrictions, and the optional disclosed vendors, allowed vendors and
// publisher TC segments. It is strict, bounded (MaxLen, MaxVendorID) and
// never panics. Summarize walks the same bits once without allocating and
// returns only what a decision needs: purposes, special features and, for
// Google (vendor 755) and the configured Meta and LinkedIn vendor ids, the
// vendor bits with publisher restrictions applied. Both share one decoder,
// so they accept and reject the same strings; the decoder is checked
// against the official IAB implementation (@iabtcf/core) in tests.
//
// # Google Consent Mode v2
//
// ParseGCS parses the gcs parameter and ParseState the explicit
// ad_storage, analytics_storage, ad_user_data and ad_personalization
// values, without allocating.
//
// # Resolution
//
// Resolve combines the TC string, the gdpr flag, Consent Mode, the
// tracker's explicit consent object, GPC and DNT into a Decision, a uint32
// bitmask with a stable layout (see Decision) that travels with the hit.
// Resolve does not allocate. Forwarders ask Decision.AllowsAds and
// Decision.AllowsAudience.
//
// The precedence rules (any denial wins, missing means denied, GPC and DNT
// deny ads, a malformed TC string denies, measurement is allowed unless the
// explicit object denies it), what each source votes and the per-platform
// bits are documented once, in PRECEDENCE.md beside this file, and Resolve
// implements that document.
package consent

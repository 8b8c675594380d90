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
// Precedence, strongest first (also in PRECEDENCE.md):
//
//	| # | Rule                            | Effect                                                                                      |
//	|---|---------------------------------|---------------------------------------------------------------------------------------------|
//	| 1 | GPC or DNT is on                | ad_storage, ad_user_data, ad_personalization and all platform bits denied, whatever else    |
//	|   |                                 | says; Measurement and analytics_storage unaffected.                                         |
//	| 2 | A source denies                 | Any denial wins: granted only if at least one source grants and no source denies.           |
//	|   |                                 | TCF, Consent Mode and the explicit object are equal voters: each can grant alone, none      |
//	|   |                                 | can undo another's denial.                                                                  |
//	| 3 | No source says anything         | Denied (missing means denied), except Measurement.                                          |
//	| 4 | TC string malformed             | TCF denies analytics_storage, ad_storage, ad_user_data, ad_personalization and all          |
//	|   |                                 | platforms; TCFInvalid is set and Decision.TCFError says why.                                |
//	| 5 | gdpr=1 and no TC string         | As rule 4, without TCFInvalid.                                                              |
//	| 6 | gdpr=0 or no gdpr flag          | A missing TC string is no vote; a present one still votes (its denials win).                |
//	| 7 | Measurement                     | Anonymous aggregate counting is allowed unless the explicit object says measurement=denied. |
//
// What each source votes (a source that does not mention a permission does
// not vote; Pn is TCF purpose n; "consent or LI" is purpose consent or
// legitimate-interest transparency):
//
//	| Permission        | Consent Mode                    | Explicit object    | TCF, valid string                          |
//	|-------------------|---------------------------------|--------------------|--------------------------------------------|
//	| Measurement       | -                               | measurement=denied | -                                          |
//	|                   |                                 | refuses (rule 7)   |                                            |
//	| AnalyticsStorage  | gcs 4th char, analytics_storage | measurement        | P1 consent and P8 consent or LI, else deny |
//	| AdStorage         | gcs 3rd char, ad_storage        | ad_storage         | P1 consent, else deny                      |
//	| AdUserData        | ad_user_data                    | ad_user_data       | P1 consent and P7 consent or LI, else deny |
//	| AdPersonalization | ad_personalization              | ad_personalization | P3 and P4 consent, else deny               |
//
// Per platform p (Google, Meta, LinkedIn), Vendor<p> is set when AdUserData
// is granted and p has vendor-level permission; Audience<p> when Vendor<p>
// is set, AdPersonalization is granted and p has vendor-level
// personalisation permission. Vendor-level permission comes from the TC string when one
// votes: with a TCF vendor id (Google 755; Meta and LinkedIn configured in
// Vendors), the vendor's consent bit plus P1 on consent and P7 on consent
// or LI after publisher restrictions (P3 and P4 on consent for
// personalisation); without a vendor id, the general purposes; none for a
// malformed string or gdpr=1 without one. With no TC string and GDPR not
// known to apply, platforms follow AdUserData and AdPersonalization.
// Publisher restrictions: type 0 removes the purpose for the vendor, type 1
// (require consent) its legitimate-interest basis, type 2 (require LI) its
// consent basis.
package consent

package ingest

import (
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/jobpixel/jobpixel/schemas"
)

// scope is where a field sits in a POST /e body.
type scope uint8

const (
	inBody        scope = iota // top level; applies to every event
	inBodyOrEvent              // top level, and an event may override it
	inEvent                    // in each event only
	inConsentMode              // in the "consent_mode" object
	inConsent                  // in the "consent" object (the site's explicit consent)
)

// hitField is one field a page may send. hitFields is the only table of
// them: both parsers (/p.gif query arguments, /e JSON) and validate read it,
// and TestHitFieldsBothEndpoints and TestREADMEHitFields hold it to both
// endpoints and to the README.
type hitField struct {
	// query are the /p.gif parameter names; json the /e keys within the
	// field's scope. Where a field has several names the first one present
	// wins.
	query []string
	json  []string
	in    scope
	// max is the longest value accepted (longer: field_too_long); 0 when
	// the value's own parser bounds it (ids, events, consent signals).
	max int
	// doc is the README's description of the field.
	doc string
}

// maxFieldLen bounds URLs, referrers, consent strings and identifiers.
const maxFieldLen = 4096

// field names a value of a rawHit.
type field uint8

const (
	fCampaign field = iota
	fEvent
	fURL
	fReferrer
	fVacancy
	fEID
	fEmail
	fGDPR
	fTCF
	fGCS
	fAdStorage
	fAnalyticsStorage
	fAdUserData
	fAdPersonal
	fExMeasurement
	fExAnalytics
	fExAdStorage
	fExAdUserData
	fExAdPersonal
	fGPC
	fGclid
	fGbraid
	fWbraid
	fFbclid
	fFbc
	fFbp
	fLiFatID
	numFields
)

var hitFields = [numFields]hitField{
	fCampaign: {query: []string{"c"}, json: []string{"c"}, in: inBodyOrEvent,
		doc: "campaign id (required; letters, digits, `_`, `-`, at most 64)"},
	fEvent: {query: []string{"e"}, json: []string{"e"}, in: inEvent,
		doc: "event: `page_view`, `apply_click`, `application`, `vacancy_email` (required)"},
	fURL: {query: []string{"u"}, json: []string{"u"}, in: inBodyOrEvent, max: maxFieldLen,
		doc: "page URL (without it, /p.gif takes the `Referer` header: a `<noscript>` pixel)"},
	fReferrer: {query: []string{"r"}, json: []string{"r"}, in: inBodyOrEvent, max: maxFieldLen,
		doc: "referrer"},
	fVacancy: {query: []string{"v"}, json: []string{"v"}, in: inBodyOrEvent, max: 256,
		doc: "vacancy id"},
	fEID: {query: []string{"eid"}, json: []string{"eid"}, in: inEvent, max: schemas.MaxClientEventIDLen,
		doc: "client event id (optional; dedup and the platforms' dedup keys)"},
	fEmail: {query: []string{"em"}, json: []string{"em"}, in: inBodyOrEvent, max: maxFieldLen,
		doc: "e-mail address (hashed at the edge, only with ad consent; never stored)"},
	fGDPR: {query: []string{"gdpr"}, json: []string{"gdpr"}, in: inBody,
		doc: "IAB TCF v2.2: whether GDPR applies (`0`/`1`)"},
	fTCF: {query: []string{"gdpr_consent", "tcf"}, json: []string{"gdpr_consent", "tcf"}, in: inBody, max: maxFieldLen,
		doc: "IAB TCF v2.2 TC string"},
	fGCS: {query: []string{"gcs"}, json: []string{"gcs"}, in: inBody,
		doc: "Google Consent Mode `gcs` (`G1xy`)"},
	fAdStorage: {query: []string{"ad_storage"}, json: []string{"ad_storage"}, in: inConsentMode,
		doc: "Google Consent Mode v2 (`granted`/`denied`)"},
	fAnalyticsStorage: {query: []string{"analytics_storage"}, json: []string{"analytics_storage"}, in: inConsentMode,
		doc: "Google Consent Mode v2"},
	fAdUserData: {query: []string{"ad_user_data"}, json: []string{"ad_user_data"}, in: inConsentMode,
		doc: "Google Consent Mode v2"},
	fAdPersonal: {query: []string{"ad_personalization"}, json: []string{"ad_personalization"}, in: inConsentMode,
		doc: "Google Consent Mode v2"},
	fExMeasurement: {query: []string{"consent_measurement"}, json: []string{"measurement"}, in: inConsent,
		doc: "the site's explicit consent (`granted`/`denied`)"},
	fExAnalytics: {query: []string{"consent_analytics_storage"}, json: []string{"analytics_storage"}, in: inConsent,
		doc: "the site's explicit consent"},
	fExAdStorage: {query: []string{"consent_ad_storage"}, json: []string{"ad_storage"}, in: inConsent,
		doc: "the site's explicit consent"},
	fExAdUserData: {query: []string{"consent_ad_user_data"}, json: []string{"ad_user_data"}, in: inConsent,
		doc: "the site's explicit consent"},
	fExAdPersonal: {query: []string{"consent_ad_personalization"}, json: []string{"ad_personalization"}, in: inConsent,
		doc: "the site's explicit consent"},
	fGPC: {query: []string{"gpc"}, json: []string{"gpc"}, in: inBody,
		doc: "`1` when the page saw `navigator.globalPrivacyControl` (the `Sec-GPC: 1` header counts too)"},
	fGclid: {query: []string{"gclid"}, json: []string{"gclid"}, in: inBody, max: maxFieldLen,
		doc: "Google click id (kept only with ad consent)"},
	fGbraid: {query: []string{"gbraid"}, json: []string{"gbraid"}, in: inBody, max: maxFieldLen,
		doc: "Google click id (kept only with ad consent)"},
	fWbraid: {query: []string{"wbraid"}, json: []string{"wbraid"}, in: inBody, max: maxFieldLen,
		doc: "Google click id (kept only with ad consent)"},
	fFbclid: {query: []string{"fbclid"}, json: []string{"fbclid"}, in: inBody, max: maxFieldLen,
		doc: "Meta click id (kept only with ad consent)"},
	fFbc: {query: []string{"fbc"}, json: []string{"fbc"}, in: inBody, max: maxFieldLen,
		doc: "Meta `_fbc` cookie (kept only with ad consent)"},
	fFbp: {query: []string{"fbp"}, json: []string{"fbp"}, in: inBody, max: maxFieldLen,
		doc: "Meta `_fbp` cookie (kept only with ad consent)"},
	fLiFatID: {query: []string{"li_fat_id"}, json: []string{"li_fat_id"}, in: inBody, max: maxFieldLen,
		doc: "LinkedIn click id (kept only with ad consent)"},
}

// parseQuery fills raw from /p.gif query arguments, as sub-slices of the
// request. It does not allocate.
func parseQuery(args *fasthttp.Args, raw *rawHit) {
	for i := range hitFields {
		f := &hitFields[i]
		for _, name := range f.query {
			if v := args.Peek(name); len(v) > 0 {
				raw.v[i] = v
				break
			}
		}
	}
}

// parseObject fills raw from the fields of scopes of o that are present
// (with path prefixed to a field named in an error). A field with several
// names takes the first present; every name must be a string, number,
// boolean or null.
func parseObject(o *fastjson.Value, path string, raw *rawHit, scopes ...scope) error {
	for i := range hitFields {
		f := &hitFields[i]
		if !has(scopes, f.in) {
			continue
		}
		set := false
		for _, key := range f.json {
			b, err := str(o, key, path)
			if err != nil {
				return err
			}
			if b != nil && !set {
				raw.v[i], set = b, true
			}
		}
	}
	return nil
}

func has(scopes []scope, s scope) bool {
	for _, x := range scopes {
		if x == s {
			return true
		}
	}
	return false
}

// tooLong reports whether a field of r is over its limit.
func (r *rawHit) tooLong() bool {
	for i := range hitFields {
		f := &hitFields[i]
		if f.max > 0 && len(r.v[i]) > f.max {
			return true
		}
	}
	return false
}

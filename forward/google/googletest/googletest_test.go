package googletest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward/google/googletest"
)

const (
	token     = "tok"
	devToken  = "dev"
	gmailHash = "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4"
	phoneHash = "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"
)

var now = time.Date(2026, 10, 14, 14, 45, 18, 0, time.UTC)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestNormalizeEmailVector(t *testing.T) {
	for raw, want := range map[string]string{
		" Cloudy.SanFrancisco+shopping@gmail.com ": "cloudysanfrancisco@gmail.com",
		"a.b+c@googlemail.com":                     "ab@googlemail.com",
		"Mary.Jane+x@Example.com":                  "mary.jane+x@example.com",
		"mary @example.com":                        "mary@example.com",
	} {
		if got := googletest.NormalizeEmail(raw); got != want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", raw, got, want)
		}
	}
	if sha(googletest.NormalizeEmail("cloudy.sanfrancisco+shopping@gmail.com")) != gmailHash {
		t.Error("reference vector mismatch")
	}
	if sha("+18005550100") != phoneHash {
		t.Error("phone vector mismatch")
	}
}

func newServer() *googletest.Server {
	s := googletest.New(googletest.Config{Token: token, DeveloperToken: devToken, Now: func() time.Time { return now }})
	s.RegisterEmail("cloudy.sanfrancisco+shopping@gmail.com")
	s.RegisterPhone("(800)555-0100", "+18005550100")
	return s
}

type obj = map[string]any

func dest() []any {
	return []any{obj{"operatingAccount": obj{"accountType": "GOOGLE_ADS", "accountId": "7693729833"}, "productDestinationId": "7090784486"}}
}

func ingestBody() obj {
	return obj{
		"destinations": dest(),
		"audienceMembers": []any{obj{
			"userData": obj{"userIdentifiers": []any{obj{"emailAddress": gmailHash}, obj{"phoneNumber": phoneHash}}},
			"consent":  obj{"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"},
		}},
		"encoding":       "HEX",
		"termsOfService": obj{"customerMatchTermsOfServiceStatus": "ACCEPTED"},
		"validateOnly":   false,
	}
}

func eventsBody() obj {
	return obj{
		"destinations": dest(),
		"events": []any{obj{
			"transactionId":   "apply-1",
			"eventTimestamp":  now.Add(-time.Hour).Format(time.RFC3339),
			"userData":        obj{"userIdentifiers": []any{obj{"emailAddress": gmailHash}}},
			"consent":         obj{"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
			"adIdentifiers":   obj{"gclid": "Cj0KCQ"},
			"conversionValue": 1500.5,
			"currency":        "EUR",
			"eventSource":     "WEB",
		}},
		"encoding": "HEX",
	}
}

func clickBody() obj {
	return obj{
		"conversions": []any{obj{
			"gclid":              "Cj0KCQ",
			"conversionAction":   "customers/7693729833/conversionActions/555",
			"conversionDateTime": "2026-10-14 16:45:18+02:00",
			"conversionValue":    1,
			"currencyCode":       "EUR",
			"orderId":            "apply-1",
			"consent":            obj{"adUserData": "GRANTED", "adPersonalization": "DENIED"},
		}},
		"partialFailure": true,
	}
}

func first(o obj, key string) obj { return o[key].([]any)[0].(obj) }

const clickPath = "/v22/customers/7693729833:uploadClickConversions"

func do(s *googletest.Server, path string, body any, header http.Header) *httptest.ResponseRecorder {
	var b string
	switch v := body.(type) {
	case string:
		b = v
	default:
		raw, _ := json.Marshal(v)
		b = string(raw)
	}
	r := httptest.NewRequest("POST", path, strings.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("developer-token", devToken)
	for k, vs := range header {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func sameJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("response is not JSON: %q", got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q", want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

func violation(field, description, reason string) string {
	return string(googletest.Envelope(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", googletest.BadRequest(field, description, reason)))
}

func TestAccepted(t *testing.T) {
	s := newServer()
	for _, c := range []struct {
		path string
		body obj
	}{
		{"/v1/audienceMembers:ingest", ingestBody()},
		{"/v1/events:ingest", eventsBody()},
	} {
		w := do(s, c.path, c.body, nil)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"requestId":"fake-`) {
			t.Errorf("%s: %d %s", c.path, w.Code, w.Body)
		}
	}
	rm := ingestBody()
	delete(rm, "termsOfService")
	delete(first(rm, "audienceMembers"), "consent")
	if w := do(s, "/v1/audienceMembers:remove", rm, nil); w.Code != 200 {
		t.Errorf("remove: %d %s", w.Code, w.Body)
	}
	w := do(s, clickPath, clickBody(), http.Header{"Login-Customer-Id": {"1234567890"}})
	if w.Code != 200 {
		t.Fatalf("click: %d %s", w.Code, w.Body)
	}
	sameJSON(t, w.Body.String(), `{"results":[{"gclid":"Cj0KCQ","conversionAction":"customers/7693729833/conversionActions/555","conversionDateTime":"2026-10-14 16:45:18+02:00"}]}`)
	if len(s.Events()) != 1 || len(s.Clicks()) != 1 || len(s.Members("7090784486")) != 0 {
		t.Errorf("events %d clicks %d members %v", len(s.Events()), len(s.Clicks()), s.Members("7090784486"))
	}
	do(s, "/v1/events:ingest", eventsBody(), nil)
	do(s, clickPath, clickBody(), nil)
	if d := s.Duplicates(); d["apply-1"] != 2 {
		t.Errorf("duplicates %v", d)
	}
}

func TestDataManagerRejected(t *testing.T) {
	m := func(base func() obj, f func(b obj)) obj { b := base(); f(b); return b }
	member := func(b obj) obj { return first(b, "audienceMembers") }
	ids := func(b obj) []any { return member(b)["userData"].(obj)["userIdentifiers"].([]any) }
	event := func(b obj) obj { return first(b, "events") }
	many := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = obj{"userData": obj{"userIdentifiers": []any{obj{"emailAddress": gmailHash}}}, "consent": obj{"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}}
		}
		return out
	}
	unauth := string(googletest.Envelope(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."))
	tests := []struct {
		name   string
		path   string
		body   any
		header http.Header
		status int
		want   string
	}{
		{"no bearer", "/v1/audienceMembers:ingest", ingestBody(), http.Header{"Authorization": {""}}, 401, unauth},
		{"wrong bearer", "/v1/audienceMembers:ingest", ingestBody(), http.Header{"Authorization": {"Bearer nope"}}, 401, unauth},
		{"unknown method", "/v1/audienceMembers:upsert", ingestBody(), nil, 404, `{"error":{"code":404,"message":"Method not found.","status":"NOT_FOUND"}}`},
		{"unknown field", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { b["foo"] = 1 }), nil, 400,
			string(googletest.Envelope(400, "INVALID_ARGUMENT", `Invalid JSON payload received. unknown field "foo"`, googletest.BadRequest("", `unknown field "foo"`, "")))},
		{"snake_case field", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { b["audience_members"] = b["audienceMembers"]; delete(b, "audienceMembers") }), nil, 400,
			string(googletest.Envelope(400, "INVALID_ARGUMENT", `Invalid JSON payload received. unknown field "audience_members"`, googletest.BadRequest("", `unknown field "audience_members"`, "")))},
		{"no destinations", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { delete(b, "destinations") }), nil, 400,
			violation("destinations", "at least one destination is required", "REQUIRED_FIELD_MISSING")},
		{"account id with dashes", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) {
			first(b, "destinations")["operatingAccount"].(obj)["accountId"] = "769-372-9833"
		}), nil, 400, violation("destinations[0].operating_account.account_id", "account id must be digits only", "INVALID_ARGUMENT")},
		{"bad account type", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) {
			first(b, "destinations")["operatingAccount"].(obj)["accountType"] = "ADS"
		}), nil, 400, violation("destinations[0].operating_account.account_type", "missing or unknown account type", "INVALID_ENUM_VALUE")},
		{"no encoding", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { delete(b, "encoding") }), nil, 400,
			violation("encoding", "encoding is required for hashed identifiers", "REQUIRED_FIELD_MISSING")},
		{"no terms", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { delete(b, "termsOfService") }), nil, 400,
			violation("terms_of_service", "customer match terms of service must be ACCEPTED", "TERMS_AND_CONDITIONS_NOT_SIGNED")},
		{"terms on remove", "/v1/audienceMembers:remove", ingestBody(), nil, 400,
			violation("terms_of_service", "terms_of_service is not allowed on remove", "INVALID_ARGUMENT")},
		{"10001 members", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { b["audienceMembers"] = many(10001) }), nil, 400,
			violation("audience_members", "at most 10000 audience members per request, got 10001", "TOO_MANY_AUDIENCE_MEMBERS")},
		{"plaintext email", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { ids(b)[0] = obj{"emailAddress": "cloudy@gmail.com"} }), nil, 400,
			violation("audience_members[0].user_data.user_identifiers[0].email_address", "value must be a hex-encoded SHA-256 hash (64 characters)", "INVALID_SHA256_FORMAT")},
		{"uppercase hex", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { ids(b)[0] = obj{"emailAddress": strings.ToUpper(gmailHash)} }), nil, 400,
			violation("audience_members[0].user_data.user_identifiers[0].email_address", "hex must be lowercase", "INVALID_HEX_ENCODING")},
		{"gmail dots kept", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) {
			ids(b)[0] = obj{"emailAddress": sha("cloudy.sanfrancisco+shopping@gmail.com")}
		}), nil, 400, violation("audience_members[0].user_data.user_identifiers[0].email_address", "hash of a e-mail that was not normalised the Google way", "INVALID_FORMAT")},
		{"phone without plus", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { ids(b)[1] = obj{"phoneNumber": sha("18005550100")} }), nil, 400,
			violation("audience_members[0].user_data.user_identifiers[1].phone_number", "hash of a phone that was not normalised the Google way", "INVALID_FORMAT")},
		{"two values in one identifier", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { ids(b)[0] = obj{"emailAddress": gmailHash, "phoneNumber": phoneHash} }), nil, 400,
			violation("audience_members[0].user_data.user_identifiers[0]", "exactly one of email_address, phone_number must be set", "INVALID_ARGUMENT")},
		{"no consent", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { delete(member(b), "consent") }), nil, 400,
			violation("consent", "consent must state adUserData and adPersonalization", "REQUIRED_FIELD_MISSING")},
		{"bad consent value", "/v1/audienceMembers:ingest", m(ingestBody, func(b obj) { member(b)["consent"].(obj)["adUserData"] = "GRANTED" }), nil, 400,
			violation("audience_members[0].consent", "consent values are CONSENT_GRANTED, CONSENT_DENIED or CONSENT_STATUS_UNSPECIFIED", "INVALID_ENUM_VALUE")},
		{"event without transactionId", "/v1/events:ingest", m(eventsBody, func(b obj) { delete(event(b), "transactionId") }), nil, 400,
			violation("events[0].transaction_id", "required (it is the dedup key)", "REQUIRED_FIELD_MISSING")},
		{"event timestamp not RFC 3339", "/v1/events:ingest", m(eventsBody, func(b obj) { event(b)["eventTimestamp"] = "2026-10-14 13:45:18" }), nil, 400,
			violation("events[0].event_timestamp", "not an RFC 3339 timestamp", "INVALID_FORMAT")},
		{"event too old", "/v1/events:ingest", m(eventsBody, func(b obj) { event(b)["eventTimestamp"] = now.Add(-91 * 24 * time.Hour).Format(time.RFC3339) }), nil, 400,
			violation("events[0].event_timestamp", "event is older than 90 days", "INVALID_ARGUMENT")},
		{"event source missing", "/v1/events:ingest", m(eventsBody, func(b obj) { delete(event(b), "eventSource") }), nil, 400,
			violation("events[0].event_source", "missing or unknown event source", "INVALID_ENUM_VALUE")},
		{"value as string", "/v1/events:ingest", m(eventsBody, func(b obj) { event(b)["conversionValue"] = "1500.5" }), nil, 400,
			string(googletest.Envelope(400, "INVALID_ARGUMENT", "Invalid JSON payload received. field events.conversionValue: wrong type: JSON string where float64 is required",
				googletest.BadRequest("", "field events.conversionValue: wrong type: JSON string where float64 is required", "")))},
		{"value without currency", "/v1/events:ingest", m(eventsBody, func(b obj) { delete(event(b), "currency") }), nil, 400,
			violation("events[0].currency", "a 3-letter currency is required with a value", "INVALID_CURRENCY_CODE")},
		{"hashed gclid", "/v1/events:ingest", m(eventsBody, func(b obj) { event(b)["adIdentifiers"] = obj{"gclid": sha("Cj0KCQ")} }), nil, 400,
			violation("events[0].ad_identifiers.gclid", "click ids are sent as received, not empty or hashed", "INVALID_FORMAT")},
		{"no identifier", "/v1/events:ingest", m(eventsBody, func(b obj) { delete(event(b), "userData"); delete(event(b), "adIdentifiers") }), nil, 400,
			violation("events[0]", "an event needs a user identifier or an ad identifier", "INVALID_EVENT")},
		{"2001 events", "/v1/events:ingest", m(eventsBody, func(b obj) {
			evs := make([]any, 2001)
			for i := range evs {
				evs[i] = event(eventsBody())
			}
			b["events"] = evs
		}), nil, 400, violation("events", "at most 2000 events per request, got 2001", "TOO_MANY_EVENTS")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer()
			w := do(s, tc.path, tc.body, tc.header)
			if w.Code != tc.status {
				t.Errorf("status %d", w.Code)
			}
			sameJSON(t, w.Body.String(), tc.want)
			if len(s.Events()) != 0 || len(s.Members("7090784486")) != 0 {
				t.Error("a rejected request was recorded")
			}
		})
	}
}

func adsErr(code int, status, message string, errorCode map[string]string, detail string) string {
	return string(googletest.Envelope(code, status, message, googletest.AdsFailure("v22", errorCode, detail)))
}

func TestAdsRejected(t *testing.T) {
	many := clickBody()
	convs := make([]any, 2001)
	for i := range convs {
		convs[i] = first(clickBody(), "conversions")
	}
	many["conversions"] = convs
	noPF := clickBody()
	noPF["partialFailure"] = false
	tests := []struct {
		name   string
		path   string
		body   any
		header http.Header
		status int
		want   string
	}{
		{"wrong version", "/v19/customers/7693729833:uploadClickConversions", clickBody(), nil, 404,
			`{"error":{"code":404,"message":"Version v19 is not supported.","status":"NOT_FOUND"}}`},
		{"no developer token", clickPath, clickBody(), http.Header{"Developer-Token": {""}}, 401,
			adsErr(401, "UNAUTHENTICATED", "The caller does not have permission", map[string]string{"authenticationError": "DEVELOPER_TOKEN_PARAMETER_MISSING"}, "developer-token header is missing")},
		{"login id with dashes", clickPath, clickBody(), http.Header{"Login-Customer-Id": {"123-456-7890"}}, 400,
			adsErr(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", map[string]string{"authenticationError": "LOGIN_CUSTOMER_ID_PARAMETER_INVALID"}, "login-customer-id must be digits only")},
		{"partialFailure false", clickPath, noPF, nil, 400,
			adsErr(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", map[string]string{"fieldError": "REQUIRED"}, "partialFailure must be true")},
		{"2001 conversions", clickPath, many, nil, 400,
			adsErr(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", map[string]string{"conversionUploadError": "TOO_MANY_CONVERSIONS_IN_REQUEST"}, "at most 2000 conversions per request, got 2001")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer()
			w := do(s, tc.path, tc.body, tc.header)
			if w.Code != tc.status {
				t.Errorf("status %d", w.Code)
			}
			sameJSON(t, w.Body.String(), tc.want)
			if len(s.Clicks()) != 0 {
				t.Error("a rejected request was recorded")
			}
		})
	}
}

func TestAdsPartialFailures(t *testing.T) {
	mut := func(f func(c obj)) any { c := first(clickBody(), "conversions"); f(c); return c }
	cases := []struct {
		name, errorCode, message, field string
		conv                            any
	}{
		{"two click ids", `{"conversionUploadError":"EXACTLY_ONE_CLICK_ID_REQUIRED"}`, "Exactly one of gclid, gbraid, wbraid must be set.", "",
			mut(func(c obj) { c["gbraid"] = "x" })},
		{"other customer's action", `{"conversionUploadError":"INVALID_CONVERSION_ACTION"}`, "The conversion action is missing or not of this customer.", "conversionAction",
			mut(func(c obj) { c["conversionAction"] = "customers/1/conversionActions/555" })},
		{"RFC 3339 date", `{"dateError":"INVALID_FIELD_VALUES_IN_DATE_TIME"}`, "conversionDateTime must look like 2026-10-14 16:45:18+02:00.", "conversionDateTime",
			mut(func(c obj) { c["conversionDateTime"] = "2026-10-14T16:45:18+02:00" })},
		{"too old", `{"conversionUploadError":"EXPIRED_EVENT"}`, "The conversion is older than 90 days.", "conversionDateTime",
			mut(func(c obj) { c["conversionDateTime"] = "2026-07-01 10:00:00+00:00" })},
		{"no orderId", `{"fieldError":"REQUIRED"}`, "orderId is required (it is the dedup key).", "orderId",
			mut(func(c obj) { delete(c, "orderId") })},
		{"consent enum", `{"requestError":"INVALID_ENUM_VALUE"}`, "consent values are GRANTED, DENIED or UNSPECIFIED.", "consent",
			mut(func(c obj) { c["consent"] = obj{"adUserData": "CONSENT_GRANTED", "adPersonalization": "DENIED"} })},
		{"injected", `{"conversionUploadError":"CLICK_NOT_FOUND"}`, "The click was not found.", "gclid",
			mut(func(c obj) { c["gclid"] = "unknown-click" })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer()
			s.FailClick("unknown-click", "CLICK_NOT_FOUND", "The click was not found.")
			body := clickBody()
			body["conversions"] = []any{first(clickBody(), "conversions"), tc.conv}
			w := do(s, clickPath, body, nil)
			if w.Code != 200 {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
			path := `{"fieldName":"conversions","index":1}`
			loc := "conversions[1]"
			if tc.field != "" {
				path += `,{"fieldName":"` + tc.field + `"}`
				loc += "." + tc.field
			}
			want := fmt.Sprintf(`{"results":[{"gclid":"Cj0KCQ","conversionAction":"customers/7693729833/conversionActions/555","conversionDateTime":"2026-10-14 16:45:18+02:00"},{}],
				"partialFailureError":{"code":3,"message":%q,"details":[{"@type":"type.googleapis.com/google.ads.googleads.v22.errors.GoogleAdsFailure",
				"errors":[{"errorCode":%s,"message":%q,"location":{"fieldPathElements":[%s]}}]}]}}`,
				tc.message+", at "+loc, tc.errorCode, tc.message, path)
			sameJSON(t, w.Body.String(), want)
			if len(s.Clicks()) != 1 {
				t.Errorf("clicks %d, want only the valid one", len(s.Clicks()))
			}
		})
	}
}

func TestFaults(t *testing.T) {
	s := googletest.Start(googletest.Config{Token: token, Now: func() time.Time { return now }})
	defer s.Close()
	s.Inject(googletest.Throttled(30*time.Second), googletest.Unavailable(), googletest.Aborted(), googletest.PermissionDenied())
	want := []struct {
		status int
		ra     string
		body   string
	}{
		{429, "30", `{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED"}}`},
		{503, "", `{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}`},
		{409, "", `{"error":{"code":409,"message":"The operation was aborted.","status":"ABORTED"}}`},
		{403, "", `{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}`},
	}
	raw, _ := json.Marshal(eventsBody())
	for _, w := range want {
		req, _ := http.NewRequest("POST", s.URL()+"/v1/events:ingest", strings.NewReader(string(raw)))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if resp.StatusCode != w.status || resp.Header.Get("Retry-After") != w.ra {
			t.Errorf("status %d retry-after %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		sameJSON(t, b.String(), w.body)
	}
	if len(s.Events()) != 0 || s.Hits() != 4 {
		t.Errorf("events %d hits %d", len(s.Events()), s.Hits())
	}
}

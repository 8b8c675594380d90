package linkedintest_test

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

	"github.com/jobpixel/jobpixel/forward/linkedin/linkedintest"
)

const (
	token    = "tok"
	maryHash = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"
)

var now = time.Date(2026, 10, 14, 16, 45, 18, 0, time.UTC)

type obj = map[string]any

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func newServer() *linkedintest.Server {
	s := linkedintest.New(linkedintest.Config{Token: token, MinVersion: "202510", Now: func() time.Time { return now }})
	s.RegisterEmail(" Mary@Example.com")
	return s
}

func event() obj {
	return obj{
		"conversion":           "urn:lla:llaPartnerConversion:23456",
		"conversionHappenedAt": now.Add(-time.Hour).UnixMilli(),
		"conversionValue":      obj{"currencyCode": "EUR", "amount": "1500.0"},
		"eventId":              "apply-123",
		"user": obj{"userIds": []any{
			obj{"idType": "SHA256_EMAIL", "idValue": maryHash},
			obj{"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": "8f3c2a1e-0b5d-4c2e"},
		}},
	}
}

func headers() http.Header {
	return http.Header{
		"Authorization":             {"Bearer " + token},
		"Linkedin-Version":          {"202610"},
		"X-Restli-Protocol-Version": {"2.0.0"},
		"X-Restli-Method":           {"BATCH_CREATE"},
		"Content-Type":              {"application/json"},
	}
}

func do(s *linkedintest.Server, path string, body any, h http.Header) *httptest.ResponseRecorder {
	raw, _ := json.Marshal(body)
	r := httptest.NewRequest("POST", path, strings.NewReader(string(raw)))
	r.Header = h
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

func TestAccepted(t *testing.T) {
	s := newServer()
	w := do(s, "/rest/conversionEvents", obj{"elements": []any{event(), event()}}, headers())
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	sameJSON(t, w.Body.String(), `{"elements":[{"status":201},{"status":201}]}`)
	single := headers()
	single.Del("X-Restli-Method")
	w = do(s, "/rest/conversionEvents", event(), single)
	if w.Code != 201 || w.Body.Len() != 0 {
		t.Errorf("single: %d %q", w.Code, w.Body)
	}
	if len(s.Events()) != 3 || s.Duplicates()["apply-123"] != 2 {
		t.Errorf("events %d dups %v", len(s.Events()), s.Duplicates())
	}
	s.FailEvent("bad", 400, "Conversion rule is not active")
	bad := event()
	bad["eventId"] = "bad"
	w = do(s, "/rest/conversionEvents", obj{"elements": []any{event(), bad}}, headers())
	sameJSON(t, w.Body.String(), `{"elements":[{"status":201},{"status":400,"error":{"status":400,"message":"Conversion rule is not active"}}]}`)
}

func TestRejected(t *testing.T) {
	with := func(f func(ev obj)) obj { ev := event(); f(ev); return obj{"elements": []any{event(), ev}} }
	hdr := func(k, v string) http.Header {
		h := headers()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	ids := func(ev obj) []any { return ev["user"].(obj)["userIds"].([]any) }
	many := make([]any, 5001)
	for i := range many {
		many[i] = event()
	}
	tests := []struct {
		name   string
		body   any
		h      http.Header
		status int
		want   string
	}{
		{"no token", obj{"elements": []any{event()}}, hdr("Authorization", ""), 401,
			`{"status":401,"serviceErrorCode":65600,"code":"INVALID_ACCESS_TOKEN","message":"Invalid access token"}`},
		{"wrong token", obj{"elements": []any{event()}}, hdr("Authorization", "Bearer x"), 401,
			`{"status":401,"serviceErrorCode":65600,"code":"INVALID_ACCESS_TOKEN","message":"Invalid access token"}`},
		{"no version", obj{"elements": []any{event()}}, hdr("Linkedin-Version", ""), 400,
			`{"status":400,"code":"VERSION_MISSING","message":"A version must be present. Please specify a version by adding the LinkedIn-Version header."}`},
		{"bad version", obj{"elements": []any{event()}}, hdr("Linkedin-Version", "2026-10"), 400,
			`{"status":400,"code":"INVALID_VERSION","message":"Invalid version format \"2026-10\": expected YYYYMM"}`},
		{"sunset version", obj{"elements": []any{event()}}, hdr("Linkedin-Version", "202401"), 426,
			`{"status":426,"code":"NONEXISTENT_VERSION","message":"Requested version 202401 is not active"}`},
		{"no protocol version", obj{"elements": []any{event()}}, hdr("X-Restli-Protocol-Version", ""), 400,
			`{"status":400,"message":"X-Restli-Protocol-Version must be 2.0.0, got \"\""}`},
		{"bad method", obj{"elements": []any{event()}}, hdr("X-Restli-Method", "BATCH_UPDATE"), 400,
			`{"status":400,"message":"unsupported X-RestLi-Method \"BATCH_UPDATE\""}`},
		{"5001 elements", obj{"elements": many}, headers(), 400, `{"status":400,"message":"Batch size 5001 exceeds the maximum of 5000"}`},
		{"amount as number", with(func(ev obj) { ev["conversionValue"] = obj{"currencyCode": "EUR", "amount": 1500.0} }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversionValue/amount :: data type mismatch: JSON number where string is required"}`},
		{"amount missing", with(func(ev obj) { ev["conversionValue"] = obj{"currencyCode": "EUR"} }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversionValue/amount :: field is required but not found and has no default value"}`},
		{"amount not decimal", with(func(ev obj) { ev["conversionValue"] = obj{"currencyCode": "EUR", "amount": "1,500"} }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversionValue/amount :: amount must be a decimal string"}`},
		{"epoch seconds", with(func(ev obj) { ev["conversionHappenedAt"] = now.Unix() }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversionHappenedAt :: must be epoch milliseconds, got what looks like seconds"}`},
		{"time as string", with(func(ev obj) { ev["conversionHappenedAt"] = "1697241600000" }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversionHappenedAt :: data type mismatch: JSON string where int64 is required"}`},
		{"91 days old", with(func(ev obj) { ev["conversionHappenedAt"] = now.Add(-91 * 24 * time.Hour).UnixMilli() }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversionHappenedAt :: conversion happened more than 90 days ago"}`},
		{"missing conversion", with(func(ev obj) { delete(ev, "conversion") }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversion :: field is required but not found and has no default value"}`},
		{"bad urn", with(func(ev obj) { ev["conversion"] = "23456" }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversion :: invalid urn, expected urn:lla:llaPartnerConversion:{id}"}`},
		{"unknown field", with(func(ev obj) { ev["conversionhappenedAt"] = 1 }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /conversionhappenedAt :: unrecognized field found but not allowed"}`},
		{"missing eventId", with(func(ev obj) { delete(ev, "eventId") }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /eventId :: field is required but not found and has no default value"}`},
		{"unhashed email", with(func(ev obj) { ids(ev)[0] = obj{"idType": "SHA256_EMAIL", "idValue": "mary@example.com"} }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /user/userIds/0/idValue :: SHA256_EMAIL must be a lowercase hex SHA-256"}`},
		{"email not normalised", with(func(ev obj) { ids(ev)[0] = obj{"idType": "SHA256_EMAIL", "idValue": sha("Mary@Example.com")} }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /user/userIds/0/idValue :: SHA256_EMAIL is the hash of an e-mail that was not trimmed and lowercased"}`},
		{"hashed li_fat_id", with(func(ev obj) {
			ids(ev)[1] = obj{"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": sha("x")}
		}), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /user/userIds/1/idValue :: LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID must be sent as received, not hashed"}`},
		{"unknown idType", with(func(ev obj) { ids(ev)[1] = obj{"idType": "EMAIL", "idValue": maryHash} }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /user/userIds/1/idType :: unknown idType \"EMAIL\""}`},
		{"userInfo without lastName", with(func(ev obj) { ev["user"] = obj{"userInfo": obj{"firstName": "Mary"}} }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /user/userInfo/lastName :: field is required but not found and has no default value"}`},
		{"no user ids", with(func(ev obj) { ev["user"] = obj{"userIds": []any{}} }), headers(), 422,
			`{"status":422,"message":"Index: 1, ERROR :: /user :: at least one userId or userInfo is required"}`},
		{"single event accepted", event(), func() http.Header {
			h := headers()
			h.Set("Linkedin-Version", "202610")
			h.Del("X-Restli-Method")
			return h
		}(), 201, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer()
			w := do(s, "/rest/conversionEvents", tc.body, tc.h)
			if w.Code != tc.status {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
			if tc.want == "" {
				return
			}
			sameJSON(t, w.Body.String(), tc.want)
			if len(s.Events()) != 0 {
				t.Error("a rejected request was recorded")
			}
		})
	}
	// A single event's validation error has no "Index:" prefix.
	s := newServer()
	ev := event()
	ev["conversionHappenedAt"] = now.Unix()
	h := headers()
	h.Del("X-Restli-Method")
	w := do(s, "/rest/conversionEvents", ev, h)
	sameJSON(t, w.Body.String(), `{"status":422,"message":"ERROR :: /conversionHappenedAt :: must be epoch milliseconds, got what looks like seconds"}`)
}

func TestSegments(t *testing.T) {
	s := newServer()
	body := obj{"elements": []any{
		obj{"action": "ADD", "userIds": []any{obj{"idType": "SHA256_EMAIL", "idValue": maryHash}}},
		obj{"action": "ADD", "userIds": []any{obj{"idType": "SHA256_EMAIL", "idValue": sha("bob@example.com")}}},
	}}
	w := do(s, "/rest/dmpSegments/777/users", body, headers())
	sameJSON(t, w.Body.String(), `{"status":404,"message":"DMP segment 777 not found"}`)
	s.AddSegment("777", 1)
	if w := do(s, "/rest/dmpSegments/777/users", body, headers()); w.Code != 404 {
		t.Errorf("new segment: %d", w.Code)
	}
	w = do(s, "/rest/dmpSegments/777/users", body, headers())
	sameJSON(t, w.Body.String(), `{"elements":[{"status":201},{"status":201}]}`)
	rm := obj{"elements": []any{obj{"action": "REMOVE", "userIds": []any{obj{"idType": "SHA256_EMAIL", "idValue": maryHash}}}}}
	do(s, "/rest/dmpSegments/777/users", rm, headers())
	if got := s.Segment("777"); len(got) != 1 || got[0] != sha("bob@example.com") {
		t.Errorf("segment %v", got)
	}
	for _, tc := range []struct {
		name   string
		body   any
		h      http.Header
		status int
		want   string
	}{
		{"no BATCH_CREATE", body, func() http.Header { h := headers(); h.Del("X-Restli-Method"); return h }(), 400,
			`{"status":400,"message":"dmpSegments users require X-RestLi-Method: BATCH_CREATE"}`},
		{"bad action", obj{"elements": []any{obj{"action": "UPSERT", "userIds": []any{obj{"idType": "SHA256_EMAIL", "idValue": maryHash}}}}}, headers(), 422,
			`{"status":422,"message":"Index: 0, ERROR :: /action :: action must be ADD or REMOVE"}`},
		{"unhashed", obj{"elements": []any{obj{"action": "ADD", "userIds": []any{obj{"idType": "SHA256_EMAIL", "idValue": "bob@example.com"}}}}}, headers(), 422,
			`{"status":422,"message":"Index: 0, ERROR :: /userIds/0/idValue :: SHA256_EMAIL must be a lowercase hex SHA-256"}`},
		{"no user ids", obj{"elements": []any{obj{"action": "ADD"}}}, headers(), 422,
			`{"status":422,"message":"Index: 0, ERROR :: /userIds :: field is required but not found and has no default value"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := do(s, "/rest/dmpSegments/777/users", tc.body, tc.h)
			if w.Code != tc.status {
				t.Errorf("status %d", w.Code)
			}
			sameJSON(t, w.Body.String(), tc.want)
		})
	}
}

func TestFaults(t *testing.T) {
	s := linkedintest.Start(linkedintest.Config{Token: token, Now: func() time.Time { return now }})
	defer s.Close()
	s.Inject(linkedintest.Throttled(2*time.Second), linkedintest.ServerError(), linkedintest.Unauthorized(), linkedintest.Sunset())
	want := []struct {
		status int
		ra     string
		body   string
	}{
		{429, "2", `{"status":429,"serviceErrorCode":101,"message":"Resource level throttle APPLICATION DAY limit for calls to this resource is reached."}`},
		{500, "", `{"status":500,"message":"Internal Server Error"}`},
		{401, "", `{"status":401,"serviceErrorCode":65600,"code":"INVALID_ACCESS_TOKEN","message":"Invalid access token"}`},
		{426, "", `{"status":426,"code":"NONEXISTENT_VERSION","message":"Requested version is not active"}`},
	}
	raw, _ := json.Marshal(obj{"elements": []any{event()}})
	for _, w := range want {
		req, _ := http.NewRequest("POST", s.URL()+"/rest/conversionEvents", strings.NewReader(string(raw)))
		req.Header = headers()
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = fmt.Fprint(&b, readAll(resp))
		if resp.StatusCode != w.status || resp.Header.Get("Retry-After") != w.ra {
			t.Errorf("status %d retry-after %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		sameJSON(t, b.String(), w.body)
	}
	if s.Hits() != 4 || len(s.Events()) != 0 {
		t.Errorf("hits %d", s.Hits())
	}
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

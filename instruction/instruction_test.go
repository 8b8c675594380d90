package instruction

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/schemas"
)

func allowDefault(t *testing.T) AllowList {
	t.Helper()
	a, err := ParseAllowList(DefaultAllowedHosts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const full = `{
  "requested_by": "Jane Doe",
  "note": "DPA annex 2",
  "meta": {"access_token": "EAAB-secret",
    "conversions": [{"event": "application", "pixel_id": "123", "event_name": "SubmitApplication"}],
    "audiences": [{"audience_id": "456", "segment": {"preset": "viewed_not_applied", "days": 14}}]},
  "google": {"customer_id": "769-372-9833", "access_token": "ya29-secret", "developer_token": "dev-secret",
    "customer_match_terms_accepted": true,
    "conversions": [{"event": "application", "conversion_action_id": "111"},
                    {"event": "application", "conversion_action_id": "222", "api": "ads_click", "value": {"amount": "1", "currency": "EUR"}}],
    "audiences": [{"user_list_id": "789", "segment": {"preset": "applied"}}]},
  "linkedin": {"access_token": "li-secret",
    "conversions": [{"event": "application", "conversion_rule_id": "urn:lla:llaPartnerConversion:23456"}],
    "audiences": [{"segment_id": "42", "segment": {"include": ["page_view", "apply_click"], "exclude": ["application"]}}]}
}`

func TestParseFull(t *testing.T) {
	s, c, err := Parse([]byte(full), Credentials{}, allowDefault(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.MetaAccessToken != "EAAB-secret" || c.GoogleAccessToken != "ya29-secret" || c.GoogleDevToken != "dev-secret" || c.LinkedInAccessToken != "li-secret" {
		t.Fatalf("credentials %+v", c)
	}
	enc := s.Encode()
	for _, secret := range []string{"EAAB-secret", "ya29-secret", "dev-secret", "li-secret"} {
		if strings.Contains(enc, secret) {
			t.Fatalf("stored spec holds a credential: %s", enc)
		}
	}
	if got := strings.Join(s.CredentialsSet, ","); got != "meta.access_token,google.access_token,google.developer_token,linkedin.access_token" {
		t.Errorf("credentials_set %q", got)
	}
	back, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Platforms()) != 3 {
		t.Fatalf("platforms %v", back.Platforms())
	}
	g := back.Conversions(consent.Google)
	if len(g) != 2 || g[0].API != APIGoogleEvents || g[1].API != APIGoogleAds || g[1].Endpoint != DefaultAdsEndpoint ||
		g[1].Value.Amount != "1" || g[0].Dest.Account != "769-372-9833" {
		t.Fatalf("google conversions %+v", g)
	}
	if g[0].Key() == g[1].Key() {
		t.Errorf("keys collide: %s", g[0].Key())
	}
	m := back.Audiences(consent.Meta)
	if len(m) != 1 || m[0].Days != 14 || len(m[0].Include) != 1 || m[0].Include[0] != schemas.EventPageView ||
		m[0].Exclude[0] != schemas.EventApplication || !m[0].Mentions(schemas.EventApplication) || m[0].Mentions(schemas.EventVacancyEmail) {
		t.Fatalf("meta audiences %+v", m)
	}
	if a := back.Audiences(consent.Google); len(a) != 1 || a[0].Days != DefaultSegmentDays || a[0].Include[0] != schemas.EventApplication {
		t.Fatalf("google audiences %+v", a)
	}
	if l := back.Audiences(consent.LinkedIn); len(l) != 1 || len(l[0].Include) != 2 {
		t.Fatalf("linkedin audiences %+v", l)
	}
	if err := back.Check(allowDefault(t)); err != nil {
		t.Fatal(err)
	}
	narrow, _ := ParseAllowList("graph.facebook.com")
	if err := back.Check(narrow); err == nil {
		t.Fatal("a shrunk allow-list still accepts the google endpoints")
	}
}

func TestParseRefuses(t *testing.T) {
	allow := allowDefault(t)
	cases := []struct{ body, field, msg string }{
		{`{}`, "", "at least one platform"},
		{`{"meta": {"access_token": "x", "conversions": []}}`, "meta", "conversions and/or audiences"},
		{`{"meta": {"conversions": [{"event": "application", "pixel_id": "1", "event_name": "Lead"}]}}`, "meta.access_token", "required"},
		{`{"meta": {"access_token": "x", "endpoint": "https://evil.example.com", "conversions": [{"event": "application", "pixel_id": "1", "event_name": "Lead"}]}}`,
			"meta.endpoint", "allow-list"},
		{`{"meta": {"access_token": "x", "endpoint": "http://graph.facebook.com", "conversions": [{"event": "application", "pixel_id": "1", "event_name": "Lead"}]}}`,
			"meta.endpoint", "https"},
		{`{"meta": {"access_token": "x", "conversions": [{"event": "purchase", "pixel_id": "1", "event_name": "Lead"}]}}`, "meta.conversions[0].event", "unknown event"},
		{`{"meta": {"access_token": "x", "conversions": [{"event": "application", "pixel_id": "abc", "event_name": "Lead"}]}}`, "meta.conversions[0].pixel_id", "numeric"},
		{`{"meta": {"access_token": "x", "audiences": [{"audience_id": "1", "segment": {"include": ["page_view"], "exclude": ["page_view"]}}]}}`, "meta.audiences[0].segment.exclude[0]", "also included"},
		{`{"meta": {"access_token": "x", "audiences": [{"audience_id": "1", "segment": {"preset": "applied", "days": 400}}]}}`, "meta.audiences[0].segment.days", "1 to 180"},
		{`{"google": {"customer_id": "1234567890", "access_token": "x", "audiences": [{"user_list_id": "2", "segment": {"preset": "applied"}}]}}`, "google.customer_match_terms_accepted", "must be true"},
		{`{"google": {"customer_id": "1234567890", "access_token": "x", "conversions": [{"event": "application", "conversion_action_id": "2", "api": "ads_click"}]}}`, "google.developer_token", "required"},
		{`{"linkedin": {"access_token": "x", "conversions": [{"event": "application", "conversion_rule_id": "urn:x:1"}]}}`, "linkedin.conversions[0].conversion_rule_id", "numeric"},
		{`{"meta": {"access_token": "x", "bogus": 1}}`, "bogus", "unknown field"},
		{`{"google": {"customer_id": "12-34", "access_token": "x", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.customer_id", "10 digits"},
		{`{"google": {"customer_id": "12345678901", "access_token": "x", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.customer_id", "10 digits"},
		{`{"google": {"customer_id": "1234-567-890", "access_token": "x", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.customer_id", "10 digits"},
		{`{"google": {"customer_id": "1234567890", "login_customer_id": "42", "access_token": "x", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.login_customer_id", "10 digits"},
		{`{"google": {"customer_id": "123-456-7890", "access_token": "x", "conversions": [{"event": "application", "conversion_action_id": "55-5"}]}}`, "google.conversions[0].conversion_action_id", "numeric"},
		{`{"google": {"customer_id": "123-456-7890", "access_token": "x", "customer_match_terms_accepted": true, "audiences": [{"user_list_id": "12345678901234567890", "segment": {"preset": "applied"}}]}}`, "google.audiences[0].user_list_id", "1 to 19 digits"},
		{`{"meta": {"access_token": "x", "conversions": [{"event": "application", "pixel_id": "123456789012345678901", "event_name": "Lead"}]}}`, "meta.conversions[0].pixel_id", "1 to 20 digits"},
		{`{"linkedin": {"access_token": "x", "audiences": [{"segment_id": "urn:li:dmpSegment:12", "segment": {"preset": "applied"}}]}}`, "linkedin.audiences[0].segment_id", "numeric"},
		{`{"google": {"customer_id": "1234567890", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.access_token", "service_account_key"},
		{`{"google": {"customer_id": "1234567890", "refresh_token": "r", "client_id": "c", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.client_secret", "required"},
		{`{"google": {"customer_id": "1234567890", "client_id": "c", "client_secret": "s", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.refresh_token", "required"},
		{`{"google": {"customer_id": "1234567890", "access_token": "a", "refresh_token": "r", "client_id": "c", "client_secret": "s", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google", "not several"},
		{`{"google": {"customer_id": "1234567890", "service_account_key": {"type": "authorized_user"}, "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.service_account_key", "service_account"},
		{`{"google": {"customer_id": "1234567890", "service_account_key": 12, "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.service_account_key", "JSON key file"},
		{`{"google": {"customer_id": "1234567890", "refresh_token": "r", "client_id": "c", "client_secret": "s", "token_endpoint": "https://evil.example.com/token", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.token_endpoint", "allow-list"},
		{`{"google": {"customer_id": "1234567890", "access_token": "a", "token_endpoint": "https://oauth2.googleapis.com/token", "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`, "google.token_endpoint", "only with"},
		{`{"linkedin": {"refresh_token": "r", "client_secret": "s", "conversions": [{"event": "application", "conversion_rule_id": "1"}]}}`, "linkedin.client_id", "required"},
		{`{"linkedin": {"conversions": [{"event": "application", "conversion_rule_id": "1"}]}}`, "linkedin.access_token", "refresh_token"},
		{`{"meta": {"access_token": "x", "token_expires_at": "next week", "conversions": [{"event": "application", "pixel_id": "1", "event_name": "Lead"}]}}`, "meta.token_expires_at", "RFC 3339"},
	}
	for _, c := range cases {
		_, _, err := Parse([]byte(c.body), Credentials{}, allow)
		var ie *Error
		if !errors.As(err, &ie) || ie.Field != c.field || !strings.Contains(ie.Msg, c.msg) {
			t.Errorf("%s: got %v, want field %q with %q", c.body, err, c.field, c.msg)
		}
	}
}

func TestParseInheritsCredentials(t *testing.T) {
	body := `{"meta": {"conversions": [{"event": "application", "pixel_id": "1", "event_name": "Lead"}]}}`
	_, c, err := Parse([]byte(body), Credentials{MetaAccessToken: "old", LinkedInAccessToken: "unused"}, allowDefault(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.MetaAccessToken != "old" || c.LinkedInAccessToken != "" {
		t.Fatalf("credentials %+v: want meta inherited, linkedin dropped", c)
	}
}

func TestParseRefreshingCredentials(t *testing.T) {
	pk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(pk)
	saKey, _ := json.Marshal(map[string]string{"type": "service_account", "client_email": "fwd@p.iam.gserviceaccount.com",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": "https://evil.example.com/token"})
	body := `{"google": {"customer_id": "1234567890", "refresh_token": "1//rt-secret", "client_id": "cid", "client_secret": "cs-secret",
	    "conversions": [{"event": "application", "conversion_action_id": "2"}]},
	  "linkedin": {"refresh_token": "li-rt-secret", "client_id": "lcid", "client_secret": "lcs-secret", "token_endpoint": "http://127.0.0.1:9/oauth",
	    "conversions": [{"event": "application", "conversion_rule_id": "1"}]},
	  "meta": {"access_token": "EAAB-secret", "token_expires_at": "2027-01-31T12:00:00+01:00",
	    "conversions": [{"event": "application", "pixel_id": "1", "event_name": "Lead"}]}}`
	allow, _ := ParseAllowList(DefaultAllowedHosts + ",127.0.0.1")
	s, c, err := Parse([]byte(body), Credentials{}, allow)
	if err != nil {
		t.Fatal(err)
	}
	want := Credentials{MetaAccessToken: "EAAB-secret", GoogleRefreshToken: "1//rt-secret", GoogleClientID: "cid", GoogleClientSecret: "cs-secret",
		LinkedInRefreshToken: "li-rt-secret", LinkedInClientID: "lcid", LinkedInClientSecret: "lcs-secret"}
	if c != want {
		t.Fatalf("credentials %+v", c)
	}
	enc := s.Encode()
	for _, secret := range []string{"rt-secret", "cs-secret", "lcs-secret", "cid"} {
		if strings.Contains(enc, secret) {
			t.Fatalf("stored spec holds a credential: %s", enc)
		}
	}
	if got := strings.Join(s.CredentialsSet, ","); got != "meta.access_token,google.refresh_token,google.client_id,google.client_secret,linkedin.refresh_token,linkedin.client_id,linkedin.client_secret" {
		t.Errorf("credentials_set %q", got)
	}
	if s.Google.TokenEndpoint != DefaultGoogleTokenEndpoint || s.LinkedIn.TokenEndpoint != "http://127.0.0.1:9/oauth" ||
		s.Meta.TokenExpiresAt != "2027-01-31T11:00:00Z" {
		t.Fatalf("spec %s", enc)
	}
	if err := s.Check(allowDefault(t)); err == nil || !strings.Contains(err.Error(), "127.0.0.1:9") {
		t.Fatalf("a token endpoint off the allow-list passes Check: %v", err)
	}

	// A service account replaces the refresh token it follows; its key's
	// token_uri is not used (the token endpoint is the allow-listed one).
	body = `{"google": {"customer_id": "1234567890", "service_account_key": ` + string(saKey) + `,
	    "conversions": [{"event": "application", "conversion_action_id": "2"}]}}`
	s, c, err = Parse([]byte(body), want, allow)
	if err != nil {
		t.Fatal(err)
	}
	if c.GoogleServiceAccountKey != string(saKey) || c.GoogleRefreshToken != "" || c.GoogleClientSecret != "" || s.Google.TokenEndpoint != DefaultGoogleTokenEndpoint {
		t.Fatalf("credentials %+v, spec %s", c, s.Encode())
	}
	if strings.Contains(s.Encode(), "PRIVATE KEY") || strings.Join(s.CredentialsSet, ",") != "google.service_account_key" {
		t.Fatalf("spec %s", s.Encode())
	}
	// As a string, the key is the same; a version without credentials
	// keeps them.
	quoted, _ := json.Marshal(string(saKey))
	if _, c2, err := Parse([]byte(strings.Replace(body, string(saKey), string(quoted), 1)), Credentials{}, allow); err != nil || c2 != c {
		t.Fatalf("key as a string: %+v %v", c2, err)
	}
	_, c3, err := Parse([]byte(`{"google": {"customer_id": "1234567890", "conversions": [{"event": "application", "conversion_action_id": "3"}]}}`), c, allow)
	if err != nil || c3 != c {
		t.Fatalf("inherited: %+v %v", c3, err)
	}
	// A static access token replaces the refreshing credentials.
	_, c4, err := Parse([]byte(`{"google": {"customer_id": "1234567890", "access_token": "ya29", "conversions": [{"event": "application", "conversion_action_id": "3"}]}}`), want, allow)
	if err != nil || c4 != (Credentials{GoogleAccessToken: "ya29"}) {
		t.Fatalf("access token after refresh token: %+v %v", c4, err)
	}
}

func TestAllowList(t *testing.T) {
	a, err := ParseAllowList("graph.facebook.com, 127.0.0.1:8080,localhost")
	if err != nil {
		t.Fatal(err)
	}
	ok := []string{"https://graph.facebook.com", "https://graph.facebook.com:443/", "http://127.0.0.1:8080", "http://localhost:1234"}
	bad := []string{"http://graph.facebook.com", "https://graph.facebook.com.evil.com", "http://127.0.0.1:8081",
		"https://user:pw@graph.facebook.com", "https://graph.facebook.com/?x=1", "graph.facebook.com", "https://api.linkedin.com"}
	for _, u := range ok {
		if err := a.Check(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range bad {
		if err := a.Check(u); err == nil {
			t.Errorf("%s allowed", u)
		}
	}
	if err := (AllowList{}).Check("https://graph.facebook.com"); err == nil {
		t.Error("empty allow-list allowed a host")
	}
	if _, err := ParseAllowList("https://x/"); err == nil {
		t.Error("URL accepted as host")
	}
}

func TestKey(t *testing.T) {
	var raw [32]byte
	rand.Read(raw[:])
	k, err := ParseKey(base64.StdEncoding.EncodeToString(raw[:]))
	if err != nil || k == nil {
		t.Fatal(err)
	}
	c := Credentials{MetaAccessToken: "EAAB-secret", GoogleDevToken: "dev"}
	aad := AAD("cl_1", "cmp_1", 3)
	sealed, err := k.Seal(c, aad)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "EAAB") {
		t.Fatal("sealed text holds the token")
	}
	got, err := k.Open(sealed, k.ID(), aad)
	if err != nil || got != c {
		t.Fatalf("open: %+v %v", got, err)
	}
	if _, err := k.Open(sealed, k.ID(), AAD("cl_1", "cmp_1", 4)); err == nil {
		t.Fatal("sealed credentials opened for another version")
	}
	rand.Read(raw[:])
	other, _ := ParseKey(base64.RawURLEncoding.EncodeToString(raw[:]))
	if _, err := other.Open(sealed, k.ID(), aad); err == nil || !strings.Contains(err.Error(), "another secrets key") {
		t.Fatalf("other key: %v", err)
	}
	var none *Key
	if _, err := none.Seal(c, aad); !errors.Is(err, ErrNoKey) {
		t.Fatalf("nil key seal: %v", err)
	}
	if s, err := none.Seal(Credentials{}, aad); err != nil || s != "" {
		t.Fatalf("nil key, no credentials: %q %v", s, err)
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString(raw[:16])} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
	if k, err := ParseKey(""); k != nil || err != nil {
		t.Fatalf("empty key: %v %v", k, err)
	}
}

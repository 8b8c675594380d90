package systemtest

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/ingest"
)

// TestForgedHits: a campaign's allowed hosts and signed server-to-server
// endpoint, set through the API, enforced by ingest: hits from other pages
// are refused, applications only arrive signed, a replayed signed request
// counts once, and a rotated secret replaces the old one.
func TestForgedHits(t *testing.T) {
	awayFromMidnight(t, time.Minute)
	a := startApp(t, nil)
	ctx := context.Background()
	cl, token, err := a.Store().CreateClient(ctx, "Guarded Jobs")
	if err != nil {
		t.Fatal(err)
	}
	code, m := apiCall(t, a, "POST", "/api/v1/campaigns", token, `{"name":"G","allowed_hosts":["Jobs.Example.com","*.careers.example.org","jobs.example.com"]}`)
	if code != 201 || strings.Join(toStrings(m["allowed_hosts"]), ",") != "*.careers.example.org,jobs.example.com" || m["signed_endpoint"] != false {
		t.Fatalf("create with allowed hosts: %d %v", code, m)
	}
	id := m["id"].(string)
	for _, bad := range []string{`{"allowed_hosts":["https://jobs.example.com/"]}`, `{"allowed_hosts":["*"]}`, `{"require_signed_applications":true}`} {
		if code, m := apiCall(t, a, "PATCH", "/api/v1/campaigns/"+id, token, bad); code != 400 {
			t.Errorf("patch %s: %d %v, want 400", bad, code, m)
		}
	}
	code, m = apiCall(t, a, "POST", "/api/v1/campaigns/"+id+"/secret", token, "")
	secret, _ := m["secret"].(string)
	if code != 200 || !strings.HasPrefix(secret, "jps_") {
		t.Fatalf("create secret: %d %v", code, m)
	}
	if code, m = apiCall(t, a, "PATCH", "/api/v1/campaigns/"+id, token, `{"require_signed_applications":true}`); code != 200 || m["require_signed_applications"] != true || m["signed_endpoint"] != true {
		t.Fatalf("require signed applications: %d %v", code, m)
	}
	if _, b := rawCall(t, a, "GET", "/api/v1/campaigns/"+id, token, ""); strings.Contains(string(b), secret) {
		t.Fatal("GET campaign shows the secret")
	}
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}

	in := "http://" + a.IngestAddr()
	page := "https://jobs.example.com/job/42"
	if r := hit(t, in, id, "page_view", page); r != "" {
		t.Fatalf("page view from an allowed page: %q", r)
	}
	if r := hit(t, in, id, "page_view", "https://evil.example/job/42"); r != "forbidden_host" {
		t.Fatalf("page view from another page: %q, want forbidden_host", r)
	}
	if r := hit(t, in, id, "application", page); r != "signature_required" {
		t.Fatalf("browser application: %q, want signature_required", r)
	}

	body := `{"events":[{"e":"application","eid":"ats-1","v":"job-42","em":"jane@example.com"}],"consent":{"measurement":"granted"}}`
	if code, b := s2s(t, in, id, secret, body, time.Now().Unix()); code != 202 {
		t.Fatalf("signed application: %d %s", code, b)
	}
	if code, b := s2s(t, in, id, secret, body, time.Now().Unix()); code != 202 { // a replay
		t.Fatalf("replayed signed application: %d %s", code, b)
	}
	if code, _ := s2s(t, in, id, "jps_guess", body, time.Now().Unix()); code != 401 {
		t.Fatalf("application signed with a wrong secret: %d, want 401", code)
	}
	if code, _ := s2s(t, in, id, secret, body, time.Now().Add(-10*time.Minute).Unix()); code != 401 {
		t.Fatalf("application signed 10 minutes ago: %d, want 401", code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := time.Now().UTC()
		r, err := a.Store().CampaignReport(ctx, cl.ID, id, now.AddDate(0, 0, -1), now.AddDate(0, 0, 1))
		if err == nil && r.Totals.PageViews == 1 && r.Totals.Applications == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report %+v (%v): want 1 page view and the signed application once", r.Totals, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A rotated secret replaces the old one.
	_, m = apiCall(t, a, "POST", "/api/v1/campaigns/"+id+"/secret", token, "")
	fresh, _ := m["secret"].(string)
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	body2 := `{"events":[{"e":"application","eid":"ats-2"}]}`
	if code, _ := s2s(t, in, id, secret, body2, time.Now().Unix()); code != 401 {
		t.Errorf("old secret after rotation: %d, want 401", code)
	}
	if code, b := s2s(t, in, id, fresh, body2, time.Now().Unix()); code != 202 {
		t.Errorf("new secret after rotation: %d %s", code, b)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// hit sends a browser hit of event on page and returns the reject reason.
func hit(t *testing.T, ingestURL, campaign, event, page string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", ingestURL+"/p.gif?c="+campaign+"&e="+event+"&u="+page, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get(ingest.RejectHeader)
}

// s2s posts body to /s2s signed with secret at ts.
func s2s(t *testing.T, ingestURL, campaign, secret, body string, ts int64) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", ingestURL+"/s2s", strings.NewReader(body))
	req.Header.Set(ingest.CampaignHeader, campaign)
	req.Header.Set(ingest.TimestampHeader, strconv.FormatInt(ts, 10))
	req.Header.Set(ingest.SignatureHeader, ingest.Sign([]byte(secret), ts, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

package systemtest

import (
	"context"
	"encoding/json"
	"github.com/jobpixel/jobpixel/app"
	"io"
	"net/http"
	"strings"
	"testing"
)

// apiCall sends a request to the API and decodes its JSON answer.
func apiCall(t *testing.T, a *app.App, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	code, b := rawCall(t, a, method, path, token, body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: non-JSON answer %q", method, path, b)
	}
	return code, m
}

func TestCampaignAPI(t *testing.T) {
	a := startApp(t, func(c *app.Config) { c.Roles = "api" })
	ctx := context.Background()
	_, token, err := a.Store().CreateClient(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	_, otherToken, _ := a.Store().CreateClient(ctx, "Other")

	code, m := apiCall(t, a, "POST", "/api/v1/campaigns", token, `{"name":"Nurses Q4","sensitive":true}`)
	if code != 201 || m["consentless"] != "count" || m["sensitive"] != true {
		t.Fatalf("create: %d %v", code, m)
	}
	id := m["id"].(string)
	for _, bad := range []struct{ body, want string }{
		{`{"name":""}`, "name"},
		{`{"name":"x","consentless":"maybe"}`, "consentless"},
		{`{"name":"x","color":"red"}`, "unknown field"},
		{`{}`, "name"},
	} {
		code, m := apiCall(t, a, "POST", "/api/v1/campaigns", token, bad.body)
		if code != 400 || !strings.Contains(m["error"].(string), bad.want) {
			t.Errorf("create %s: %d %v, want 400 about %s", bad.body, code, m, bad.want)
		}
	}
	code, m = apiCall(t, a, "PATCH", "/api/v1/campaigns/"+id, token, `{"consentless":"drop"}`)
	if code != 200 || m["consentless"] != "drop" || m["name"] != "Nurses Q4" {
		t.Fatalf("patch: %d %v", code, m)
	}
	code, m = apiCall(t, a, "GET", "/api/v1/campaigns/"+id, token, "")
	if code != 200 || m["consentless"] != "drop" || m["sensitive"] != true {
		t.Fatalf("get after patch: %d %v", code, m)
	}
	code, m = apiCall(t, a, "GET", "/api/v1/campaigns", token, "")
	if list, _ := m["campaigns"].([]any); code != 200 || len(list) != 1 {
		t.Fatalf("list: %d %v", code, m)
	}
	// Another client sees nothing of it.
	if code, _ := apiCall(t, a, "GET", "/api/v1/campaigns/"+id, otherToken, ""); code != 404 {
		t.Errorf("other client get: %d", code)
	}
	if code, _ := apiCall(t, a, "PATCH", "/api/v1/campaigns/"+id, otherToken, `{"consentless":"count"}`); code != 404 {
		t.Errorf("other client patch: %d", code)
	}
	if code, m := apiCall(t, a, "GET", "/api/v1/campaigns", otherToken, ""); code != 200 || len(m["campaigns"].([]any)) != 0 {
		t.Errorf("other client list: %d %v", code, m)
	}
	if code, _ := apiCall(t, a, "GET", "/api/v1/campaigns", "", ""); code != 401 {
		t.Errorf("no token list: %d", code)
	}
}

// rawCall sends a request to the API and returns the status and body.
func rawCall(t *testing.T, a *app.App, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.APIAddr()+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

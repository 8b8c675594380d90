package systemtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
)

// TestClientEventIDDedup: a page that sends the same event twice (a
// retried batch after a 503, a beacon retried as a pixel) is counted once.
func TestClientEventIDDedup(t *testing.T) {
	a := startApp(t, nil)
	ctx := context.Background()
	st := a.Store()
	c, token, _ := st.CreateClient(ctx, "Acme")
	camp, _ := st.CreateCampaign(ctx, c.ID, "x", store.CampaignOptions{})
	other, _ := st.CreateCampaign(ctx, c.ID, "y", store.CampaignOptions{})
	if err := a.RefreshCampaigns(ctx); err != nil {
		t.Fatal(err)
	}
	send := func(method, path, body string) {
		req, _ := http.NewRequest(method, "http://"+a.IngestAddr()+path, strings.NewReader(body))
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
		req.Header.Set("X-Forwarded-For", "203.0.113.5")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	batch := fmt.Sprintf(`{"c":%q,"events":[{"e":"page_view","eid":"a1"},{"e":"apply_click","eid":"a2"},{"e":"page_view"}]}`, camp.ID)
	send("POST", "/e", batch)
	send("POST", "/e", batch)                                   // retried: a1 and a2 again, plus one more eid-less page view
	send("GET", "/p.gif?c="+camp.ID+"&e=page_view&eid=a1", "")  // the beacon's pixel fallback
	send("GET", "/p.gif?c="+other.ID+"&e=page_view&eid=a1", "") // same eid, other campaign: counts
	want := func(id string, pv, ac uint64) bool {
		_, r := getReport(t, a, token, id)
		return r.Totals.PageViews == pv && r.Totals.ApplyClicks == ac
	}
	deadline := time.Now().Add(20 * time.Second)
	for !(want(camp.ID, 3, 1) && want(other.ID, 1, 0)) {
		if time.Now().After(deadline) {
			_, r := getReport(t, a, token, camp.ID)
			t.Fatalf("totals %+v, want 3 page views (a1 once, two without eid) and 1 apply click", r.Totals)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if !want(camp.ID, 3, 1) {
		t.Fatal("duplicates arrived late")
	}
}

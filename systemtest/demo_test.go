package systemtest

import (
	"context"
	"encoding/json"
	"github.com/jobpixel/jobpixel/app"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoInstructions runs the curl lines `make run` prints: the hit is
// in the report within 5 seconds, and a second start reuses the demo.
func TestDemoInstructions(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	dir := t.TempDir()
	a := startApp(t, func(c *app.Config) { c.Demo = true; c.DataDir = dir })
	var out strings.Builder
	a.PrintDemo(&out)
	var curls []string
	for _, line := range strings.Split(out.String(), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "curl ") {
			curls = append(curls, l)
		}
	}
	if len(curls) != 2 || !strings.Contains(out.String(), "/demo/vacancy?c="+a.Demo.Campaign) {
		t.Fatalf("printed instructions:\n%s", out.String())
	}
	env, err := os.ReadFile(filepath.Join(dir, "demo.env"))
	if err != nil || !strings.Contains(string(env), "JOBPIXEL_DEMO_CAMPAIGN="+a.Demo.Campaign) || !strings.Contains(string(env), "JOBPIXEL_DEMO_TOKEN="+a.Demo.Token) {
		t.Fatalf("demo.env = %q, %v", env, err)
	}
	sent := time.Now()
	if b, err := exec.Command("sh", "-c", curls[0]).CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "200" {
		t.Fatalf("hit: %s %v", b, err)
	}
	for {
		b, err := exec.Command("sh", "-c", curls[1]).Output()
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Totals struct {
				PageViews int `json:"page_views"`
			}
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("report %s: %v", b, err)
		}
		if r.Totals.PageViews == 1 {
			break
		}
		if time.Since(sent) > 5*time.Second {
			t.Fatalf("the hit is not in the report after 5 s: %s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A second start with the same data directory keeps the demo.
	d, err := app.EnsureDemo(context.Background(), a.Store(), dir)
	if err != nil || *d != *a.Demo {
		t.Fatalf("second start: %+v %v, want %+v", d, err, a.Demo)
	}
}

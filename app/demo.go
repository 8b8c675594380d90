package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jobpixel/jobpixel/internal/store"
)

// Demo is the demo client's campaign and API token.
type Demo struct {
	Campaign string
	Token    string
}

// EnsureDemo reuses the demo campaign recorded in dataDir/demo.env when it
// still exists, or creates a demo client and campaign and records them.
func EnsureDemo(ctx context.Context, st *store.Store, dataDir string) (*Demo, error) {
	path := filepath.Join(dataDir, "demo.env")
	if d, err := readDemo(path); err == nil {
		c, err := st.ClientByToken(ctx, d.Token)
		if err == nil {
			if _, err := st.ClientCampaign(ctx, c.ID, d.Campaign); err == nil {
				return d, nil
			}
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	c, token, err := st.CreateClient(ctx, "Demo Recruitment Agency")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	camp, err := st.CreateCampaign(ctx, c.ID, "Demo: Senior Go Engineer", store.CampaignOptions{})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d := &Demo{Campaign: camp.ID, Token: token}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	body := fmt.Sprintf("JOBPIXEL_DEMO_CAMPAIGN=%s\nJOBPIXEL_DEMO_TOKEN=%s\n", d.Campaign, d.Token)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return d, nil
}

func readDemo(path string) (*Demo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &Demo{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "JOBPIXEL_DEMO_CAMPAIGN":
			d.Campaign = v
		case "JOBPIXEL_DEMO_TOKEN":
			d.Token = v
		}
	}
	if d.Campaign == "" || d.Token == "" {
		return nil, errors.New("incomplete demo.env")
	}
	return d, sc.Err()
}

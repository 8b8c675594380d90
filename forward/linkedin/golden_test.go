package linkedin_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/golden"
	"github.com/jobpixel/jobpixel/forward/linkedin"
)

func TestGolden(t *testing.T) {
	rec := golden.Start(t, 200, `{"elements":[{"status":201},{"status":201}]}`)
	c := &linkedin.Client{BaseURL: rec.URL, Version: "202609", Now: func() time.Time { return t0 }}
	in := conversions(2)
	in[0].Value = forward.Value{Amount: "1500.0", Currency: "EUR"}
	in[1].LiFatID = ""
	if _, err := c.SendConversions(context.Background(), forward.Destination{ID: "23456", Token: "TOKEN"}, in); err != nil {
		t.Fatal(err)
	}
	seg := forward.Destination{ID: "777", Token: "TOKEN"}
	if _, err := c.AddMembers(context.Background(), seg, members(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveMembers(context.Background(), seg, members(2)); err != nil {
		t.Fatal(err)
	}
	rec.Check(t, "requests.golden.json")
}

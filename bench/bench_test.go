package main

import (
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/schemas"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := summarize(d)
	if l.P50 != 50 || l.P95 != 95 || l.P99 != 99 || l.Max != 100 || l.N != 100 {
		t.Fatalf("summarize = %+v", l)
	}
	if l := summarize(nil); l.N != 0 || l.P99 != 0 {
		t.Fatalf("empty = %+v", l)
	}
}

func TestFigure(t *testing.T) {
	f := newFigure("x", "req/s", []float64{30, 10, 20})
	if f.Median != 20 || f.Min != 10 || f.Max != 30 || f.Spread != 1 || f.Values[0] != 30 {
		t.Fatalf("figure = %+v", f)
	}
	if f := newFigure("x", "", []float64{1, 3}); f.Median != 2 {
		t.Fatalf("even median = %v", f.Median)
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkPixel 	    5196	     23214 ns/op	    1385 B/op	      37 allocs/op
BenchmarkPixel 	   24307	      4610 ns/op	       0 B/op	       0 allocs/op
BenchmarkPixel 	   10000	     13106 ns/op	       0 B/op	       0 allocs/op
BenchmarkAppend-2 	 1000000	       126.9 ns/op	       0 B/op	       0 allocs/op
PASS`
	bs := parseBench("./ingest", out)
	if len(bs) != 2 || bs[0].Name != "BenchmarkPixel" || bs[0].NsPerOp.Median != 13106 || bs[0].AllocsPerOp != 0 ||
		len(bs[0].NsPerOp.Values) != 3 || bs[1].Name != "BenchmarkAppend" || bs[1].NsPerOp.Median != 126.9 {
		t.Fatalf("parseBench = %+v", bs)
	}
}

// The raw baseline finds a message's row by the index in its id; the
// encoded hit must carry it where indexOf looks.
func TestHitGenIndex(t *testing.T) {
	g := newHitGen([]string{"c1", "c2"}, "cl_1", 1_700_000_000_000)
	for _, i := range []uint64{0, 1, 511, 512, 1<<32 + 5} {
		var h schemas.Hit
		g.fill(i, &h)
		b := h.Append(nil)
		got, ok := indexOf(b)
		if !ok || got != i {
			t.Fatalf("indexOf(hit %d) = %d, %v", i, got, ok)
		}
		var d schemas.Hit
		if err := d.Decode(b); err != nil {
			t.Fatal(err)
		}
		row := g.row(i, 3, 42)
		if row.ID != d.ID || row.Visitor != d.Visitor || row.IP != d.IP || row.CampaignID != string(d.Campaign) ||
			row.URL != string(d.URL) || row.Received.UnixMilli() != d.ReceivedMs || row.Event != d.Event.String() {
			t.Fatalf("row %d does not match its hit: %+v vs %+v", i, row, d)
		}
	}
	if _, ok := indexOf([]byte("short")); ok {
		t.Fatal("indexOf accepted garbage")
	}
}

func TestFmtNum(t *testing.T) {
	for v, want := range map[float64]string{1234567: "1,234,567", 999: "999", 12.345: "12.3", 1.234: "1.23", 0.1234: "0.123", 0: "0", -4500: "-4,500"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestQueryParam(t *testing.T) {
	u := []byte("https://x/j?utm_source=news&utm_medium=mail#f")
	if string(queryParam(u, "utm_source")) != "news" || string(queryParam(u, "utm_medium")) != "mail" || queryParam(u, "utm_campaign") != nil {
		t.Fatal("queryParam")
	}
}

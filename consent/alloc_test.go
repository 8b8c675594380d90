package consent

import (
	"encoding/json"
	"os"
	"testing"
)

// bigRealString is the largest fixture: 726 vendor consents, 3 x 1098
// restricted vendors.
func bigRealString(tb testing.TB) string {
	raw, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		tb.Fatal(err)
	}
	var fx fixtureFile
	if err := json.Unmarshal(raw, &fx); err != nil {
		tb.Fatal(err)
	}
	for _, c := range fx.Cases {
		if c.Name == "cmp14-full" {
			return c.TC
		}
	}
	tb.Fatal("fixture cmp14-full missing")
	return ""
}

// TestZeroAlloc proves that the per-hit path allocates nothing, for valid
// and malformed input alike.
func TestZeroAlloc(t *testing.T) {
	strs := [][]byte{
		[]byte(publicFixture), []byte(realAllGranted), []byte(realGoogleOnly), []byte(bigRealString(t)),
		[]byte(tcAll), []byte(tcGoogleP7RequireConsent), []byte(tcMalformed), []byte(tcAll + ".gAAA"),
		[]byte("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"), []byte(tcAll + "="), nil,
	}
	for _, s := range strs {
		if n := testing.AllocsPerRun(100, func() { _, _ = Summarize(s, testVendors) }); n != 0 {
			t.Errorf("Summarize(%.30q...): %v allocs", s, n)
		}
		sig := Signals{
			GDPR: GDPRApplies, TCF: s, GCS: GCS{Granted, Denied},
			AdUserData: Granted, AdPersonalization: Denied, GPC: len(s)%2 == 0,
			Explicit: Explicit{Measurement: Granted},
		}
		var d Decision
		if n := testing.AllocsPerRun(100, func() {
			d = Resolve(&sig, testVendors)
			_ = d.TCFError()
			_ = d.AllowsAds(Google) || d.AllowsAudience(Meta)
		}); n != 0 {
			t.Errorf("Resolve(%.30q...): %v allocs", s, n)
		}
	}
	inputs := [][]byte{[]byte("G111"), []byte("G1x1"), []byte("granted"), []byte("DENIED"), []byte("bogus"), []byte("1"), nil}
	for _, b := range inputs {
		if n := testing.AllocsPerRun(100, func() {
			_, _ = ParseGCS(b)
			_, _ = ParseState(b)
			_, _ = ParseGDPR(b)
		}); n != 0 {
			t.Errorf("mode parsers(%q): %v allocs", b, n)
		}
	}
}

func BenchmarkSummarize(b *testing.B) {
	for _, bc := range []struct{ name, tc string }{
		{"v22-small", realAllGranted},
		{"v22-segments", realGoogleOnly},
		{"large-1098-vendors", bigRealString(b)},
		{"malformed", tcMalformed},
	} {
		s := []byte(bc.tc)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(s)))
			for range b.N {
				if _, err := Summarize(s, testVendors); err != nil && bc.name != "malformed" {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkResolve(b *testing.B) {
	sig := Signals{GDPR: GDPRApplies, TCF: []byte(realAllGranted), GCS: GCS{Granted, Granted},
		AdUserData: Granted, AdPersonalization: Granted, Explicit: Explicit{Measurement: Granted}}
	b.ReportAllocs()
	for range b.N {
		if d := Resolve(&sig, testVendors); !d.AllowsAds(Google) {
			b.Fatal(d)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct{ name, tc string }{
		{"v22-small", realAllGranted},
		{"large-1098-vendors", bigRealString(b)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.tc)))
			for range b.N {
				if _, err := Parse(bc.tc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseGCS(b *testing.B) {
	in := []byte("G101")
	b.ReportAllocs()
	for range b.N {
		if _, err := ParseGCS(in); err != nil {
			b.Fatal(err)
		}
	}
}

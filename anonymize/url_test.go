package anonymize

import (
	"bytes"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	f := func(raw, want string, opts *URLOptions) {
		t.Helper()
		got := string(URL([]byte("pre|"), []byte(raw), opts))
		if got != "pre|"+want {
			t.Errorf("URL(%q)\n got %q\nwant %q", raw, strings.TrimPrefix(got, "pre|"), want)
		}
		if again := string(URL(nil, []byte(want), opts)); again != want {
			t.Errorf("URL not idempotent on %q: %q", want, again)
		}
	}
	ads := &URLOptions{KeepClickIDs: true}

	// Kept byte for byte.
	f("https://jobs.example.com/vacancies/4521879-senior-go-engineer?ref=linkedin&q=go%20dev",
		"https://jobs.example.com/vacancies/4521879-senior-go-engineer?ref=linkedin&q=go%20dev", nil)
	f("https://Example.COM:8443/a/b;p=1?x=1&Y=%2F", "https://Example.COM:8443/a/b;p=1?x=1&Y=%2F", nil)
	f("/relative/path?page=2", "/relative/path?page=2", nil)
	f("", "", nil)
	f("https://www.google.com/maps/@52.37,4.89,15z", "https://www.google.com/maps/@52.37,4.89,15z", nil)
	f("https://x.example/?t=1700000000000&job=12345678", "https://x.example/?t=1700000000000&job=12345678", nil)
	f("https://x.example/posted/2024-01-15/", "https://x.example/posted/2024-01-15/", nil)

	// Fragment and userinfo.
	f("https://x.example/a#jane@example.com", "https://x.example/a", nil)
	f("https://user:p%40ss@x.example/a", "https://x.example/a", nil)
	f("//jane@x.example/", "//x.example/", nil)
	f("https://a@b@x.example/", "https://x.example/", nil)
	f("https://x.example?#frag", "https://x.example", nil)

	// E-mail addresses anywhere.
	f("https://x.example/u/jane.doe@example.com/profile", "https://x.example/u/(email)/profile", nil)
	f("https://x.example/apply?ref=jane.doe%40example.com&step=2", "https://x.example/apply?ref=(email)&step=2", nil)
	f("https://x.example/apply?ref=jane%2Edoe%40example%2Ecom", "https://x.example/apply?ref=(email)", nil)
	f("https://x.example/?next=%2Fu%2Fa%40b.co%3Fx%3D1", "https://x.example/?next=%2Fu%2F(email)%3Fx%3D1", nil)
	f("mailto:jane@example.com", "mailto:(email)", nil)
	f("https://x.example/?a@b.c=1", "https://x.example/", nil) // name scrubbed to (email): denied
	f("https://jane%40example.com/", "https://(email)/", nil)
	f("https://x.example/a@b@c.d", "https://x.example/(email)@c.d", nil)

	// Phone numbers.
	f("https://x.example/call/+31612345678", "https://x.example/call/(phone)", nil)
	f("https://x.example/c?n=%2B1%20(555)%20987-6543", "https://x.example/c?n=(phone)", nil)
	f("https://x.example/c?n=+31+6+1234+5678", "https://x.example/c?n=(phone)", nil)
	f("https://x.example/c?n=0612345678", "https://x.example/c?n=(phone)", nil)
	f("https://x.example/c/555-987-6543", "https://x.example/c/(phone)", nil)
	f("https://x.example/c/0044-20-7946-0958", "https://x.example/c/(phone)", nil)
	f("https://x.example/c?n=5559876543", "https://x.example/c?n=5559876543", nil)
	f("https://x.example/c?n=5559876543", "https://x.example/c?n=(phone)", &URLOptions{AllDigitRuns: true})
	f("https://x.example/job/4521879", "https://x.example/job/(phone)", &URLOptions{AllDigitRuns: true})
	f("https://x.example/id/000012345678", "https://x.example/id/000012345678", nil) // zero-padded id
	f("https://x.example/c?n=0612345678%200687654321", "https://x.example/c?n=(phone)", nil)

	// Deny-list.
	f("https://x.example/apply?job=42&email=x&First_Name=Jane&lastName=Doe&PHONE=1&step=2",
		"https://x.example/apply?job=42&step=2", nil)
	f("https://x.example/?user%5Bemail%5D=x&contact_email=y&billingPhone=z&access_token=t&sid=s",
		"https://x.example/", nil)
	f("https://x.example/?a=1&&b=2&", "https://x.example/?a=1&b=2", nil)
	f("https://x.example/?session=1", "https://x.example/", nil)
	f("https://x.example/?q=go&location=berlin&city=berlin", "https://x.example/?q=go&location=berlin&city=berlin", nil)
	f("https://x.example/?ref=1&vacancy=2", "https://x.example/?vacancy=2", &URLOptions{Deny: []string{"REF"}})

	// utm_* always kept (values scrubbed); click ids need ad consent.
	utm := "https://x.example/?utm_source=linkedin&utm_medium=cpc&utm_campaign=spring_2024&utm_email=1"
	f(utm, utm, nil)
	f("https://x.example/?utm_term=jane@example.com", "https://x.example/?utm_term=(email)", nil)
	clicks := "https://x.example/?gclid=Cj0KCQiA-0612345678&fbclid=IwAR2_xyz&li_fat_id=9f1c-55&msclkid=a&ttclid=b&dclid=c&gbraid=d&wbraid=e&GCLID=f"
	f(clicks, "https://x.example/", nil)
	f(clicks, clicks, ads)
	f("https://x.example/?gclid=a@b.c&x=1", "https://x.example/?gclid=(email)&x=1", ads)
	f("https://x.example/?gclid=a@b.c&x=1", "https://x.example/?x=1", nil)
}

func TestTracking(t *testing.T) {
	raw := []byte("https://x.example/?UTM_Source=linked%20in&utm_medium=cpc&utm_campaign=&utm_term&utm_source=second&gclid=G1&fbclid=F&li_fat_id=L&wbraid=W&gbraid=B&msclkid=M&ttclid=T&dclid=D#utm_content=frag")
	var tr Tracking
	tr.Parse(raw)
	check := func(name string, got []byte, want string, isNil bool) {
		t.Helper()
		if isNil != (got == nil) || string(got) != want {
			t.Errorf("%s = %q (nil %v), want %q (nil %v)", name, got, got == nil, want, isNil)
		}
	}
	check("UTMSource", tr.UTMSource, "linked%20in", false)
	check("UTMMedium", tr.UTMMedium, "cpc", false)
	check("UTMCampaign", tr.UTMCampaign, "", false)
	check("UTMTerm", tr.UTMTerm, "", false)
	check("UTMContent", tr.UTMContent, "", true)
	check("Gclid", tr.Gclid, "G1", false)
	check("Fbclid", tr.Fbclid, "F", false)
	check("LiFatID", tr.LiFatID, "L", false)
	check("Wbraid", tr.Wbraid, "W", false)
	check("Gbraid", tr.Gbraid, "B", false)
	check("Msclkid", tr.Msclkid, "M", false)
	check("Ttclid", tr.Ttclid, "T", false)
	check("Dclid", tr.Dclid, "D", false)
	if got := Unescape(nil, tr.UTMSource); string(got) != "linked in" {
		t.Errorf("Unescape = %q", got)
	}
	if got := Unescape(nil, []byte("a+b%2Bc%zz%4")); string(got) != "a b+c%zz%4" {
		t.Errorf("Unescape = %q", got)
	}
	tr.Parse([]byte("https://x.example/no-query"))
	if tr.UTMSource != nil || tr.Gclid != nil {
		t.Errorf("Parse without query left %+v", tr)
	}
}

var benchURL = []byte("https://jobs.example.com/vacancies/4521879-senior-go-engineer?utm_source=linkedin&utm_medium=cpc&utm_campaign=spring&gclid=Cj0KCQiA5rGuBhCnARIsAN11vgRk&email=jane.doe%40example.com&ref=home#apply")

func TestURLAllocs(t *testing.T) {
	dst := make([]byte, 0, 3*len(benchURL))
	opts := &URLOptions{Deny: []string{"ref"}}
	var tr Tracking
	if n := testing.AllocsPerRun(1000, func() {
		out := URL(dst[:0], benchURL, opts)
		tr.Parse(out)
	}); n != 0 {
		t.Fatalf("URL+Parse allocate %v times per call", n)
	}
	// Worst case growth stays within the documented 3*len(raw).
	worst := bytes.Repeat([]byte("a@b "), 100)
	if out := URL(nil, worst, nil); len(out) > 3*len(worst) {
		t.Fatalf("output %d bytes for %d input bytes", len(out), len(worst))
	}
}

func BenchmarkURL(b *testing.B) {
	dst := make([]byte, 0, 3*len(benchURL))
	b.ReportAllocs()
	b.SetBytes(int64(len(benchURL)))
	for b.Loop() {
		dst = URL(dst[:0], benchURL, nil)
	}
}

func BenchmarkTrackingParse(b *testing.B) {
	var tr Tracking
	b.ReportAllocs()
	for b.Loop() {
		tr.Parse(benchURL)
	}
}

package anonymize

import (
	"bytes"
	"testing"
)

// hasEmail reports whether s contains an address as URL defines it: a
// local-part character, '@' (possibly %40) and a domain character, with
// escapes decoded once.
func hasEmail(s []byte) bool {
	var prev byte
	prevLocal := false
	for i := 0; i < len(s); {
		c, n := at(s, i)
		if c == '@' && prevLocal && i+n < len(s) {
			if d, _ := at(s, i+n); charClass[d]&clDomain != 0 {
				return true
			}
		}
		prev = c
		prevLocal = charClass[prev]&clLocal != 0
		i += n
	}
	return false
}

func FuzzURL(f *testing.F) {
	for _, s := range []string{
		"https://user:pw@jobs.example.com/a/jane@example.com/b?email=x&utm_source=y&gclid=z&q=%2B31%206%2012345678#frag",
		"//a@b@c/%40x.y?a%40b.c=1&&name=&Phone=1",
		"mailto:a@b",
		"/p/0612345678?n=+31+6+1234+5678&id=4521879",
		"?x=(555) 987-6543&y=12(+31612345678",
		"https://x/?li_fat_id=a%40b&utm_term=1%40x&user%5Bemail%5D=1",
		"a%4",
		"%",
		"x@%",
	} {
		f.Add(s, false, false)
		f.Add(s, true, true)
	}
	f.Fuzz(func(t *testing.T, raw string, keepClicks, allDigits bool) {
		opts := &URLOptions{KeepClickIDs: keepClicks, AllDigitRuns: allDigits, Deny: []string{"ref"}}
		out := URL(nil, []byte(raw), opts)
		if len(out) > 3*len(raw) {
			t.Fatalf("URL(%q) grew to %d bytes", raw, len(out))
		}
		if hasEmail(out) {
			t.Fatalf("URL(%q) = %q still holds an e-mail address", raw, out)
		}
		if bytes.IndexByte(out, '#') >= 0 {
			t.Fatalf("URL(%q) = %q keeps a fragment", raw, out)
		}
		if again := URL(nil, out, opts); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n raw  %q\n once %q\n twice %q", raw, out, again)
		}
		i := bytes.IndexByte(out, '?')
		if i < 0 {
			return
		}
		q := out[i+1:]
		if len(q) == 0 {
			t.Fatalf("URL(%q) = %q leaves an empty query", raw, out)
		}
		for _, p := range bytes.Split(q, []byte{'&'}) {
			if len(p) == 0 {
				t.Fatalf("URL(%q) = %q leaves an empty parameter", raw, out)
			}
			name, _, _ := bytes.Cut(p, []byte{'='})
			switch paramKind(name, opts) {
			case paramDeny:
				t.Fatalf("URL(%q) = %q keeps denied parameter %q", raw, out, name)
			case paramClickID:
				if !keepClicks {
					t.Fatalf("URL(%q) = %q keeps click id %q without consent", raw, out, name)
				}
			}
		}
		var tr Tracking
		tr.Parse(out)
		if !keepClicks && (tr.Gclid != nil || tr.Fbclid != nil || tr.LiFatID != nil) {
			t.Fatalf("Tracking of %q has click ids", out)
		}
	})
}

package anonymize

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

type hashFunc func(dst, in []byte) ([]byte, bool)

func checkHash(t *testing.T, name string, fn hashFunc, in, want string) {
	t.Helper()
	prefix := []byte("pre:")
	got, ok := fn(prefix, []byte(in))
	if want == "" {
		if ok || string(got) != "pre:" {
			t.Errorf("%s(%q) = %q, %v; want rejection with dst unchanged", name, in, got, ok)
		}
		return
	}
	if !ok || string(got) != "pre:"+want {
		t.Errorf("%s(%q) = %q, %v; want %q", name, in, got, ok, want)
	}
}

func TestPlatformVectors(t *testing.T) {
	// From docs/platforms.md.
	checkHash(t, "EmailMeta", EmailMeta, "mary@example.com",
		"f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79")
	checkHash(t, "EmailMeta", EmailMeta, "  Mary@Example.COM \n",
		"f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79")
	checkHash(t, "EmailGoogle", EmailGoogle, "cloudy.sanfrancisco+shopping@gmail.com",
		"223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4")
	checkHash(t, "EmailGoogle", EmailGoogle, " Cloudy.SanFrancisco+Shopping @ GMAIL.com ",
		"223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4")
}

func TestEmailMeta(t *testing.T) {
	f := func(in, normalised string) {
		t.Helper()
		want := ""
		if normalised != "" {
			want = sha(normalised)
		}
		checkHash(t, "EmailMeta", EmailMeta, in, want)
	}
	f("John.Doe+jobs@Mail.Example.co.uk", "john.doe+jobs@mail.example.co.uk")
	f("a_b-c@x-y.z", "a_b-c@x-y.z")
	f("a@b..", "a@b..") // the pattern allows it
	f("", "")
	f("   ", "")
	f("no-at.example.com", "")
	f("@example.com", "")
	f("a@example", "")
	f("a@.example.com", "")
	f("a@example.", "")
	f("a@b@example.com", "")
	f("jo hn@example.com", "")
	f("jöhn@example.com", "")
	f("john@exa_mple.com", "")
	f("user@[192.0.2.1]", "")
	f(strings.Repeat("a", 250)+"@b.co", "")
	// Already hashed: passes through lowercased.
	h := sha("mary@example.com")
	checkHash(t, "EmailMeta", EmailMeta, "  "+strings.ToUpper(h)+" ", h)
}

func TestEmailGoogle(t *testing.T) {
	f := func(in, normalised string) {
		t.Helper()
		want := ""
		if normalised != "" {
			want = sha(normalised)
		}
		checkHash(t, "EmailGoogle", EmailGoogle, in, want)
	}
	f("Jane.Doe+News@Example.com", "jane.doe+news@example.com") // dots and + kept
	f("jane.doe@googlemail.com", "janedoe@googlemail.com")
	f("j.a.n.e+x+y@gmail.com", "jane@gmail.com")
	f("jane@gmail.com.evil.example", "jane@gmail.com.evil.example")
	f("jane\t.doe @\u00a0example.org", "jane.doe@example.org")
	f("Jürgen@Bücher.DE", "jürgen@bücher.de")
	f("+tag@gmail.com", "")
	f("...@gmail.com", "")
	f("a@b", "")
	f("a@b.", "")
	f("a@.b", "")
	f("a@@b.com", "")
	f("a\x00@b.com", "")
	f("a\xff@b.com", "")
	f("", "")
}

func TestHashAllocs(t *testing.T) {
	dst := make([]byte, 0, 64)
	inputs := []struct {
		fn hashFunc
		in []byte
	}{
		{EmailMeta, []byte(" Mary@Example.com ")},
		{EmailGoogle, []byte("cloudy.sanfrancisco+shopping@gmail.com")},
		{EmailGoogle, []byte("Jürgen@Bücher.de")},
	}
	for _, c := range inputs {
		if n := testing.AllocsPerRun(1000, func() {
			if _, ok := c.fn(dst[:0], c.in); !ok {
				panic("rejected")
			}
		}); n != 0 {
			t.Errorf("hashing %q allocates %v times", c.in, n)
		}
	}
}

// Reference implementations: straightforward, allocating code written from
// platforms.md, for differential fuzzing.

var metaEmailRE = regexp.MustCompile(`^[a-z0-9_.+-]+@[a-z0-9-]+\.[a-z0-9-.]+$`)

func emailMetaRef(in string) (string, bool) {
	s := strings.TrimSpace(in)
	if len(s) == 64 {
		if _, err := hex.DecodeString(s); err == nil {
			return strings.ToLower(s), true
		}
	}
	// ASCII lowercase only: Meta's pattern rejects anything else anyway.
	s = strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 32
		}
		return r
	}, s)
	if len(s) > MaxEmailLen || !metaEmailRE.MatchString(s) {
		return "", false
	}
	return sha(s), true
}

func emailGoogleRef(in string) (string, bool) {
	if !utf8.ValidString(in) {
		return "", false
	}
	var b strings.Builder
	for _, r := range in {
		switch {
		case unicode.IsSpace(r):
			continue
		case unicode.IsControl(r):
			return "", false
		}
		b.WriteRune(unicode.ToLower(r))
	}
	s := b.String()
	if len(s) > MaxEmailLen {
		return "", false
	}
	if len(s) == 64 {
		if _, err := hex.DecodeString(s); err == nil {
			return s, true
		}
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || strings.Contains(domain, "@") {
		return "", false
	}
	if i := strings.IndexByte(domain, '.'); i <= 0 || strings.HasSuffix(domain, ".") {
		return "", false
	}
	if domain == "gmail.com" || domain == "googlemail.com" {
		local, _, _ = strings.Cut(local, "+")
		local = strings.ReplaceAll(local, ".", "")
		if local == "" {
			return "", false
		}
	}
	return sha(local + "@" + domain), true
}

func checkRef(t *testing.T, name string, fn hashFunc, ref func(string) (string, bool), in string) {
	got, ok := fn(nil, []byte(in))
	want, wantOK := ref(in)
	if ok != wantOK || string(got) != want {
		t.Fatalf("%s(%q) = %q, %v; reference %q, %v", name, in, got, ok, want, wantOK)
	}
	if ok && (len(got) != 64 || strings.ToLower(string(got)) != string(got)) {
		t.Fatalf("%s(%q) = %q: not 64 lowercase hex", name, in, got)
	}
}

func FuzzEmailMeta(f *testing.F) {
	for _, s := range []string{"mary@example.com", " A@B.C ", "a@b..", "x@y", strings.Repeat("f", 64), "ü@x.de", "a@b@c.d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkRef(t, "EmailMeta", EmailMeta, emailMetaRef, in)
	})
}

func FuzzEmailGoogle(f *testing.F) {
	for _, s := range []string{"cloudy.sanfrancisco+shopping@gmail.com", "A.B@googlemail.com", " x @ y.z ", "İ@x.com", "\u212a@x.com", "+@gmail.com", strings.Repeat("A", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkRef(t, "EmailGoogle", EmailGoogle, emailGoogleRef, in)
	})
}

func BenchmarkEmailMeta(b *testing.B) {
	in := []byte(" Mary.Doe@Example.com ")
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = EmailMeta(dst[:0], in)
	}
}

func BenchmarkEmailGoogle(b *testing.B) {
	in := []byte("Cloudy.SanFrancisco+shopping@gmail.com")
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = EmailGoogle(dst[:0], in)
	}
}

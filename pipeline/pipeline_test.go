package pipeline

import "testing"

func TestSource(t *testing.T) {
	f := func(utm, page, ref, want string) {
		t.Helper()
		if got := Source([]byte(utm), []byte(page), []byte(ref)); got != want {
			t.Errorf("Source(%q, %q, %q) = %q, want %q", utm, page, ref, got, want)
		}
	}
	f("Newsletter", "https://jobs.example.com/", "https://www.google.com/", "newsletter")
	f(" LinkedIn ", "", "", "linkedin")
	f("", "https://jobs.example.com/a", "https://www.google.com/search", "google.com")
	f("", "https://jobs.example.com/a", "https://jobs.example.com/list", "(internal)")
	f("", "https://www.jobs.example.com/a", "https://jobs.example.com/list", "(internal)")
	f("", "https://jobs.example.com/a", "", "(direct)")
	f("", "https://jobs.example.com/a", "not a url", "(direct)")
	f("", "https://jobs.example.com/a", "android-app://com.google.android.gm/", "com.google.android.gm")
	f("", "https://jobs.example.com/a", "https://user:pw@WWW.Bing.com:443/search?q=x", "bing.com")
	f("", "https://jobs.example.com/a", "http://[2001:db8::1]:8080/x", "2001:db8::1")
	f("", "https://JOBS.example.com:443/a", "https://jobs.example.com/list#top", "(internal)")
	f("", "https://jobs.example.com/a", "https:///nohost", "(direct)")
}

func FuzzSource(f *testing.F) {
	f.Add([]byte("x"), []byte("https://a.example/"), []byte("https://b.example/"))
	f.Fuzz(func(t *testing.T, utm, page, ref []byte) {
		s := Source(utm, page, ref)
		if s == "" || len(s) > 400 {
			t.Fatalf("Source = %q", s)
		}
	})
}

func TestIDSetBounded(t *testing.T) {
	s := newIDSet(3)
	id := func(b byte) [16]byte { return [16]byte{b} }
	for b := byte(1); b <= 5; b++ {
		s.add(id(b))
	}
	if s.has(id(1)) || s.has(id(2)) || !s.has(id(3)) || !s.has(id(5)) {
		t.Fatal("oldest ids must be evicted first")
	}
	if len(s.m) != 3 {
		t.Fatalf("set holds %d ids, capacity 3", len(s.m))
	}
	s.add(id(5)) // re-adding does not evict
	if !s.has(id(3)) {
		t.Fatal("re-adding an id evicted another")
	}
}

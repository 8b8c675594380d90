package pipeline

import (
	"slices"
	"testing"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

func TestChannel(t *testing.T) {
	const page = "https://jobs.example.com/nurse"
	f := func(h schemas.Hit, want string) {
		t.Helper()
		if h.URL == nil {
			h.URL = []byte(page)
		}
		if got := Channel(&h); got != want {
			t.Errorf("Channel(utm %q/%q, ref %q, gclid %q fbc %q li %q) = %q, want %q",
				h.UTMSource, h.UTMMedium, h.Referrer, h.Gclid, h.Fbc, h.LiFatID, got, want)
		}
	}
	b := func(s string) []byte { return []byte(s) }
	// Click ids first, whatever the UTM parameters say.
	f(schemas.Hit{Gclid: b("Cj0K"), UTMSource: b("newsletter"), UTMMedium: b("email")}, store.ChannelPaidGoogle)
	f(schemas.Hit{Gbraid: b("x")}, store.ChannelPaidGoogle)
	f(schemas.Hit{Wbraid: b("x"), Referrer: b(page)}, store.ChannelPaidGoogle)
	f(schemas.Hit{Fbc: b("fb.1.1.abc"), Referrer: b("https://l.facebook.com/")}, store.ChannelPaidMeta)
	f(schemas.Hit{LiFatID: b("abc")}, store.ChannelPaidLinkedIn)
	// Paid media by network (without consent the click ids are gone).
	f(schemas.Hit{UTMSource: b("Google"), UTMMedium: b("CPC")}, store.ChannelPaidGoogle)
	f(schemas.Hit{UTMSource: b("Google Ads"), UTMMedium: b("ppc")}, store.ChannelPaidGoogle)
	f(schemas.Hit{UTMSource: b("ig"), UTMMedium: b("paid_social")}, store.ChannelPaidMeta)
	f(schemas.Hit{UTMSource: b("linkedin"), UTMMedium: b("paid")}, store.ChannelPaidLinkedIn)
	f(schemas.Hit{UTMMedium: b("cpc"), Referrer: b("https://www.linkedin.com/feed")}, store.ChannelPaidLinkedIn)
	f(schemas.Hit{UTMSource: b("indeed"), UTMMedium: b("sponsored")}, store.ChannelJobBoard)
	f(schemas.Hit{UTMSource: b("bing"), UTMMedium: b("cpc")}, store.ChannelPaidOther)
	f(schemas.Hit{UTMMedium: b("display")}, store.ChannelPaidOther)
	// Other media.
	f(schemas.Hit{UTMSource: b("google"), UTMMedium: b("Newsletter")}, store.ChannelEmail)
	f(schemas.Hit{UTMSource: b("partner"), UTMMedium: b(" e-mail ")}, store.ChannelEmail)
	f(schemas.Hit{UTMSource: b("linkedin"), UTMMedium: b("social")}, store.ChannelSocial)
	f(schemas.Hit{UTMSource: b("google"), UTMMedium: b("organic")}, store.ChannelOrganicSearch)
	// Sources by name or referrer host.
	f(schemas.Hit{UTMSource: b("stepstone")}, store.ChannelJobBoard)
	f(schemas.Hit{Referrer: b("https://de.indeed.com/viewjob?jk=1")}, store.ChannelJobBoard)
	f(schemas.Hit{Referrer: b("https://www.jobs.ch/en/")}, store.ChannelJobBoard)
	f(schemas.Hit{Referrer: b("https://notjobs.ch/")}, store.ChannelReferral)
	f(schemas.Hit{Referrer: b("https://www.google.co.uk/")}, store.ChannelOrganicSearch)
	f(schemas.Hit{Referrer: b("https://duckduckgo.com/")}, store.ChannelOrganicSearch)
	f(schemas.Hit{Referrer: b("https://t.co/abc")}, store.ChannelSocial)
	f(schemas.Hit{Referrer: b("https://lm.facebook.com/l.php")}, store.ChannelSocial)
	f(schemas.Hit{Referrer: b("https://googleblog.example/")}, store.ChannelReferral)
	f(schemas.Hit{UTMSource: b("partner-blog")}, store.ChannelReferral)
	f(schemas.Hit{Referrer: b("https://news.example/story")}, store.ChannelReferral)
	// Own host, nothing.
	f(schemas.Hit{Referrer: b("https://www.jobs.example.com/list")}, store.ChannelInternal)
	f(schemas.Hit{}, store.ChannelDirect)
	f(schemas.Hit{Referrer: b("not a url")}, store.ChannelDirect)
	f(schemas.Hit{UTMSource: b("  ")}, store.ChannelDirect)
}

func FuzzChannel(f *testing.F) {
	f.Add([]byte("google"), []byte("cpc"), []byte("https://jobs.example/"), []byte("https://www.google.com/"), []byte(""))
	f.Add([]byte(""), []byte(""), []byte("https://jobs.example/"), []byte("https://jobs.example/a"), []byte("x"))
	f.Fuzz(func(t *testing.T, utm, medium, page, ref, click []byte) {
		h := schemas.Hit{UTMSource: utm, UTMMedium: medium, URL: page, Referrer: ref, LiFatID: click}
		c := Channel(&h)
		if !slices.Contains(store.Channels, c) || c == store.ChannelUnknown {
			t.Fatalf("Channel = %q, not a stored channel", c)
		}
		if c2 := Channel(&h); c2 != c {
			t.Fatalf("Channel not deterministic: %q then %q", c, c2)
		}
		if len(click) > 0 && c != store.ChannelPaidLinkedIn {
			t.Fatalf("a li_fat_id gives %q", c)
		}
	})
}

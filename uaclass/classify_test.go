package uaclass

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"testing"

	"github.com/medama-io/go-useragent"
)

var cases = []struct {
	ua   string
	want Class
}{
	// People.
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		Class{BrowserChrome, OSWindows, DeviceDesktop}},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
		Class{BrowserEdge, OSWindows, DeviceDesktop}},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0",
		Class{BrowserFirefox, OSMacOS, DeviceDesktop}},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		Class{BrowserSafari, OSIOS, DeviceMobile}},
	{"Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		Class{BrowserSafari, OSIOS, DeviceTablet}},
	{"Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
		Class{BrowserChrome, OSAndroid, DeviceMobile}},
	{"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		Class{BrowserChrome, OSAndroid, DeviceTablet}},
	{"Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
		Class{BrowserSamsung, OSAndroid, DeviceMobile}},
	{"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		Class{BrowserChrome, OSChromeOS, DeviceDesktop}},
	{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		Class{BrowserFirefox, OSLinux, DeviceDesktop}},
	{"Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
		Class{BrowserSamsung, OSLinux, DeviceTV}},
	// False-positive traps: "bot" inside a phone brand, e-mail clients.
	{"Mozilla/5.0 (Linux; Android 10; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
		Class{BrowserChrome, OSAndroid, DeviceMobile}},
	{"Mozilla/5.0 (Linux; Android 11; Cubot_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
		Class{BrowserChrome, OSAndroid, DeviceMobile}},
	{"Mozilla/5.0 (Linux; Android 12; KINGKONG 9 Build/SP1A) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.0.0 Mobile Safari/537.36 cubot",
		Class{BrowserChrome, OSAndroid, DeviceMobile}},
	{"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
		Class{BrowserUnknown, OSWindows, DeviceDesktop}},

	// Crawlers.
	{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Class{Device: DeviceBot}},
	{"Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		Class{BrowserChrome, OSAndroid, DeviceBot}},
	{"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
		Class{BrowserChrome, OSUnknown, DeviceBot}},
	{"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", Class{BrowserSafari, OSUnknown, DeviceBot}},
}

var botUAs = []string{
	"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
	"Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
	"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
	"LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
	"Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
	"Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
	"DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
	"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
	"CCBot/2.0 (https://commoncrawl.org/faq/)",
	"Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
	"Mozilla/5.0 (compatible;PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
	"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ChatGPT-User/1.0; +https://openai.com/bot)",
	"Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Puppeteer",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Playwright/1.49",
	"Mozilla/5.0 (X11; Linux x86_64) Selenium/4.1",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Chrome-Lighthouse",
	"python-requests/2.32.3",
	"Python-urllib/3.12",
	"curl/8.5.0",
	"Wget/1.21.4",
	"Go-http-client/2.0",
	"Java/17.0.2",
	"okhttp/4.12.0",
	"axios/1.7.7",
	"node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
	"PostmanRuntime/7.42.0",
	"Scrapy/2.11.2 (+https://scrapy.org)",
	"WhatsApp/2.23.20.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) BingPreview/1.0b",
	"Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
	"Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
	"Mozilla/5.0",
	"mozilla/4.0",
	"",
	"   ",
}

func TestClassify(t *testing.T) {
	for _, c := range cases {
		// Twice: computed, then from the cache.
		for range 2 {
			if got := Classify([]byte(c.ua)); got != c.want {
				t.Errorf("Classify(%.80q) = %v, want %v", c.ua, got, c.want)
			}
		}
	}
	for _, ua := range botUAs {
		for range 2 {
			if got := Classify([]byte(ua)); !got.IsBot() {
				t.Errorf("Classify(%.80q) = %v, want a bot", ua, got)
			}
		}
	}
}

func TestHints(t *testing.T) {
	ua := []byte(cases[0].ua)
	person := []byte(`"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`)
	headless := []byte(`"HeadlessChrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`)
	if got := Classify(ua, person); got != cases[0].want {
		t.Errorf("with a normal Sec-CH-UA: %v", got)
	}
	if got := Classify(ua, person, headless); got != (Class{BrowserChrome, OSWindows, DeviceBot}) {
		t.Errorf("with a HeadlessChrome Sec-CH-UA: %v", got)
	}
	// The hint must not poison the cache.
	if got := Classify(ua); got != cases[0].want {
		t.Errorf("after the hint: %v", got)
	}
}

func TestLongUserAgent(t *testing.T) {
	// Markers are found wherever they sit in a user agent longer than the
	// scan window, and "Cubot" straddling a window edge is no bot.
	base := cases[0].ua
	for pad := 470; pad < 540; pad++ {
		for _, tail := range []string{"Googlebot", "CUBOT"} {
			ua := base + " " + strings.Repeat("x", pad) + tail + " " + strings.Repeat("y", 600)
			got := classify([]byte(ua))
			if want := tail == "Googlebot"; got.IsBot() != want {
				t.Fatalf("pad %d %s: %v", pad, tail, got)
			}
		}
	}
}

func TestStrings(t *testing.T) {
	if BrowserOperaMini.String() != "opera_mini" || OSIOS.String() != "ios" || DeviceBot.String() != "bot" {
		t.Error("names changed")
	}
	if Browser(200).String() != "unknown" || OS(200).String() != "unknown" || Device(200).String() != "unknown" {
		t.Error("out-of-range values must print unknown")
	}
	if len(browserNames) != int(BrowserHuawei)+1 || len(osNames) != int(OSOpenBSD)+1 || len(deviceNames) != int(DeviceBot)+1 {
		t.Error("name tables out of step with the constants")
	}
}

func TestClassifyAllocs(t *testing.T) {
	// The cache is direct-mapped under a random seed: two cases sharing a
	// slot evict each other, so only cases with a slot of their own are
	// timed (with 20 cases, a shared slot happens in about 5 % of runs).
	perSlot := map[uint64]int{}
	for _, c := range cases {
		perSlot[maphash.String(cacheSeed, c.ua)&(cacheSize-1)]++
	}
	var uas [][]byte
	for _, c := range cases {
		if perSlot[maphash.String(cacheSeed, c.ua)&(cacheSize-1)] == 1 {
			uas = append(uas, []byte(c.ua))
		}
	}
	if len(uas) < len(cases)/2 {
		t.Fatalf("only %d of %d cases have a cache slot of their own", len(uas), len(cases))
	}
	hint := []byte(`"Chromium";v="131"`)
	for _, ua := range uas {
		Classify(ua)
	}
	if n := testing.AllocsPerRun(1000, func() {
		for _, ua := range uas {
			Classify(ua, hint)
		}
	}); n != 0 {
		t.Fatalf("cached Classify allocates %v times per run", n)
	}
	// A miss costs one allocation: go-useragent needs a string.
	ua := []byte(cases[0].ua)
	if n := testing.AllocsPerRun(1000, func() { classify(ua) }); n > 1 {
		t.Fatalf("uncached classify allocates %v times per call", n)
	}
}

func TestConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				c := cases[(i+g)%len(cases)]
				ua := []byte(c.ua)
				if i%3 == 0 { // unique user agents keep evicting entries
					ua = fmt.Appendf(ua, " r%d-%d", g, i)
				}
				got := Classify(ua)
				if i%3 != 0 && got != c.want {
					t.Errorf("Classify(%.60q) = %v under contention", ua, got)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzClassify(f *testing.F) {
	for _, c := range cases {
		f.Add(c.ua, "")
	}
	for _, ua := range botUAs {
		f.Add(ua, `"HeadlessChrome";v="1"`)
	}
	f.Fuzz(func(t *testing.T, ua, hint string) {
		want := classify([]byte(ua))
		if got := Classify([]byte(ua)); got != want {
			t.Fatalf("cached %v, uncached %v for %q", got, want, ua)
		}
		if got := Classify([]byte(ua)); got != want {
			t.Fatalf("second call %v, want %v", got, want)
		}
		withHint := Classify([]byte(ua), []byte(hint))
		if withHint.Browser != want.Browser || withHint.OS != want.OS || (want.IsBot() && !withHint.IsBot()) {
			t.Fatalf("hint %q changed %v to %v", hint, want, withHint)
		}
		if int(want.Browser) >= len(browserNames) || int(want.OS) >= len(osNames) || int(want.Device) >= len(deviceNames) {
			t.Fatalf("out-of-range class %d/%d/%d", want.Browser, want.OS, want.Device)
		}
		if bytes.Contains(bytes.ToLower([]byte(ua)), []byte("googlebot")) && !want.IsBot() {
			t.Fatalf("%q is not a bot", ua)
		}
	})
}

var benchUA = []byte("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36")

func BenchmarkClassifyCached(b *testing.B) {
	Classify(benchUA)
	b.ReportAllocs()
	for b.Loop() {
		Classify(benchUA)
	}
}

func BenchmarkClassifyUncached(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		classify(benchUA)
	}
}

func BenchmarkGoUserAgentParseBytes(b *testing.B) {
	p := useragent.NewParser()
	b.ReportAllocs()
	for b.Loop() {
		p.Parse(string(benchUA))
	}
}

func BenchmarkGoUserAgentParseString(b *testing.B) {
	p := useragent.NewParser()
	s := string(benchUA)
	b.ReportAllocs()
	for b.Loop() {
		p.Parse(s)
	}
}

package uaclass

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/medama-io/go-useragent"
)

// Classify returns the class of the user agent ua. Any hints — other
// request data that may reveal automation, such as the Sec-CH-UA header
// (a "HeadlessChrome" brand) — are searched for automation markers
// (headless, webdriver, Selenium, Puppeteer, Playwright, PhantomJS,
// Lighthouse, …) and the generic bot, crawler and spider words; a match
// makes the result a bot.
//
// A user agent is a bot when go-useragent says so, when it is empty or a
// bare "Mozilla/x.y", or when it contains, ignoring case, one of this
// package's markers: named crawlers and AI agents (Googlebot, bingbot,
// AhrefsBot, SemrushBot, facebookexternalhit, LinkedInBot, Applebot,
// YandexBot, Baiduspider, DuckDuckBot, GPTBot, ChatGPT-User, ClaudeBot,
// CCBot, Bytespider, PetalBot, …), link previewers (WhatsApp, BingPreview,
// …), uptime and performance monitors (Pingdom, Lighthouse, …), HTTP
// libraries and tools (curl, Wget, python-requests, Go-http-client, Java,
// okhttp, axios, Scrapy, …), headless and automated browsers
// (HeadlessChrome, PhantomJS, Puppeteer, Playwright, Selenium, …), a URL
// ("http://", "https://", "www.", ".com/": browsers never carry one), and
// the generic words "bot" (except in the phone brand "Cubot"), "crawl",
// "spider", "slurp", "preview", "monitor" and "headless". Android devices
// whose user agent lacks "Mobile" are tablets.
//
// Classify is safe for concurrent use. Results for ua (not the hints,
// which are checked on every call) are cached in a fixed table of 4096
// entries keyed by a randomly seeded 64-bit hash of ua, 51 bits of which
// are checked on a hit; a user agent seen recently is classified without
// allocating, unless another user agent has since taken its slot. A miss allocates once (go-useragent takes a string). The
// first call builds go-useragent's parser (about 30 ms).
func Classify(ua []byte, hints ...[]byte) Class {
	c := classifyCached(ua)
	if c.Device != DeviceBot {
		for _, h := range hints {
			if hintMarkers.in(h) {
				c.Device = DeviceBot
				break
			}
		}
	}
	return c
}

var parser = sync.OnceValue(useragent.NewParser)

// classify is Classify without the cache and the hints.
func classify(ua []byte) Class {
	trimmed := bytes.TrimSpace(ua)
	if len(trimmed) == 0 || bareMozilla(trimmed) {
		return Class{Device: DeviceBot}
	}
	a := parser().Parse(string(ua))
	c := fromAgents(a.Browser(), a.OS(), a.Device())
	if botMarkers.in(ua) {
		c.Device = DeviceBot
	} else if c.OS == OSAndroid && c.Device == DeviceMobile && !mobileMarker.in(ua) {
		c.Device = DeviceTablet
	}
	return c
}

// bareMozilla reports whether s is just "Mozilla/" and a version.
func bareMozilla(s []byte) bool {
	const p = "mozilla/"
	if len(s) <= len(p) || len(s) > len(p)+4 {
		return false
	}
	for i := range len(p) {
		if lower(s[i]) != p[i] {
			return false
		}
	}
	for _, c := range s[len(p):] {
		if !('0' <= c && c <= '9' || c == '.') {
			return false
		}
	}
	return true
}

// The cache: entry = 1<<63 | tag<<24 | browser<<16 | os<<8 | device, with
// the tag taken from the hash bits above the index bits.
const (
	cacheBits = 12
	cacheSize = 1 << cacheBits
	tagBits   = 39
)

var (
	cacheSeed = maphash.MakeSeed()
	cache     [cacheSize]atomic.Uint64
)

func classifyCached(ua []byte) Class {
	h := maphash.Bytes(cacheSeed, ua)
	slot := &cache[h&(cacheSize-1)]
	tag := 1<<tagBits | (h>>cacheBits)&(1<<tagBits-1)
	if e := slot.Load(); e>>24 == tag {
		return Class{Browser: Browser(e >> 16), OS: OS(e >> 8), Device: Device(e)}
	}
	c := classify(ua)
	slot.Store(tag<<24 | uint64(c.Browser)<<16 | uint64(c.OS)<<8 | uint64(c.Device))
	return c
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// marker is a lowercase substring that marks a bot, unless the bytes just
// before it end with notAfter.
type marker struct {
	s        []byte
	notAfter []byte
}

func mk(s string) marker { return marker{s: []byte(s)} }

// maxMarker is longer than every marker and every notAfter.
const maxMarker = 32

// matcher finds any of a set of markers (each at least 2 bytes long) in
// lowercased text. A bitset of the markers' first two bytes lets it skip
// almost every position with one load.
type matcher struct {
	first [1 << 16 / 64]uint64
	by    map[uint16][]marker
}

func newMatcher(markers ...marker) *matcher {
	m := &matcher{by: make(map[uint16][]marker)}
	for _, mk := range markers {
		if len(mk.s) < 2 || len(mk.s) >= maxMarker || len(mk.notAfter) >= maxMarker {
			panic("uaclass: bad marker " + string(mk.s))
		}
		k := uint16(mk.s[0])<<8 | uint16(mk.s[1])
		m.first[k>>6] |= 1 << (k & 63)
		m.by[k] = append(m.by[k], mk)
	}
	return m
}

// in reports whether s, lowercased, contains one of m's markers. It scans
// s in windows of a stack buffer and does not allocate.
func (m *matcher) in(s []byte) bool {
	var buf [512]byte
	for off := 0; off < len(s); {
		n := min(len(s)-off, len(buf))
		w := buf[:n]
		for i := range w {
			w[i] = lower(s[off+i])
		}
		for i := 0; i+1 < len(w); i++ {
			k := uint16(w[i])<<8 | uint16(w[i+1])
			if m.first[k>>6]&(1<<(k&63)) == 0 {
				continue
			}
			for _, mk := range m.by[k] {
				if bytes.HasPrefix(w[i:], mk.s) && !precededBy(s, off+i, mk.notAfter) {
					return true
				}
			}
		}
		if off+n == len(s) {
			break
		}
		// Overlap windows so that a marker cut by this window's end is
		// seen whole in the next.
		off += n - maxMarker
	}
	return false
}

// precededBy reports whether s[:end], lowercased, ends with the lowercase
// p; false for an empty p.
func precededBy(s []byte, end int, p []byte) bool {
	if len(p) == 0 || end < len(p) {
		return false
	}
	for i, c := range s[end-len(p) : end] {
		if lower(c) != p[i] {
			return false
		}
	}
	return true
}

var mobileMarker = newMatcher(mk("mobile"))

// hintMarkers are searched in hints.
var hintMarkers = newMatcher(
	mk("headless"), mk("webdriver"), mk("selenium"), mk("puppeteer"), mk("playwright"),
	mk("phantomjs"), mk("lighthouse"), mk("crawl"), mk("spider"), marker{s: []byte("bot"), notAfter: []byte("cu")},
)

// botMarkers are searched in the user agent; see Classify.
var botMarkers = newMatcher(
	// Generic words. Most named crawlers contain "bot": Googlebot, bingbot,
	// AhrefsBot, SemrushBot, LinkedInBot, Applebot, YandexBot, DuckDuckBot,
	// GPTBot, ClaudeBot, CCBot, PetalBot, Amazonbot, AdsBot-Google, ….
	marker{s: []byte("bot"), notAfter: []byte("cu")}, // the Cubot phone brand
	mk("crawl"), mk("spider"), mk("slurp"), mk("preview"), mk("headless"),
	mk("http://"), mk("https://"), mk("+http"), mk("www."), mk(".com/"),
	// Named crawlers and agents without those words.
	mk("facebookexternalhit"), mk("facebookcatalog"), mk("meta-externalagent"), mk("meta-externalfetcher"),
	mk("mediapartners-google"), mk("feedfetcher"), mk("google-read-aloud"), mk("googleother"),
	mk("google-inspectiontool"), mk("google-safety"), mk("apis-google"), mk("google-site-verification"),
	mk("google page speed"), mk("chatgpt-user"), mk("oai-searchbot"), mk("claude-web"), mk("claude-user"),
	mk("anthropic-ai"), mk("perplexity"), mk("cohere-ai"), mk("ia_archiver"), mk("archiver"),
	mk("yandeximages"), mk("yandexmetrika"), mk("sogou"), mk("whatsapp"), mk("embedly"),
	mk("iframely"), mk("vkshare"), mk("outbrain"), mk("pinterest/"), mk("flipboard"),
	mk("feedly"), mk("feedburner"), mk("screaming frog"), mk("sitebulb"), mk("netcraft"),
	mk("censys"), mk("zgrab"), mk("masscan"), mk("nmap"), mk("nikto"), mk("sqlmap"), mk("nuclei"),
	mk("httrack"), mk("heritrix"), mk("nutch"), mk("validator"), mk("checklink"), mk("check_http"),
	// Monitoring and performance tools.
	mk("lighthouse"), mk("pagespeed"), mk("gtmetrix"), mk("pingdom"), mk("statuscake"),
	mk("site24x7"), mk("datadog"), mk("newrelic"), mk("catchpoint"), mk("synthetic"), mk("monitor"),
	// HTTP libraries and command-line tools.
	mk("curl"), mk("wget"), mk("python"), mk("aiohttp"), mk("httpx"), mk("go-http-client"),
	mk("java/"), mk("apache-httpclient"), mk("libwww-perl"), mk("lwp::"), mk("guzzlehttp"),
	mk("node-fetch"), mk("axios/"), mk("undici"), mk("postmanruntime"), mk("insomnia"),
	mk("restsharp"), mk("scrapy"), mk("mechanize"), mk("httpie"), mk("powershell"),
	mk("ruby"), mk("php/"), mk("reqwest"), mk("colly"), mk("okhttp/"), mk("dalvik/"),
	// Headless and automated browsers.
	mk("phantomjs"), mk("slimerjs"), mk("htmlunit"), mk("jsdom"), mk("puppeteer"),
	mk("playwright"), mk("selenium"), mk("webdriver"), mk("cypress"),
)

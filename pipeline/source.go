package pipeline

import (
	"bytes"
	"net/url"
	"strings"
)

// Source names the traffic source of a hit for the conversion aggregate:
// the utm_source when the page URL has one (lowercased), else the
// referrer's host without "www." when it differs from the page's host, else
// "(direct)". Internal navigation counts as "(internal)".
func Source(utmSource, pageURL, referrer []byte) string {
	if s := bytes.TrimSpace(utmSource); len(s) > 0 {
		return strings.ToLower(string(limit(s, 100)))
	}
	if len(referrer) == 0 {
		return "(direct)"
	}
	ref, err := url.Parse(string(referrer))
	if err != nil || ref.Host == "" {
		return "(direct)"
	}
	rh := strings.TrimPrefix(strings.ToLower(ref.Hostname()), "www.")
	if page, err := url.Parse(string(pageURL)); err == nil {
		if strings.TrimPrefix(strings.ToLower(page.Hostname()), "www.") == rh {
			return "(internal)"
		}
	}
	return string(limit([]byte(rh), 100))
}

func limit(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

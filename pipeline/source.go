package pipeline

import (
	"bytes"
	"strings"
)

// Source names the traffic source of a hit for the conversion aggregate:
// the utm_source when the page URL has one (lowercased), else the
// referrer's host without "www." when it differs from the page's host, else
// "(direct)". Internal navigation counts as "(internal)". It runs per row,
// so it reads hosts in place instead of parsing whole URLs.
func Source(utmSource, pageURL, referrer []byte) string {
	if s := bytes.TrimSpace(utmSource); len(s) > 0 {
		return strings.ToLower(string(limit(s, 100)))
	}
	rh := host(referrer)
	if len(rh) == 0 {
		return "(direct)"
	}
	if bytes.EqualFold(host(pageURL), rh) {
		return "(internal)"
	}
	return strings.ToLower(string(limit(rh, 100)))
}

// host returns the host of an absolute URL ("scheme://[userinfo@]host[:port]/…")
// without port, brackets or a leading "www.", or nil when raw has none.
func host(raw []byte) []byte {
	i := bytes.Index(raw, []byte("://"))
	if i <= 0 {
		return nil
	}
	h := raw[i+3:]
	if j := bytes.IndexAny(h, "/?#"); j >= 0 {
		h = h[:j]
	}
	if j := bytes.LastIndexByte(h, '@'); j >= 0 {
		h = h[j+1:]
	}
	if len(h) > 0 && h[0] == '[' {
		if j := bytes.IndexByte(h, ']'); j > 0 {
			return h[1:j]
		}
		return nil
	}
	if j := bytes.LastIndexByte(h, ':'); j >= 0 {
		h = h[:j]
	}
	if len(h) >= 4 && bytes.EqualFold(h[:4], []byte("www.")) {
		h = h[4:]
	}
	return h
}

func limit(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

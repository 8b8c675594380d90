package pipeline

import (
	"bytes"
	"strings"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/schemas"
)

// Channel classifies the marketing channel a hit came from (one of the
// store.Channel* names, never ChannelUnknown). The rules, first match wins:
//
//  1. An ad click id: gclid, gbraid or wbraid → paid_google; fbc (from
//     fbclid or the _fbc cookie) → paid_meta; li_fat_id → paid_linkedin.
//     Ingest keeps click ids only with ad consent, so without it a paid
//     visit is recognised by its UTM parameters alone.
//  2. A paid utm_medium (see paidMedia) → paid_google, paid_meta or
//     paid_linkedin by the utm_source's (else the referrer's) network;
//     job_board for a job board; else paid_other.
//  3. utm_medium email, e-mail, newsletter or mail → email; social,
//     social-media, social_media, organic_social or sm → social; organic
//     → organic_search.
//  4. The utm_source, else the referrer's host when it is not the page's
//     own: a job board → job_board, a search engine → organic_search, a
//     social network → social (the lists are in the README and below);
//     anything else → referral.
//  5. A referrer on the page's own host → internal; no referrer → direct.
//
// Names and hosts match case-insensitively; a listed name without a dot
// ("google") matches any part of a host or source between dots, spaces,
// '_' and '-' ("www.google.co.uk", "Google Ads"), a listed name with a dot
// ("t.co") the host itself or its subdomains.
func Channel(h *schemas.Hit) string {
	switch {
	case len(h.Gclid) > 0 || len(h.Gbraid) > 0 || len(h.Wbraid) > 0:
		return store.ChannelPaidGoogle
	case len(h.Fbc) > 0:
		return store.ChannelPaidMeta
	case len(h.LiFatID) > 0:
		return store.ChannelPaidLinkedIn
	}
	src := bytes.TrimSpace(h.UTMSource)
	if len(src) == 0 {
		if rh := host(h.Referrer); len(rh) > 0 && !bytes.EqualFold(host(h.URL), rh) {
			src = rh
		}
	}
	medium := strings.ToLower(string(bytes.TrimSpace(limit(h.UTMMedium, 40))))
	switch {
	case paidMedia[medium]:
		switch {
		case matches(src, googleAds):
			return store.ChannelPaidGoogle
		case matches(src, metaAds):
			return store.ChannelPaidMeta
		case matches(src, linkedInAds):
			return store.ChannelPaidLinkedIn
		case matches(src, jobBoards):
			return store.ChannelJobBoard
		}
		return store.ChannelPaidOther
	case emailMedia[medium]:
		return store.ChannelEmail
	case socialMedia[medium]:
		return store.ChannelSocial
	case medium == "organic":
		return store.ChannelOrganicSearch
	}
	switch {
	case len(src) == 0:
	case matches(src, jobBoards):
		return store.ChannelJobBoard
	case matches(src, searchEngines):
		return store.ChannelOrganicSearch
	case matches(src, socialNetworks):
		return store.ChannelSocial
	default:
		return store.ChannelReferral
	}
	if len(host(h.Referrer)) > 0 {
		return store.ChannelInternal
	}
	return store.ChannelDirect
}

var (
	paidMedia = set("cpc", "ppc", "paid", "paidsearch", "paid_search", "paid-search", "paidsocial",
		"paid_social", "paid-social", "cpm", "cpv", "cpa", "display", "banner", "ad", "ads", "sem", "sponsored")
	emailMedia  = set("email", "e-mail", "e_mail", "newsletter", "mail")
	socialMedia = set("social", "social-media", "social_media", "organic_social", "sm")

	googleAds   = newNames("google", "adwords", "youtube", "doubleclick")
	metaAds     = newNames("facebook", "fb", "instagram", "ig", "meta", "messenger")
	linkedInAds = newNames("linkedin", "lnkd.in")

	searchEngines = newNames("google", "bing", "duckduckgo", "yahoo", "ecosia", "yandex", "baidu",
		"qwant", "startpage", "search.brave.com", "ask.com", "aol", "naver", "seznam")
	socialNetworks = newNames("facebook", "fb", "instagram", "linkedin", "lnkd.in", "twitter", "t.co",
		"x.com", "xing", "reddit", "tiktok", "youtube", "pinterest", "threads.net", "mastodon.social",
		"bsky.app", "snapchat", "whatsapp", "telegram")
	jobBoards = newNames("indeed", "stepstone", "monster", "glassdoor", "ziprecruiter", "careerbuilder",
		"simplyhired", "jooble", "adzuna", "talent.com", "jobs.ch", "jobup.ch", "jobscout24.ch",
		"karriere.at", "arbeitsagentur.de", "stellenanzeigen.de", "jobware.de", "kimeta.de",
		"totaljobs.com", "reed.co.uk", "cv-library.co.uk", "welcometothejungle.com", "nationalevacaturebank.nl",
		"werk.nl", "jobijoba", "hellowork.com", "infojobs", "pracuj.pl", "jobs.de")
)

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// names is a list of source names and hosts (see Channel for how a name
// matches), split for lookups: a name with a dot in hosts, one without in
// labels.
type names struct{ labels, hosts map[string]bool }

func newNames(list ...string) names {
	n := names{labels: map[string]bool{}, hosts: map[string]bool{}}
	for _, s := range list {
		if strings.IndexByte(s, '.') >= 0 {
			n.hosts[s] = true
		} else {
			n.labels[s] = true
		}
	}
	return n
}

// matches reports whether the source name or host s is one of n: one map
// lookup per label and per host suffix, without allocating for a source of
// up to 256 bytes.
func matches(s []byte, n names) bool {
	var buf [256]byte
	l := buf[:0]
	for _, c := range s {
		l = append(l, lowerASCII(c))
	}
	if n.hosts[string(l)] {
		return true
	}
	for i, c := range l {
		if c == '.' && n.hosts[string(l[i+1:])] {
			return true
		}
	}
	for rest := l; len(rest) > 0; {
		label := rest
		if i := bytes.IndexAny(rest, ". _-"); i >= 0 {
			label, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if n.labels[string(label)] {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

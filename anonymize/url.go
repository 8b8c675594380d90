package anonymize

import "bytes"

// Placeholders that replace what URL scrubs. They contain no digit, no '@'
// and no character that could extend a neighbouring match, so scrubbing is
// idempotent.
const (
	EmailMark = "(email)"
	PhoneMark = "(phone)"
)

// URLOptions configures URL. The zero value (and a nil *URLOptions) is the
// strict default: click identifiers are removed, only the built-in
// deny-list applies and only phone-shaped digit runs are scrubbed.
type URLOptions struct {
	// KeepClickIDs keeps ad click identifiers (gclid, gbraid, wbraid,
	// fbclid, li_fat_id, msclkid, ttclid, dclid, twclid, yclid, epik,
	// sccid, rdt_cid) byte for byte. Set it only when the visitor consented
	// to ads; otherwise they are removed.
	KeepClickIDs bool

	// Deny lists query parameter names to remove in addition to the
	// built-in list. Names match exactly after both sides are normalised:
	// percent-decoded, ASCII-lowercased, with '_', '-', '.', ' ', '+', '['
	// and ']' removed (so "first_name", "First-Name", "firstName" and
	// "first_name[]" all compare as "firstname").
	Deny []string

	// AllDigitRuns also scrubs plain runs of 7 or more digits that are
	// not phone-shaped (see URL). It catches unformatted national numbers
	// such as 5559876543, but also vacancy ids and timestamps.
	AllDigitRuns bool
}

var defaultURLOptions URLOptions

// URL appends to dst a scrubbed copy of raw, a page URL or referrer
// (absolute, scheme-relative or relative), and returns the extended slice.
// It keeps everything byte for byte except:
//
//   - the fragment ('#' and after) is dropped;
//   - userinfo (user:pass@ before the host) is dropped;
//   - e-mail addresses in the host, path and query (names and values) are
//     replaced by EmailMark. An address is one or more local-part
//     characters (letters, digits, bytes ≥ 0x80 and !#$'*+-._^`{|}~), an
//     '@', and one or more domain characters (letters, digits, bytes ≥ 0x80
//     and "-._"). Percent-encoded characters count as what they encode, so
//     "jane%40example.com" is found; double encoding is not undone.
//   - phone-like digit runs in the path and in query names and values are
//     replaced by PhoneMark. A run is digits with up to three separators
//     (space, %20, '-', '.', '(', ')', and '+' in the query) between digit
//     groups, optionally led by '+' and/or '('. It is phone-like when it has
//     at least 7 digits and is led by '+'; or has a separator and at least
//     9 digits; or is a plain run of 9–15 digits starting "00" plus a
//     non-zero digit (international prefix); or of 9–12 digits starting
//     '0' plus a non-zero digit (national trunk prefix). Plain runs such
//     as vacancy ids (/jobs/4521879) and timestamps are kept unless
//     opts.AllDigitRuns is set. A run is kept or replaced as a whole.
//   - query parameters are removed when their name (after the scrubbing
//     above and the normalisation described at URLOptions.Deny) is on the
//     built-in deny-list or opts.Deny, or contains "email", "phone",
//     "passw", "token", "secret", "session" or "subscriber". The built-in
//     list (normalised names) is: email, mail, emailaddress, phone,
//     phonenumber, tel, telephone, mobile, cell, cellphone, fax, name,
//     fullname, firstname, lastname, surname, givenname, familyname,
//     middlename, address, street, streetaddress, addr, zip, zipcode,
//     postcode, postalcode, dob, birthdate, birthday, dateofbirth, gender,
//     ssn, nationalid, passport, iban, creditcard, cardnumber, cvv, token,
//     password, pass, pwd, passwd, pin, otp, secret, apikey, auth,
//     authorization, session, sid, sessid, sessionid, phpsessid,
//     jsessionid, user, username, userid, uid, login, accountid,
//     customerid, memberid, ip, ipaddress, lat, lng, lon, latitude,
//     longitude, and the per-recipient e-mail tracking ids mceid
//     (Mailchimp), mkttok (Marketo), hsenc and hsmi (HubSpot). Search
//     parameters such as q, location or city are kept.
//   - click identifiers are removed unless opts.KeepClickIDs; when kept,
//     only e-mail addresses are scrubbed from their values.
//   - utm_* parameters are always kept (their values are still scrubbed).
//   - empty parameters ("a=1&&b=2") are dropped, and so is the '?' when no
//     parameter remains.
//
// Scrubbing is idempotent: URL applied to its own output returns it
// unchanged. URL never appends more than 3*len(raw) bytes (a 3-byte "a@b"
// becomes the 7-byte EmailMark) and does not allocate when dst has that
// much spare capacity. opts may be nil.
func URL(dst, raw []byte, opts *URLOptions) []byte {
	if opts == nil {
		opts = &defaultURLOptions
	}
	if i := bytes.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	var query []byte
	hasQuery := false
	if i := bytes.IndexByte(raw, '?'); i >= 0 {
		raw, query, hasQuery = raw[:i], raw[i+1:], true
	}
	if n := schemeLen(raw); n > 0 {
		dst = append(dst, raw[:n+1]...)
		raw = raw[n+1:]
	}
	if len(raw) >= 2 && raw[0] == '/' && raw[1] == '/' {
		dst = append(dst, "//"...)
		host := raw[2:]
		raw = nil
		if i := bytes.IndexByte(host, '/'); i >= 0 {
			host, raw = host[:i], host[i:]
		}
		if at := bytes.LastIndexByte(host, '@'); at >= 0 {
			host = host[at+1:]
		}
		dst = scrub(dst, host, ctxHost, opts)
	}
	dst = scrub(dst, raw, ctxPath, opts)
	if hasQuery {
		dst = scrubQuery(dst, query, opts)
	}
	return dst
}

// schemeLen returns the index of the ':' ending a URL scheme at the start
// of s (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"), or 0.
func schemeLen(s []byte) int {
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return i
		default:
			return 0
		}
	}
	return 0
}

// scrubCtx says which part of a URL scrub works on.
type scrubCtx uint8

const (
	ctxHost       scrubCtx = iota // e-mail addresses only
	ctxPath                       // e-mail addresses and phone numbers
	ctxQuery                      // as ctxPath, and '+' also separates digit groups
	ctxQueryEmail                 // e-mail addresses only, in a query value
)

// scrub appends s to dst with e-mail addresses and, depending on ctx,
// phone-like runs replaced by their marks.
func scrub(dst, s []byte, ctx scrubCtx, opts *URLOptions) []byte {
	phones := ctx == ctxPath || ctx == ctxQuery
	w := 0 // s[:w] is already appended
	for w < len(s) {
		es, ee := findEmail(s, w)
		gap := len(s)
		if es >= 0 {
			gap = es
		}
		for phones {
			ps, pe := findPhone(s, w, gap, ctx == ctxQuery, opts.AllDigitRuns)
			if ps < 0 {
				break
			}
			dst = append(dst, s[w:ps]...)
			dst = append(dst, PhoneMark...)
			w = pe
		}
		if es < 0 {
			break
		}
		dst = append(dst, s[w:es]...)
		dst = append(dst, EmailMark...)
		w = ee
	}
	return append(dst, s[w:]...)
}

// at returns the character at s[i], decoding a %XX escape, and the number
// of bytes it takes.
func at[S string | []byte](s S, i int) (byte, int) {
	if s[i] == '%' && i+2 < len(s) {
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi >= 0 && lo >= 0 {
			return byte(hi<<4 | lo), 3
		}
	}
	return s[i], 1
}

// charClass bits.
const (
	clLocal  = 1 << iota // may appear in an e-mail local part
	clDomain             // may appear in an e-mail domain
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
			t[c] = clLocal | clDomain
		case c == '-' || c == '.' || c == '_':
			t[c] = clLocal | clDomain
		case bytes.IndexByte([]byte("!#$'*+^`{|}~"), byte(c)) >= 0:
			t[c] = clLocal
		}
	}
	return t
}()

// findEmail returns the first e-mail address [start, end) in s[from:], or
// -1, -1.
func findEmail(s []byte, from int) (start, end int) {
	local := -1 // start of the current run of local-part characters
	for i := from; i < len(s); {
		c, n := at(s, i)
		switch {
		case c == '@':
			if local >= 0 {
				j := i + n
				for j < len(s) {
					d, m := at(s, j)
					if charClass[d]&clDomain == 0 {
						break
					}
					j += m
				}
				if j > i+n {
					return local, j
				}
			}
			local = -1
		case charClass[c]&clLocal != 0:
			if local < 0 {
				local = i
			}
		default:
			local = -1
		}
		i += n
	}
	return -1, -1
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isPhoneSep reports whether c may separate digit groups of a phone run.
func isPhoneSep(c byte, query bool) bool {
	switch c {
	case ' ', '-', '.', '(', ')':
		return true
	case '+':
		return query
	}
	return false
}

// findPhone returns the first phone-like run [start, end) in s[from:to],
// or -1, -1. Runs are maximal and judged whole, so a run that is not
// phone-like is skipped entirely.
func findPhone(s []byte, from, to int, query, all bool) (start, end int) {
	for i := from; i < to; {
		c, n := at(s, i)
		if !isDigit(c) && c != '+' && c != '(' {
			i += n
			continue
		}
		// Optional lead: '+' and/or '(' (at most one of each), then a digit.
		p := i
		j := i
		plus, paren := false, false
		for j < to {
			d, m := at(s, j)
			if d == '+' && !plus && !paren || d == '(' && !paren {
				plus = plus || d == '+'
				paren = paren || d == '('
				j += m
				continue
			}
			break
		}
		if j >= to {
			return -1, -1
		}
		if d, _ := at(s, j); !isDigit(d) {
			i += n
			continue
		}
		digits, sep := 0, false
		var first [3]byte
		runEnd := j
		for j < to {
			// A group of digits.
			for j < to {
				d, m := at(s, j)
				if !isDigit(d) {
					break
				}
				if digits < len(first) {
					first[digits] = d
				}
				digits++
				j += m
			}
			runEnd = j
			// Up to three separators, which count only if a digit follows.
			k := j
			for seps := 0; k < to && seps < 3; seps++ {
				d, m := at(s, k)
				if !isPhoneSep(d, query) {
					break
				}
				k += m
			}
			if k == j || k >= to {
				break
			}
			if d, _ := at(s, k); !isDigit(d) {
				break
			}
			sep = true
			j = k
		}
		if phoneLike(digits, first, plus, sep, all) {
			return p, runEnd
		}
		i = runEnd
	}
	return -1, -1
}

// phoneLike applies the rules documented at URL to a run of n digits that
// starts with the digits d.
func phoneLike(n int, d [3]byte, plus, sep, all bool) bool {
	switch {
	case n < 7:
		return false
	case plus, all:
		return true
	case sep:
		return n >= 9
	case d[0] == '0' && d[1] == '0':
		return d[2] != '0' && n >= 9 && n <= 15
	case d[0] == '0':
		return n >= 9 && n <= 12
	}
	return false
}

package anonymize

import "bytes"

// scrubQuery appends "?" and the kept, scrubbed parameters of q to dst;
// it appends nothing when no parameter is kept.
func scrubQuery(dst, q []byte, opts *URLOptions) []byte {
	mark := len(dst)
	dst = append(dst, '?')
	kept := false
	for len(q) > 0 {
		p := q
		q = nil
		if i := bytes.IndexByte(p, '&'); i >= 0 {
			p, q = p[:i], p[i+1:]
		}
		if len(p) == 0 {
			continue
		}
		start := len(dst)
		if kept {
			dst = append(dst, '&')
		}
		name, value, hasValue := bytes.Cut(p, []byte{'='})
		nameStart := len(dst)
		dst = scrub(dst, name, ctxQuery, opts)
		ctx := ctxQuery
		switch paramKind(dst[nameStart:], opts) {
		case paramDeny:
			dst = dst[:start]
			continue
		case paramClickID:
			if !opts.KeepClickIDs {
				dst = dst[:start]
				continue
			}
			ctx = ctxQueryEmail
		}
		if hasValue {
			dst = append(dst, '=')
			dst = scrub(dst, value, ctx, opts)
		}
		kept = true
	}
	if !kept {
		return dst[:mark]
	}
	return dst
}

type paramClass uint8

const (
	paramKeep paramClass = iota
	paramDeny
	paramClickID
	paramUTM
)

// maxNormName bounds the normalised length of a parameter name; longer
// names are denied.
const maxNormName = 256

// paramKind classifies a (raw, already scrubbed) query parameter name.
func paramKind(name []byte, opts *URLOptions) paramClass {
	// lower: percent-decoded and lowercased, enough for the longest exact
	// name compared against it; norm: also without ignorable characters.
	var lowerBuf [16]byte
	var normBuf [maxNormName]byte
	nl, nn := 0, 0
	for i := 0; i < len(name); {
		c, w := at(name, i)
		i += w
		c = lowerASCII(c)
		if nl < len(lowerBuf) {
			lowerBuf[nl] = c
		}
		nl++
		if ignorableNameChar(c) {
			continue
		}
		if nn == len(normBuf) {
			return paramDeny
		}
		normBuf[nn] = c
		nn++
	}
	if nl >= 4 && string(lowerBuf[:4]) == "utm_" {
		return paramUTM
	}
	if nl <= len(lowerBuf) && clickID(lowerBuf[:nl]) {
		return paramClickID
	}
	norm := normBuf[:nn]
	if deniedName(norm) {
		return paramDeny
	}
	for _, d := range opts.Deny {
		if equalNorm(norm, d) {
			return paramDeny
		}
	}
	return paramKeep
}

func ignorableNameChar(c byte) bool {
	switch c {
	case '_', '-', '.', ' ', '+', '[', ']':
		return true
	}
	return false
}

// equalNorm reports whether the normalised name equals d normalised.
func equalNorm(norm []byte, d string) bool {
	k := 0
	for i := 0; i < len(d); {
		c, w := at(d, i)
		i += w
		c = lowerASCII(c)
		if ignorableNameChar(c) {
			continue
		}
		if k == len(norm) || norm[k] != c {
			return false
		}
		k++
	}
	return k == len(norm)
}

// clickID reports whether the decoded, lowercased name is an ad click
// identifier.
func clickID(name []byte) bool {
	switch string(name) {
	case "gclid", "gbraid", "wbraid", "dclid", "fbclid", "li_fat_id", "msclkid",
		"ttclid", "twclid", "yclid", "epik", "sccid", "rdt_cid":
		return true
	}
	return false
}

// deniedName reports whether the normalised name is on the built-in
// deny-list documented at URL.
func deniedName(norm []byte) bool {
	switch string(norm) {
	case "email", "mail", "emailaddress",
		"phone", "phonenumber", "tel", "telephone", "mobile", "cell", "cellphone", "fax",
		"name", "fullname", "firstname", "lastname", "surname", "givenname", "familyname", "middlename",
		"address", "street", "streetaddress", "addr", "zip", "zipcode", "postcode", "postalcode",
		"dob", "birthdate", "birthday", "dateofbirth", "gender",
		"ssn", "nationalid", "passport", "iban", "creditcard", "cardnumber", "cvv",
		"token", "password", "pass", "pwd", "passwd", "pin", "otp", "secret", "apikey",
		"auth", "authorization",
		"session", "sid", "sessid", "sessionid", "phpsessid", "jsessionid",
		"user", "username", "userid", "uid", "login", "accountid", "customerid", "memberid",
		"ip", "ipaddress", "lat", "lng", "lon", "latitude", "longitude",
		"mceid", "mkttok", "hsenc", "hsmi":
		return true
	}
	for _, sub := range [...]string{"email", "phone", "passw", "token", "secret", "session", "subscriber"} {
		if bytes.Contains(norm, []byte(sub)) {
			return true
		}
	}
	return false
}

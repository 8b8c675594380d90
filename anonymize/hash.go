package anonymize

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"unicode"
	"unicode/utf8"
)

// MaxEmailLen is the longest e-mail address, after normalisation, that the
// e-mail functions accept (RFC 5321 limits a forward path to 254 bytes).
const MaxEmailLen = 254

// EmailMeta appends to dst the 64-character lowercase hex SHA-256 of email
// normalised as Meta's Conversions API and Custom Audiences require, and
// reports whether email was acceptable. On false dst is returned unchanged.
//
// Normalisation: trim surrounding white space and lowercase (ASCII; any
// other byte makes the address invalid). The result must match Meta's
// pattern ^[a-z0-9_.+-]+@[a-z0-9-]+\.[a-z0-9-.]+$ and be at most
// MaxEmailLen bytes. A value that is already 64 hex digits is taken to be a
// hash and is appended lowercased, not hashed again. EmailMeta does not
// allocate when dst has 64 bytes of spare capacity.
func EmailMeta(dst, email []byte) ([]byte, bool) {
	email = bytes.TrimSpace(email)
	if isHex64(email) {
		return appendLowerHex(dst, email), true
	}
	if len(email) > MaxEmailLen {
		return dst, false
	}
	var buf [MaxEmailLen]byte
	norm := buf[:len(email)]
	for i, c := range email {
		norm[i] = lowerASCII(c)
	}
	if !metaEmail(norm) {
		return dst, false
	}
	return appendSHA256Hex(dst, norm), true
}

// metaEmail reports whether s matches ^[a-z0-9_.+-]+@[a-z0-9-]+\.[a-z0-9-.]+$.
func metaEmail(s []byte) bool {
	at := bytes.IndexByte(s, '@')
	if at <= 0 {
		return false
	}
	for _, c := range s[:at] {
		if !(isLowerAlnum(c) || c == '_' || c == '.' || c == '+' || c == '-') {
			return false
		}
	}
	domain := s[at+1:]
	dot := -1
	for i, c := range domain {
		switch {
		case isLowerAlnum(c) || c == '-':
		case c == '.':
			if dot < 0 {
				dot = i
			}
		default:
			return false // includes a second '@'
		}
	}
	// [a-z0-9-]+ before the first dot, at least one character after it.
	return dot > 0 && dot < len(domain)-1
}

// EmailGoogle appends to dst the 64-character lowercase hex SHA-256 of
// email normalised as Google's Data Manager and Ads APIs require, and
// reports whether email was acceptable. On false dst is returned unchanged.
//
// Normalisation: remove all white space (not only at the ends) and
// lowercase (Unicode). For gmail.com and googlemail.com addresses, also
// remove every '.' of the local part and everything from the first '+'
// (cloudy.sanfrancisco+shopping@gmail.com → cloudysanfrancisco@gmail.com);
// other domains keep dots and '+'. The result must be valid UTF-8 without
// control characters, at most MaxEmailLen bytes, contain exactly one '@'
// with a non-empty local part, and a domain with a '.' that is neither its
// first nor its last byte. A value that is already 64 hex digits is taken
// to be a hash and is appended lowercased. EmailGoogle does not allocate
// when dst has 64 bytes of spare capacity.
func EmailGoogle(dst, email []byte) ([]byte, bool) {
	var buf [MaxEmailLen + utf8.UTFMax]byte
	n := 0
	for i := 0; i < len(email); {
		r, w := rune(email[i]), 1
		if r >= utf8.RuneSelf {
			r, w = utf8.DecodeRune(email[i:])
			if r == utf8.RuneError && w == 1 {
				return dst, false
			}
		}
		i += w
		switch {
		case unicode.IsSpace(r):
			continue
		case unicode.IsControl(r):
			return dst, false
		}
		if n > MaxEmailLen {
			return dst, false
		}
		if r < utf8.RuneSelf {
			buf[n] = lowerASCII(byte(r))
			n++
		} else {
			n += utf8.EncodeRune(buf[n:], unicode.ToLower(r))
		}
	}
	if n > MaxEmailLen {
		return dst, false
	}
	norm := buf[:n]
	if isHex64(norm) {
		return appendLowerHex(dst, norm), true
	}
	at := bytes.IndexByte(norm, '@')
	if at <= 0 || bytes.IndexByte(norm[at+1:], '@') >= 0 {
		return dst, false
	}
	local, domain := norm[:at], norm[at+1:]
	if dot := bytes.IndexByte(domain, '.'); dot <= 0 || domain[len(domain)-1] == '.' {
		return dst, false
	}
	if string(domain) == "gmail.com" || string(domain) == "googlemail.com" {
		if plus := bytes.IndexByte(local, '+'); plus >= 0 {
			local = local[:plus]
		}
		k := 0
		for _, c := range local {
			if c != '.' {
				local[k] = c
				k++
			}
		}
		if k == 0 {
			return dst, false
		}
		// Close the gap left by the removed bytes: local and domain share buf.
		m := copy(buf[k:], norm[at:])
		norm = buf[:k+m]
	}
	return appendSHA256Hex(dst, norm), true
}

func appendSHA256Hex(dst, b []byte) []byte {
	sum := sha256.Sum256(b)
	return hex.AppendEncode(dst, sum[:])
}

func isHex64(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, c := range b {
		if unhex(c) < 0 {
			return false
		}
	}
	return true
}

func appendLowerHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, lowerASCII(c))
	}
	return dst
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func isLowerAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

// unhex returns the value of hex digit c, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

package anonymize

import "bytes"

// Tracking holds the campaign parameters and ad click identifiers of a
// URL's query. Each field is a sub-slice of the URL given to Parse — still
// percent-encoded (ingest decodes the utm_* values with Unescape) and valid
// only while that buffer is — or nil when the parameter is absent. A parameter present without a
// value ("?gclid" or "?gclid=") gives an empty, non-nil slice.
type Tracking struct {
	UTMSource, UTMMedium, UTMCampaign, UTMTerm, UTMContent []byte

	Gclid, Gbraid, Wbraid, Dclid, Fbclid, LiFatID, Msclkid, Ttclid []byte
}

// Parse resets t and fills it from the query of rawURL (the part between
// the first '?' and any '#'). Names match case-insensitively after
// percent-decoding; the first occurrence of a name wins. Parse does not
// allocate.
//
// Call it on the output of URL so that values are already scrubbed and
// click identifiers are present only when the visitor consented.
func (t *Tracking) Parse(rawURL []byte) {
	*t = Tracking{}
	if i := bytes.IndexByte(rawURL, '#'); i >= 0 {
		rawURL = rawURL[:i]
	}
	i := bytes.IndexByte(rawURL, '?')
	if i < 0 {
		return
	}
	q := rawURL[i+1:]
	for len(q) > 0 {
		p := q
		q = nil
		if i := bytes.IndexByte(p, '&'); i >= 0 {
			p, q = p[:i], p[i+1:]
		}
		name, value, _ := bytes.Cut(p, []byte{'='})
		if value == nil {
			value = p[len(p):]
		}
		var buf [16]byte
		n := 0
		for j := 0; j < len(name); {
			c, w := at(name, j)
			j += w
			if n == len(buf) {
				n = 0 // longer than any name we look for
				break
			}
			buf[n] = lowerASCII(c)
			n++
		}
		if f := t.field(buf[:n]); f != nil && *f == nil {
			*f = value
		}
	}
}

func (t *Tracking) field(name []byte) *[]byte {
	switch string(name) {
	case "utm_source":
		return &t.UTMSource
	case "utm_medium":
		return &t.UTMMedium
	case "utm_campaign":
		return &t.UTMCampaign
	case "utm_term":
		return &t.UTMTerm
	case "utm_content":
		return &t.UTMContent
	case "gclid":
		return &t.Gclid
	case "gbraid":
		return &t.Gbraid
	case "wbraid":
		return &t.Wbraid
	case "dclid":
		return &t.Dclid
	case "fbclid":
		return &t.Fbclid
	case "li_fat_id":
		return &t.LiFatID
	case "msclkid":
		return &t.Msclkid
	case "ttclid":
		return &t.Ttclid
	}
	return nil
}

// Unescape appends s to dst with query escapes decoded: "%XX" becomes the
// byte it encodes and '+' a space. A '%' not followed by two hex digits is
// kept as is. Unescape allocates only when dst lacks capacity.
func Unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c, w := at(s, i)
		if w == 1 && c == '+' {
			c = ' '
		}
		dst = append(dst, c)
		i += w
	}
	return dst
}

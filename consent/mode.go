package consent

import (
	"bytes"
	"errors"
)

// Errors returned by the Consent Mode and GDPR parsers.
var (
	ErrGCS   = errors.New("consent mode: invalid gcs value")
	ErrState = errors.New("consent mode: invalid consent state")
	ErrGDPR  = errors.New("tcf: invalid gdpr value")
)

// State is a tri-state consent signal. The zero value, Unknown, means the
// signal is absent.
type State uint8

// States. Resolve treats any other value as Denied.
const (
	Unknown State = iota
	Granted
	Denied
)

func (s State) String() string {
	switch s {
	case Unknown:
		return "unknown"
	case Granted:
		return "granted"
	case Denied:
		return "denied"
	}
	return "invalid"
}

// ParseState parses a Consent Mode value: "granted" or "denied" (ASCII case
// is ignored). An empty b means the signal is absent: Unknown and no error.
// Anything else is Unknown and ErrState. It does not allocate.
func ParseState(b []byte) (State, error) {
	switch {
	case len(b) == 0:
		return Unknown, nil
	case bytes.EqualFold(b, []byte("granted")):
		return Granted, nil
	case bytes.EqualFold(b, []byte("denied")):
		return Denied, nil
	}
	return Unknown, ErrState
}

// GCS is Google Consent Mode's gcs parameter: ad_storage and
// analytics_storage. The zero value means the parameter is absent.
type GCS struct {
	AdStorage        State
	AnalyticsStorage State
}

// ParseGCS parses a gcs value "G1xy": x is ad_storage, y is
// analytics_storage, '1' granted and '0' denied (G100, G101, G110, G111).
// An empty b means the parameter is absent: the zero GCS and no error.
// Anything else is the zero GCS and ErrGCS. It does not allocate.
func ParseGCS(b []byte) (GCS, error) {
	if len(b) == 0 {
		return GCS{}, nil
	}
	if len(b) != 4 || b[0] != 'G' || b[1] != '1' {
		return GCS{}, ErrGCS
	}
	ad, ok1 := gcsBit(b[2])
	analytics, ok2 := gcsBit(b[3])
	if !ok1 || !ok2 {
		return GCS{}, ErrGCS
	}
	return GCS{AdStorage: ad, AnalyticsStorage: analytics}, nil
}

func gcsBit(c byte) (State, bool) {
	switch c {
	case '1':
		return Granted, true
	case '0':
		return Denied, true
	}
	return Unknown, false
}

// GDPR says whether the GDPR applies to a hit, from the TCF `gdpr` URL
// parameter (or `gdprApplies` of the CMP API). The zero value means unknown.
type GDPR uint8

// GDPR values.
const (
	GDPRUnknown GDPR = iota
	GDPRApplies
	GDPRNotApplies
)

func (g GDPR) String() string {
	switch g {
	case GDPRUnknown:
		return "unknown"
	case GDPRApplies:
		return "applies"
	case GDPRNotApplies:
		return "does not apply"
	}
	return "invalid"
}

// ParseGDPR parses the gdpr parameter: "1" (applies) or "0" (does not
// apply). An empty b is GDPRUnknown and no error; anything else is
// GDPRUnknown and ErrGDPR. It does not allocate.
func ParseGDPR(b []byte) (GDPR, error) {
	switch {
	case len(b) == 0:
		return GDPRUnknown, nil
	case len(b) == 1 && b[0] == '1':
		return GDPRApplies, nil
	case len(b) == 1 && b[0] == '0':
		return GDPRNotApplies, nil
	}
	return GDPRUnknown, ErrGDPR
}

// Package forward holds the platform-neutral types the forward role (package
// relay) hands to the ad-platform clients (forward/meta, forward/google,
// forward/linkedin), the single error classification they all map into, and
// a batching+retry helper. The pipeline never forwards.
//
// Division of labour: the relay decides WHETHER something may be forwarded
// (client instruction, visitor consent, GPC; relay/eligibility.go), and
// ingest normalises and hashes personal data at the edge before it gets
// here. A forwarder only formats, batches, sends and
// reports. It never hashes, never adds data, and sends consent signals exactly
// as given. It refuses (never sends) an item that would leak plaintext where a
// hash is required, and it accounts for every item it was given: each one is
// either accepted by the platform or listed in Result.Failures with a reason.
package forward

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// ConversionSender sends conversions (e.g. job applications) to one
// platform destination.
//
// The returned Result accounts for every input item: an item is accepted
// unless it appears in Result.Failures(). The error is Result.Err(): nil if
// and only if every item was accepted. Items are indexed by their position in
// conversions.
type ConversionSender interface {
	SendConversions(ctx context.Context, dest Destination, conversions []Conversion) (Result, error)
}

// AudienceSender adds members to and removes members from a platform
// audience (Meta custom audience, Google user list, LinkedIn DMP segment).
// Result and error follow the same contract as ConversionSender.
type AudienceSender interface {
	AddMembers(ctx context.Context, dest Destination, members []Member) (Result, error)
	RemoveMembers(ctx context.Context, dest Destination, members []Member) (Result, error)
}

// Secret is a credential. It formats as "[redacted]" with fmt and slog so a
// Destination can be logged safely; use string(s) to get the value. It is
// NOT redacted by encoding/json.
type Secret string

// String returns "[redacted]" (or "" for an empty secret).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString returns the redacted form for %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue redacts the secret in log/slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Destination is where a batch goes on one platform. Which fields matter
// depends on the platform; each client documents its use and rejects a
// destination missing what it needs with a Permanent error.
type Destination struct {
	// ID is the object receiving the data: Meta pixel (conversions) or
	// custom audience id; Google conversion action id (conversions) or user
	// list id (audiences), i.e. Data Manager productDestinationId; LinkedIn
	// conversion rule id (or its urn:lla:llaPartnerConversion URN) or DMP
	// segment id.
	ID string
	// Account is the advertiser account that owns ID. Google: the operating
	// customer id (dashes are stripped). Unused by Meta and LinkedIn.
	Account string
	// AccountType is the Google Data Manager operating account type; empty
	// means "GOOGLE_ADS".
	AccountType string
	// LoginAccount is the Google manager account acting on Account, sent as
	// the login-customer-id header (Ads) or loginAccount (Data Manager).
	// Optional; dashes are stripped.
	LoginAccount string
	// Token is the access token (Meta) or OAuth bearer token (Google,
	// LinkedIn) for this destination; Tokens, when set, replaces it.
	Token Secret
	// Tokens, when set, gives the bearer token of each attempt (Google,
	// LinkedIn): credentials that refresh, see TokenSource.
	Tokens TokenSource
	// TestCode is Meta's test_event_code; leave empty in production.
	TestCode string
}

// HasToken reports whether d carries a token or a TokenSource.
func (d Destination) HasToken() bool { return d.Token != "" || d.Tokens != nil }

// TokenSource gives the access tokens of credentials that refresh (an
// OAuth 2.0 refresh token, a Google service account). It is safe for
// concurrent use.
type TokenSource interface {
	// Token returns an access token that does not expire soon, refreshing
	// it first if needed. A refresh the token endpoint refuses (expired
	// or revoked credentials) is a Permanent *Error wrapping
	// ErrCredentials, whose Reason says when the credentials expired.
	Token(ctx context.Context) (Secret, error)
	// Invalidate tells the source that the platform refused tok (401),
	// so the next Token refreshes instead of returning it again.
	Invalidate(tok Secret)
}

// ErrCredentials is wrapped by the error of a TokenSource whose token
// endpoint refused to refresh: the credentials expired or were revoked,
// which only new credentials fix (retrying will not; neither is anything
// wrong with the items).
var ErrCredentials = errors.New("credentials expired or revoked")

// LogValue logs the destination without its token.
func (d Destination) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", d.ID),
		slog.String("account", d.Account),
		slog.String("account_type", d.AccountType),
		slog.String("login_account", d.LoginAccount),
		slog.String("token", d.Token.String()),
		slog.Bool("refreshing", d.Tokens != nil),
		slog.String("test_code", d.TestCode),
	)
}

// Consent carries the visitor's Consent Mode v2 decisions relevant to ad
// platforms. The zero value is "denied" for both (missing means denied).
// Forwarders send these values truthfully where a platform has a field.
type Consent struct {
	AdUserData        bool
	AdPersonalization bool
}

// Identity holds hashed user identifiers. Every non-empty field must be a
// lowercase hex SHA-256 (64 characters) of the value normalised the way the
// field name says; normalisation and hashing happen upstream. A forwarder
// refuses an item carrying anything else rather than send plaintext.
type Identity struct {
	// Email: SHA-256 of the e-mail trimmed and lowercased (Meta em,
	// Meta audiences EMAIL, LinkedIn SHA256_EMAIL).
	Email string
	// GoogleEmail: SHA-256 of the e-mail in Google's normalisation
	// (trimmed, lowercased, whitespace removed; for gmail.com/googlemail.com
	// dots and anything from '+' removed from the local part).
	GoogleEmail string
	// Phone: SHA-256 of the phone number as digits only with country code,
	// no leading '+' or "00" (Meta ph, Meta audiences PHONE).
	Phone string
	// GooglePhone: SHA-256 of the phone number in E.164 with '+'.
	GooglePhone string
}

// IsZero reports whether no identifier is set.
func (id Identity) IsZero() bool { return id == Identity{} }

// Value is an optional monetary conversion value. The zero Value (empty
// Amount) means "no value".
type Value struct {
	// Amount is a non-negative decimal in the currency's major unit, e.g.
	// "1500" or "1500.50". It is kept as text so no float rounding happens
	// before it reaches a platform.
	Amount string
	// Currency is the ISO 4217 code, e.g. "EUR". Required with Amount.
	Currency string
}

// IsZero reports whether no value is set.
func (v Value) IsZero() bool { return v.Amount == "" }

// Conversion is one conversion event (e.g. a job application) to forward.
type Conversion struct {
	// ID is our stable event id. It is the platforms' dedup key: Meta
	// event_id, Google transactionId / orderId, LinkedIn eventId.
	ID string
	// Name is the event name, e.g. "SubmitApplication" or "Lead" (Meta
	// event_name). Google and LinkedIn identify the conversion by the
	// Destination instead.
	Name string
	// Time is when the conversion happened.
	Time time.Time
	// SourceURL is the page the event happened on.
	SourceURL string
	// UserAgent is the visitor's User-Agent header, unhashed.
	UserAgent string
	// IP is the visitor's address, only when consented; the zero Addr means
	// "do not send".
	IP netip.Addr
	// User holds the hashed identifiers.
	User Identity
	// Google click identifiers (at most one is normally set).
	GCLID, GBRAID, WBRAID string
	// FBC and FBP are Meta's _fbc / _fbp cookie values (fb.1.{ms}.{...}),
	// sent unhashed and untruncated.
	FBC, FBP string
	// LiFatID is LinkedIn's first-party ads tracking UUID (li_fat_id).
	LiFatID string
	// Value is the optional conversion value.
	Value Value
	// Consent is sent to Google (adUserData / adPersonalization).
	Consent Consent
	// LDU marks the event for Meta Limited Data Use
	// (data_processing_options ["LDU"], country 0, state 0).
	LDU bool
}

// Member is one audience member.
type Member struct {
	// ID is our stable key for the member (e.g. a visitor id). It is not
	// sent; it labels the member in Result failures.
	ID string
	// User holds the hashed identifiers.
	User Identity
	// ExternalID is an advertiser-side id sent unhashed as Meta EXTERN_ID.
	// Optional.
	ExternalID string
	// Consent is sent per member to Google.
	Consent Consent
}

// IsSHA256 reports whether s looks like a hex SHA-256 digest: exactly 64
// lowercase hexadecimal characters.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Check returns a Permanent *Error naming the first non-empty field that is
// not a hex SHA-256 (see IsSHA256), or nil. It never echoes the value.
func (id Identity) Check() error {
	for _, f := range []struct{ name, v string }{
		{"Email", id.Email}, {"GoogleEmail", id.GoogleEmail},
		{"Phone", id.Phone}, {"GooglePhone", id.GooglePhone},
	} {
		if f.v != "" && !IsSHA256(f.v) {
			return Rejectf("identity %s is not a lowercase hex SHA-256; refusing to send it", f.name)
		}
	}
	return nil
}

// Check returns a Permanent *Error if v is set but malformed: Amount must
// be a non-negative decimal ("12", "12.50") and Currency three uppercase
// letters.
func (v Value) Check() error {
	if v.IsZero() {
		if v.Currency != "" {
			return Rejectf("value has a currency but no amount")
		}
		return nil
	}
	if !isDecimal(v.Amount) {
		return Rejectf("value amount %q is not a non-negative decimal", v.Amount)
	}
	if len(v.Currency) != 3 || strings.IndexFunc(v.Currency, func(r rune) bool { return r < 'A' || r > 'Z' }) >= 0 {
		return Rejectf("value currency %q is not an ISO 4217 code", v.Currency)
	}
	return nil
}

func isDecimal(s string) bool {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") {
		return false
	}
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

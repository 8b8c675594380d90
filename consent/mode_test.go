package consent

import (
	"errors"
	"testing"
)

func TestParseGCS(t *testing.T) {
	tests := []struct {
		in      string
		want    GCS
		wantErr bool
	}{
		{"", GCS{}, false},
		{"G100", GCS{AdStorage: Denied, AnalyticsStorage: Denied}, false},
		{"G111", GCS{AdStorage: Granted, AnalyticsStorage: Granted}, false},
		{"G101", GCS{AdStorage: Denied, AnalyticsStorage: Granted}, false},
		{"G110", GCS{AdStorage: Granted, AnalyticsStorage: Denied}, false},
		{"G1", GCS{}, true},
		{"G11", GCS{}, true},
		{"G1111", GCS{}, true},
		{"G211", GCS{}, true},
		{"g111", GCS{}, true},
		{"G1-1", GCS{}, true},
		{"G12 ", GCS{}, true},
		{"X111", GCS{}, true},
		{"G1\x001", GCS{}, true},
	}
	for _, tt := range tests {
		got, err := ParseGCS([]byte(tt.in))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseGCS(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrGCS) {
			t.Errorf("ParseGCS(%q) error %v is not ErrGCS", tt.in, err)
		}
	}
}

func TestParseState(t *testing.T) {
	tests := []struct {
		in      string
		want    State
		wantErr bool
	}{
		{"", Unknown, false},
		{"granted", Granted, false},
		{"denied", Denied, false},
		{"GRANTED", Granted, false},
		{"Denied", Denied, false},
		{"grant", Unknown, true},
		{"granted ", Unknown, true},
		{"1", Unknown, true},
		{"true", Unknown, true},
		{"deniedx", Unknown, true},
	}
	for _, tt := range tests {
		got, err := ParseState([]byte(tt.in))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseState(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	for s, want := range map[State]string{Unknown: "unknown", Granted: "granted", Denied: "denied", 9: "invalid"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q", s, got)
		}
	}
}

func TestParseGDPR(t *testing.T) {
	tests := []struct {
		in      string
		want    GDPR
		wantErr bool
	}{
		{"", GDPRUnknown, false},
		{"1", GDPRApplies, false},
		{"0", GDPRNotApplies, false},
		{"2", GDPRUnknown, true},
		{"01", GDPRUnknown, true},
		{"true", GDPRUnknown, true},
	}
	for _, tt := range tests {
		got, err := ParseGDPR([]byte(tt.in))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseGDPR(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	for g, want := range map[GDPR]string{GDPRUnknown: "unknown", GDPRApplies: "applies", GDPRNotApplies: "does not apply", 7: "invalid"} {
		if got := g.String(); got != want {
			t.Errorf("GDPR(%d).String() = %q", g, got)
		}
	}
}

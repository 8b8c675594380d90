package fakeserver

import (
	"encoding/json"
	"errors"
	"testing"
)

type inner struct {
	Amount *string `json:"amount"`
}

type doc struct {
	Name  *string          `json:"event_name"`
	Time  *int64           `json:"event_time"`
	Value *inner           `json:"conversionValue"`
	List  []inner          `json:"list"`
	Raw   json.RawMessage  `json:"raw"`
	Map   map[string]inner `json:"map"`
	Any   map[string]any   `json:"any"`
}

func TestDecode(t *testing.T) {
	f := func(in, kind, path string) {
		t.Helper()
		var d doc
		err := Decode([]byte(in), &d)
		if kind == "" {
			if err != nil {
				t.Errorf("%s: %v", in, err)
			}
			return
		}
		var de *DecodeError
		if !errors.As(err, &de) || de.Kind != kind || de.Path != path {
			t.Errorf("%s: err = %#v, want %s at %q", in, err, kind, path)
		}
	}
	f(`{"event_name":"x","event_time":1,"conversionValue":{"amount":"1"},"list":[{"amount":"2"}],"raw":{"anything":1},"any":{"k":[1]}}`, "", "")
	f(`{"Event_Name":"x"}`, "unknown field", "Event_Name")
	f(`{"event_name":"x","extra":1}`, "unknown field", "extra")
	f(`{"list":[{"amount":"1"},{"amont":"1"}]}`, "unknown field", "list[1].amont")
	f(`{"map":{"a":{"x":1}}}`, "unknown field", "map.a.x")
	f(`{"event_time":"1"}`, "type", "event_time")
	f(`{"conversionValue":{"amount":1500}}`, "type", "conversionValue.amount")
	f(`{"event_time":1.5}`, "type", "event_time")
	f(`{} {}`, "syntax", "")
	f(`{`, "syntax", "")
	if got := (&DecodeError{Path: "list[1].amount", Kind: "type"}).Slash(); got != "/list/1/amount" {
		t.Errorf("Slash = %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"event_name":"x","list":[{"amount":"2"}]}`))
	f.Add([]byte(`{"map":{"a":{"amount":null}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		err := Decode(data, &d)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is not a *DecodeError: %v", err)
			}
		}
	})
}

func TestIsSHA256(t *testing.T) {
	h := "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"
	if !IsSHA256(h) || IsSHA256(h[:63]) || IsSHA256("F"+h[1:]) || !IsHexish("F"+h[1:]) || IsHexish("g"+h[1:]) {
		t.Error("hash predicates")
	}
	if SHA256("mary@example.com") != h {
		t.Error("SHA256 vector")
	}
}

package token

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestNumericDateMember(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want time.Time
		bad  bool
	}{
		{name: "an integer is seconds since the epoch", raw: `1700000000`, want: time.Unix(1700000000, 0)},
		{name: "a fraction keeps sub-second precision", raw: `1700000000.25`, want: time.Unix(1700000000, 250000000)},
		{name: "an exponent is a number too", raw: `1.7e9`, want: time.Unix(1700000000, 0)},
		{name: "zero is the epoch", raw: `0`, want: time.Unix(0, 0)},
		{name: "the end of year 9999 is the largest accepted", raw: `253402300799`, want: time.Unix(253402300799, 0)},
		{name: "one second after year 9999 is refused", raw: `253402300800`, bad: true},
		{name: "1e300 is refused rather than overflowing", raw: `1e300`, bad: true},
		{name: "1e400 is refused", raw: `1e400`, bad: true},
		{name: "a negative time is refused", raw: `-1`, bad: true},
		{name: "a numeric string is refused", raw: `"1700000000"`, bad: true},
		{name: "null is refused", raw: `null`, bad: true},
		{name: "a boolean is refused", raw: `true`, bad: true},
		{name: "an array is refused", raw: `[1700000000]`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := numericDateMember(map[string]json.RawMessage{"exp": json.RawMessage(tt.raw)}, "exp")
			if tt.bad {
				if err == nil {
					t.Fatalf("accepted %s as %v", tt.raw, got)
				}
				return
			}
			if err != nil || !ok || !got.Equal(tt.want) {
				t.Fatalf("got %v %v %v, want %v", got, ok, err, tt.want)
			}
		})
	}
}

func TestDecodeObject(t *testing.T) {
	tests := []struct {
		name   string
		json   string
		detail string
	}{
		{name: "an object is decoded", json: `{"a":1,"b":{"a":2,"a":3}}`},
		{name: "whitespace around the object is fine", json: " \n{\"a\":1}\n "},
		{name: "a duplicate member is refused", json: `{"a":1,"a":1}`, detail: DetailDuplicateClaim},
		{name: "a duplicate spelled with an escape is refused", json: `{"acr":"aal1","\u0061cr":"aal3"}`, detail: DetailDuplicateClaim},
		{name: "members differing only in case are distinct", json: `{"acr":"aal1","ACR":"aal3"}`},
		{name: "an array is refused", json: `[]`, detail: DetailMalformed},
		{name: "a string is refused", json: `"x"`, detail: DetailMalformed},
		{name: "a second object after the first is refused", json: `{}{}`, detail: DetailMalformed},
		{name: "trailing garbage is refused", json: `{"a":1} x`, detail: DetailMalformed},
		{name: "an unterminated object is refused", json: `{"a":1`, detail: DetailMalformed},
		{name: "a bad value is refused", json: `{"a":tru}`, detail: DetailMalformed},
		{name: "empty input is refused", json: ``, detail: DetailMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeObject([]byte(tt.json), "payload")
			wantDetail(t, err, tt.detail)
		})
	}
}

func TestSplitScope(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{"a b", []string{"a", "b"}},
		{"  a   b  ", []string{"a", "b"}},
		{"payouts:write https://api/x", []string{"payouts:write", "https://api/x"}},
	}
	for _, tt := range tests {
		t.Run("scope "+tt.in+" splits on spaces", func(t *testing.T) {
			if got := splitScope(tt.in); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

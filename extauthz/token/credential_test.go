package token

import (
	"errors"
	"strings"
	"testing"
)

func TestReadCredential(t *testing.T) {
	const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	long := strings.Repeat("a", MaxTokenBytes+1)
	atLimit := strings.Repeat("a", MaxTokenBytes)
	tests := []struct {
		name   string
		values []string
		want   string
		err    error  // ErrNoToken, or nil
		detail string // InvalidError detail
	}{
		{name: "a Bearer token is taken", values: []string{"Bearer " + tok}, want: tok},
		{name: "the lower-case scheme bearer is accepted", values: []string{"bearer " + tok}, want: tok},
		{name: "a mixed-case scheme is accepted", values: []string{"BeArEr " + tok}, want: tok},
		{name: "several spaces after the scheme are tolerated", values: []string{"Bearer    " + tok}, want: tok},
		{name: "a tab after the scheme is tolerated", values: []string{"Bearer\t" + tok}, want: tok},
		{name: "blanks around the value are ignored", values: []string{"  Bearer " + tok + " \t"}, want: tok},
		{name: "b64token padding is allowed", values: []string{"Bearer abc=="}, want: "abc=="},
		{name: "a token of exactly the limit is accepted", values: []string{"Bearer " + atLimit}, want: atLimit},
		{name: "no header is no token", values: nil, err: ErrNoToken},
		{name: "an empty header is no token", values: []string{""}, err: ErrNoToken},
		{name: "a blank header is no token", values: []string{"   "}, err: ErrNoToken},
		{name: "Bearer without a token is no token", values: []string{"Bearer"}, err: ErrNoToken},
		{name: "Bearer followed by blanks only is no token", values: []string{"Bearer   "}, err: ErrNoToken},
		{name: "the Basic scheme is no token", values: []string{"Basic dXNlcjpwYXNz"}, err: ErrNoToken},
		{name: "a scheme that only starts with bearer is no token", values: []string{"Bearerx " + tok}, err: ErrNoToken},
		{name: "a bare token without scheme is no token", values: []string{tok}, err: ErrNoToken},
		{name: "two header values are multiple credentials", values: []string{"Bearer " + tok, "Bearer " + tok}, detail: DetailMultipleCredentials},
		{name: "two header values are multiple credentials even when one is empty", values: []string{"Bearer " + tok, ""}, detail: DetailMultipleCredentials},
		{name: "a comma-joined value is multiple credentials", values: []string{"Bearer " + tok + ", Bearer " + tok}, detail: DetailMultipleCredentials},
		{name: "a comma-joined value with another scheme is multiple credentials", values: []string{"Basic dXNlcjpwYXNz, Bearer " + tok}, detail: DetailMultipleCredentials},
		{name: "a token containing a space is malformed", values: []string{"Bearer abc def"}, detail: DetailMalformed},
		{name: "a token containing a tab is malformed", values: []string{"Bearer abc\tdef"}, detail: DetailMalformed},
		{name: "a token containing a quote is malformed", values: []string{`Bearer "abc"`}, detail: DetailMalformed},
		{name: "a token with characters after padding is malformed", values: []string{"Bearer ab=c"}, detail: DetailMalformed},
		{name: "a token of only padding is malformed", values: []string{"Bearer =="}, detail: DetailMalformed},
		{name: "a token longer than 16384 bytes is too large", values: []string{"Bearer " + long}, detail: DetailTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cred, err := ReadCredential(tt.values)
			got := cred.Token
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
			default:
				wantDetail(t, err, tt.detail)
			}
			if got != tt.want {
				t.Fatalf("token = %q, want %q", got, tt.want)
			}
		})
	}
}

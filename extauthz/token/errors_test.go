package token

import (
	"errors"
	"fmt"
	"testing"
)

func TestInvalidError(t *testing.T) {
	cause := errors.New("boom")
	tests := []struct {
		name       string
		err        error
		wantText   string
		wantDetail string
		wantCause  bool
	}{
		{"an invalid error without cause names its detail", &InvalidError{Detail: DetailExpired}, "invalid token: expired", DetailExpired, false},
		{"an invalid error with cause names both", &InvalidError{Detail: DetailMalformed, Err: cause}, "invalid token: malformed: boom", DetailMalformed, true},
		{"a wrapped invalid error keeps its detail", fmt.Errorf("verify: %w", &InvalidError{Detail: DetailBadSignature, Err: cause}), "verify: invalid token: bad_signature: boom", DetailBadSignature, true},
		{"a keys-unavailable error is not invalid", fmt.Errorf("issuer %q: %w", "x", ErrKeysUnavailable), `issuer "x": keys unavailable`, "", false},
		{"no token is not invalid", ErrNoToken, "no bearer token", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err.Error() != tt.wantText {
				t.Fatalf("text %q, want %q", tt.err.Error(), tt.wantText)
			}
			if got := InvalidDetail(tt.err); got != tt.wantDetail {
				t.Fatalf("detail %q, want %q", got, tt.wantDetail)
			}
			if errors.Is(tt.err, cause) != tt.wantCause {
				t.Fatalf("errors.Is(cause) = %v", !tt.wantCause)
			}
		})
	}
}

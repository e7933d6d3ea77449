package token

import (
	"testing"

	"github.com/stepup-authz/stepup-authz/policy"
)

// TestHeaderSafe: sub and acr become upstream header values, so every control
// character is refused (C0 including TAB, DEL, C1 as UTF-8) and so is invalid UTF-8;
// everything else printable is allowed.
func TestHeaderSafe(t *testing.T) {
	tests := []struct {
		name string
		s    string
		safe bool
	}{
		{"plain ASCII is safe", "user-1@example.com", true},
		{"the empty string is safe", "", true},
		{"a space is safe", "Jane Doe", true},
		{"TAB (0x09) is refused", "a\tb", false},
		{"LF is refused", "a\nb", false},
		{"CR LF with a forged header is refused", "u\r\nx-stepup-acr: aal3", false},
		{"NUL is refused", "a\x00b", false},
		{"0x1f, the last C0 control, is refused", "a\x1fb", false},
		{"DEL (0x7f) is refused", "a\x7fb", false},
		{"U+0080, the first C1 control, is refused", "a\u0080b", false},
		{"U+0085 (NEL) is refused", "a\u0085b", false},
		{"U+009F, the last C1 control, is refused", "a\u009fb", false},
		{"U+00A0 (no-break space), just past C1, is safe", "a\u00a0b", true},
		{"Latin letters with accents are safe", "Zoë Müller", true},
		{"an emoji is safe", "user-🔐", true},
		{"a lone continuation byte is refused", "a\x80b", false},
		{"a truncated UTF-8 sequence is refused", "a\xc3", false},
		{"an overlong encoding of '/' is refused", "a\xc0\xafb", false},
		{"an encoded surrogate is refused", "a\xed\xa0\x80b", false},
		{"the raw bytes of C1 U+0085 are refused", "a\xc2\x85b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HeaderSafe(tt.s); got != tt.safe {
				t.Fatalf("HeaderSafe(%q) = %v, want %v", tt.s, got, tt.safe)
			}
		})
	}
}

// TestHeaderSafeClaims: the rule looks at sub always and at acr when present.
func TestHeaderSafeClaims(t *testing.T) {
	tests := []struct {
		name   string
		claims policy.Claims
		detail string
	}{
		{"safe sub and acr pass", policy.Claims{Subject: "u", ACR: "aal2", HasACR: true}, ""},
		{"a TAB in sub is an unsafe claim", policy.Claims{Subject: "u\t"}, DetailUnsafeClaim},
		{"a C1 control in acr is an unsafe claim", policy.Claims{Subject: "u", ACR: "aal2\u0085", HasACR: true}, DetailUnsafeClaim},
		{"invalid UTF-8 in acr is an unsafe claim", policy.Claims{Subject: "u", ACR: "\xff", HasACR: true}, DetailUnsafeClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantDetail(t, HeaderSafeClaims{}.Check(&Principal{Claims: tt.claims}), tt.detail)
		})
	}
}

package token

import "unicode/utf8"

// ClaimsRule is a rule every principal's claims must meet whichever verifier produced
// them and whatever the route asks: the last stage of the pipeline.
type ClaimsRule interface {
	// Check returns nil when p's claims are acceptable, an *InvalidError otherwise.
	Check(p *Principal) error
}

// DetailUnsafeClaim: sub or acr holds a character that cannot go into a header value.
const DetailUnsafeClaim = "unsafe_claim"

// HeaderSafeClaims refuses principals whose sub or acr could not be passed upstream
// verbatim in x-stepup-sub and x-stepup-acr.
type HeaderSafeClaims struct{}

// Check implements ClaimsRule.
func (HeaderSafeClaims) Check(p *Principal) error {
	c := &p.Claims
	if !HeaderSafe(c.Subject) {
		return invalid(DetailUnsafeClaim, "sub holds a control character or is not UTF-8")
	}
	if c.HasACR && !HeaderSafe(c.ACR) {
		return invalid(DetailUnsafeClaim, "acr holds a control character or is not UTF-8")
	}
	return nil
}

// HeaderSafe reports whether s is valid UTF-8 without control characters: no C0
// control (U+0000–U+001F, TAB included, though RFC 9110 §5.5 allows it in a field
// value: a claim is not meant to carry one, and a proxy may fold it), no DEL
// (U+007F) and no C1 control (U+0080–U+009F, which some decoders turn into C0 ones
// or line breaks: U+0085 is NEL). CR and LF would be header injection.
func HeaderSafe(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || (r >= 0x80 && r <= 0x9f) {
			return false
		}
		i += size
	}
	return true
}

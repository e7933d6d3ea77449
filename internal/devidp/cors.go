package devidp

import (
	"net/http"
	"slices"
)

// WithCORS lets pages on the given origins call the token endpoint from a
// browser (the `stepup-authz dev` demo page mints its tokens there). Only
// POST /token gets CORS headers, and only for an origin in the list; a
// preflight (OPTIONS /token) from one of them is answered here. Other
// origins get no CORS headers, so their scripts cannot read a token.
func WithCORS(h http.Handler, origins []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if r.URL.Path != "/token" || origin == "" {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		allowed := slices.Contains(origins, origin)
		if allowed {
			w.Header().Set("Access-Control-Allow-Origin", origin)
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if allowed {
				w.Header().Set("Access-Control-Allow-Methods", "POST")
				// dpop: a browser asks for a DPoP-bound token with a proof (RFC 9449 §5).
				w.Header().Set("Access-Control-Allow-Headers", "content-type, dpop")
				w.Header().Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

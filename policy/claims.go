package policy

import "time"

// Claims are the verified facts about a token that decisions are made on.
// The token verifier fills them; policy never sees the raw JWT.
type Claims struct {
	Issuer   string
	Subject  string
	ClientID string
	// Gty is the grant type claim some IdPs add ("client-credentials").
	Gty string

	// ACR is the raw acr claim; HasACR tells an absent claim from "".
	ACR    string
	HasACR bool
	// ACRS is Microsoft Entra ID's acrs claim: the authentication contexts the
	// token satisfies ("c1", ...). Read only for issuers with level_claim acrs.
	ACRS []string
	AMR  []string

	// AuthTime and IssuedAt are zero when the claim is absent.
	AuthTime time.Time
	IssuedAt time.Time
	Expiry   time.Time

	// Scopes come from "scope" (space-separated) or "scp" (array).
	Scopes []string

	// Confirmation is the token's cnf binding, already checked against the
	// request by the token pipeline.
	Confirmation Confirmation
}

package token

// Binder checks that a principal is bound to what the request presents: the binding
// stage of the pipeline, run on every request after the principal is known (cached
// or verified), because a proof of possession is per request. A token whose cnf
// claim binds it to a key must be refused when the request does not prove that key.
//
// Sender-constrained tokens (binding_sender.go) are held here whatever the config
// says: DPoPBinding (RFC 9449: cnf.jkt against the thumbprint of the DPoP proof's
// key, and no bound token as Bearer) and CertificateBinding (RFC 8705:
// cnf["x5t#S256"] against the client certificate's SHA-256 thumbprint).
type Binder interface {
	// Bind returns nil when p may be used with cred, an *InvalidError otherwise.
	Bind(cred Credential, p *Principal) error
}

package envoy

import _ "embed"

// The shipped bootstraps, embedded so `stepup-authz dev` runs from the binary alone.
var (
	//go:embed envoy.yaml
	Bootstrap []byte
	//go:embed envoy-context-extensions.yaml
	BootstrapContextExtensions []byte
	//go:embed envoy-jwt-authn.yaml
	BootstrapJWTAuthn []byte
)

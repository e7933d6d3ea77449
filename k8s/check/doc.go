// Package check renders the kustomizations under k8s/ with the kustomize
// library (what `kubectl kustomize` runs), decodes every object strictly into
// its real API type, and checks what a cluster would only reveal at run time:
// the security context, probes, ports that line up from the config's listen
// addresses to the container and the Service, selectors that select, the
// server config in the ConfigMap, Istio's extension provider and CUSTOM
// policies, the Envoy config in EnvoyFilter patches (against the Envoy v3 API),
// Envoy Gateway's SecurityPolicy references, and that a client certificate
// can reach the server through x-forwarded-client-cert and nobody can forge
// it there (certificates.go).
//
// It is a separate Go module so that the product's own dependency graph stays
// free of Kubernetes, Istio, Gateway API and kustomize.
package check

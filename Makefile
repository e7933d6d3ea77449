# Build, test and package stepup-authz. Only `go` is needed for everything but
# the image targets, which need docker (buildx for image-push).

IMAGE     ?= ghcr.io/stepup-authz/stepup-authz
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PLATFORMS ?= linux/amd64,linux/arm64
LDFLAGS   := -s -w -X main.version=$(VERSION)

.PHONY: build test test-k8s vet lint image image-push render

build: ## the static binary, as the image builds it: the server only (no dev, no bench)
	CGO_ENABLED=0 go build -tags serveronly -trimpath -ldflags "$(LDFLAGS)" -o bin/stepup-authz ./cmd/stepup-authz

test: ## every test, the product's and the manifest checks
	go test -race ./...
	cd k8s/check && go test -race ./...

test-k8s: ## the manifest, overlay and image checks only
	cd k8s/check && go test ./...

vet:
	go vet ./...
	cd k8s/check && go vet ./...

lint: ## staticcheck, the version pinned in tools/go.mod, in both modules (as .ci/run does)
	cd tools && go build -o ../bin/ tool
	bin/staticcheck ./...
	bin/staticcheck -tags serveronly ./cmd/...
	cd k8s/check && ../../bin/staticcheck ./...

image: ## docker build for this machine's platform
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .

image-push: ## multi-arch build and push
	docker buildx build --platform $(PLATFORMS) --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) --push .

render: ## print every overlay as kubectl would apply it
	@for d in k8s/base k8s/overlays/istio k8s/overlays/envoy-gateway; do \
		echo "# --- $$d"; kubectl kustomize $$d; done

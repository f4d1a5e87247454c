# The one test command: installs what a fresh machine lacks, then runs every
# check CI runs. See README.md.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
# Packages with concurrency worth the race detector. The end-to-end hunts
# (./e2e) run without it: it slows the generator.
RACE_PKGS ?= ./internal/... ./schemas/...

.PHONY: test deps lint unit e2e build demo

test: deps lint unit e2e

deps:
	./scripts/install-deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

unit:
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 20m ./cmd/... ./examples/...

# End-to-end hunts of the zoo, with short steps; -v prints the accuracy table.
e2e:
	$(GO) test -count=1 -timeout 40m -v ./e2e/...

build:
	$(GO) build -o bin/chokepoint ./cmd/chokepoint

demo:
	$(GO) run ./cmd/chokepoint demo

# modelrt — see README.md. `make test` is what CI runs (.ci/run).
GO      ?= go
BIN     := bin
ORT_LIB := $(CURDIR)/.deps/onnxruntime/libonnxruntime.so.1
export ONNXRUNTIME_SHARED_LIBRARY_PATH ?= $(ORT_LIB)

# Packages with concurrency run under the race detector; the rest run once without it.
RACE_PKGS := ./sdk/... ./runtime/... ./plugins/native/... ./native/kernels/... ./native/gpt2/...
RACE_RE   := modelrt/(sdk|runtime|plugins/native|native/kernels|native/gpt2)(/|$$)

.PHONY: setup build build-native test check run clean

setup:
	scripts/setup.sh

# The CLI and the native backend: pure Go, no cgo, no ONNX Runtime.
build-native:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/modelrt ./cmd/modelrt
	CGO_ENABLED=0 $(GO) build -o $(BIN)/modelrt-native ./plugins/native

build: build-native
	@if ls plugins/onnxrt/*.go >/dev/null 2>&1; then \
		echo "CGO_ENABLED=1 $(GO) build -o $(BIN)/modelrt-onnxrt ./plugins/onnxrt"; \
		CGO_ENABLED=1 $(GO) build -o $(BIN)/modelrt-onnxrt ./plugins/onnxrt; fi

check:
	@out=$$(git ls-files '*.go' | grep -v '\.pb\.go$$' | xargs gofmt -l); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: setup build check
	$(GO) test -count=1 -race $(RACE_PKGS)
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -E '$(RACE_RE)')
	# Too big for the race detector (three GPT-2 124M models), so it runs here without it.
	$(GO) test -count=1 -run 'TestQuantized124MShape' ./native/gpt2/

# The main job on the embedded default: Go code completion by the demo model on the native
# backend (examples/pipelines/default). Needs only Go.
run: build-native
	$(BIN)/modelrt run --plugin-dir $(BIN) examples/pipelines/default --input grid=$(BIN)/images.png

clean:
	rm -rf $(BIN)

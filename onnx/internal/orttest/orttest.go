//go:build cgo

// Package orttest runs ONNX graphs through ONNX Runtime (github.com/yalue/onnxruntime_go) for the
// tests of onnx/...; it needs cgo and the library that scripts/install-onnxruntime.sh installs.
//
// Only tests import it, so the rest of onnx/ stays pure Go and builds with CGO_ENABLED=0.
package orttest

import (
	"fmt"
	"os"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelrt/modelrt/onnx/ortlib"
)

var (
	initOnce sync.Once
	initErr  error
	libPath  string
)

// Init initialises the ONNX Runtime environment once per test binary. Without the library the
// test fails when CI=true (CI installs it) and is skipped with the reason otherwise.
func Init(tb testing.TB) {
	tb.Helper()
	initOnce.Do(func() {
		libPath, initErr = ortlib.Find()
		if initErr != nil {
			return
		}
		ort.SetSharedLibraryPath(libPath)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			initErr = fmt.Errorf("initialise ONNX Runtime from %s: %w", libPath, err)
		}
	})
	if initErr == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("ONNX Runtime is required in CI: %v", initErr)
	}
	tb.Skipf("ONNX Runtime not available (set CI=true to make this a failure): %v", initErr)
}

// Options returns session options for deterministic single-threaded tests; the caller destroys
// them.
func Options(tb testing.TB) *ort.SessionOptions {
	tb.Helper()
	o, err := ort.NewSessionOptions()
	if err != nil {
		tb.Fatal(err)
	}
	if err := o.SetIntraOpNumThreads(1); err != nil {
		tb.Fatal(err)
	}
	if err := o.SetInterOpNumThreads(1); err != nil {
		tb.Fatal(err)
	}
	return o
}

// Session opens path with the given input and output names; it is destroyed when the test ends.
func Session(tb testing.TB, path string, inputs, outputs []string) *ort.DynamicAdvancedSession {
	tb.Helper()
	o := Options(tb)
	defer o.Destroy()
	s, err := ort.NewDynamicAdvancedSession(path, inputs, outputs, o)
	if err != nil {
		tb.Fatalf("ONNX Runtime session for %s: %v", path, err)
	}
	tb.Cleanup(func() { s.Destroy() })
	return s
}

// Tensor makes an input tensor that is destroyed when the test ends.
func Tensor[T ort.TensorData](tb testing.TB, shape []int64, data []T) *ort.Tensor[T] {
	tb.Helper()
	t, err := ort.NewTensor(ort.NewShape(shape...), data)
	if err != nil {
		tb.Fatalf("tensor %v: %v", shape, err)
	}
	tb.Cleanup(func() { t.Destroy() })
	return t
}

// Run runs s on inputs and returns the outputs ONNX Runtime allocated; they are destroyed when
// the test ends.
func Run(tb testing.TB, s *ort.DynamicAdvancedSession, inputs []ort.Value, nOut int) []ort.Value {
	tb.Helper()
	outs := make([]ort.Value, nOut)
	if err := s.Run(inputs, outs); err != nil {
		tb.Fatalf("run: %v", err)
	}
	tb.Cleanup(func() {
		for _, o := range outs {
			if o != nil {
				o.Destroy()
			}
		}
	})
	return outs
}

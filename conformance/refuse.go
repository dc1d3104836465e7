package conformance

import (
	"context"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk"
)

// Refusal is a request a backend must refuse with InvalidArgument (docs/sdk.md, Limits): Want
// lists what the message must name — the input and the limit it exceeds.
type Refusal struct {
	Name    string
	Request *sdk.InferRequest
	Want    []string
}

// CheckRefusals sends each request to b (an in-process backend or a *plugin.Plugin) and reports
// every one that is not InvalidArgument naming all of its Want.
func CheckRefusals(t testing.TB, b sdk.Backend, refusals []Refusal) {
	t.Helper()
	for _, r := range refusals {
		_, err := b.Infer(context.Background(), r.Request)
		if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
			t.Errorf("%s: err = %v, want InvalidArgument", r.Name, err)
			continue
		}
		for _, w := range r.Want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not name %q", r.Name, err, w)
			}
		}
	}
}

// IDs is an "input_ids" input of batch rows of n copies of id.
func IDs(batch, n int, id int64) map[string]*sdk.Tensor {
	x := make([]int64, batch*n)
	for i := range x {
		x[i] = id
	}
	return map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{int64(batch), int64(n)}, x)}
}

// Zeros is an input called name: a float32 tensor of zeros of the given shape.
func Zeros(name string, shape ...int64) map[string]*sdk.Tensor {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return map[string]*sdk.Tensor{name: sdk.FromFloat32(shape, make([]float32, n))}
}

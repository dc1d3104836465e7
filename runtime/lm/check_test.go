package lm

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelrt/modelrt/plugins/native/backend"
	"github.com/modelrt/modelrt/sdk"
)

// counting counts the Infer calls that reach the backend.
type counting struct {
	Backend
	calls atomic.Int64
}

func (c *counting) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	c.calls.Add(1)
	return c.Backend.Infer(ctx, req)
}

// TestStepChecksBeforeSending: a step beyond the context or with an id outside the vocabulary
// is refused by the host with the backend's InvalidArgument, without a call to the backend.
func TestStepChecksBeforeSending(t *testing.T) {
	ctx := context.Background()
	b := &counting{Backend: backend.New()}
	m, err := Load(ctx, b, "odd", "../../testdata/models/gpt2-odd", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.MaxInferBytes != sdk.DefaultMaxInferBytes {
		t.Errorf("MaxInferBytes = %d, want the backend's published %d", m.MaxInferBytes, sdk.DefaultMaxInferBytes)
	}
	s, err := m.Open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Step(ctx, make([]int64, m.Context-1), 1, m.Context-1, nil); err != nil {
		t.Fatal(err)
	}
	sent := b.calls.Load()
	for _, c := range []struct {
		name string
		ids  []int64
		want string
	}{
		{"past the context", []int64{1, 2}, "n_positions = 32"},
		{"outside the vocabulary", []int64{int64(m.VocabSize)}, "outside the vocabulary"},
	} {
		_, err := s.Step(ctx, c.ids, 1, len(c.ids), nil)
		if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "input_ids") || !strings.Contains(err.Error(), "not sent") {
			t.Errorf("%s: %v, want InvalidArgument naming input_ids and %q", c.name, err, c.want)
		}
	}
	if got := b.calls.Load() - sent; got != 0 {
		t.Errorf("%d refused steps reached the backend", got)
	}
	// The last position of the context still fits.
	if _, err := s.Step(ctx, []int64{1}, 1, 1, nil); err != nil {
		t.Errorf("the last position: %v", err)
	}
}

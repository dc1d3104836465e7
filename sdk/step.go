package sdk

import (
	"context"
	"fmt"
	"slices"
)

// CapabilityStep in DescribeResponse.Capabilities says that the backend implements Stepper:
// one call advances several sessions of a causal-lm model (continuous batching).
const CapabilityStep = "step"

// Stepper is implemented by causal-lm backends that advance several sessions in one call. A
// backend that implements it lists CapabilityStep in its DescribeResponse; the host never calls
// Step on a backend that does not, and falls back to one Infer per session (StepEach).
type Stepper interface {
	// Step appends each item's TokenIDs to its session's KV cache (each session has its own
	// length) and returns the logits of each item's last new position: Logits float32 (N,V),
	// row i for Items[i]. Every session must belong to Model and have batch size 1, and
	// appear at most once; an error leaves every session unchanged.
	Step(ctx context.Context, req *StepRequest) (*StepResponse, error)
}

// StepRequest advances the sessions of Items, all of model Model.
type StepRequest struct {
	Model string
	Items []StepItem
}

// StepItem is one session's part of a StepRequest.
type StepItem struct {
	Session  string
	TokenIDs []int64
}

// StepResponse carries one logits row per item: float32 (N, V).
type StepResponse struct {
	Logits *Tensor
}

// HasCapability reports whether d lists capability c.
func HasCapability(d *DescribeResponse, c string) bool {
	return d != nil && slices.Contains(d.Capabilities, c)
}

// ValidateStep checks the shape of a StepRequest that any Stepper must refuse: no items, an
// item without tokens or session, a session listed twice. Backends call it first.
func ValidateStep(req *StepRequest) error {
	if len(req.Items) == 0 {
		return InvalidArgument("step: no items")
	}
	seen := make(map[string]bool, len(req.Items))
	for i, it := range req.Items {
		switch {
		case it.Session == "":
			return InvalidArgument("step: item %d has no session", i)
		case len(it.TokenIDs) == 0:
			return InvalidArgument("step: item %d (session %q) has no token ids", i, it.Session)
		case seen[it.Session]:
			return InvalidArgument("step: session %q appears twice", it.Session)
		}
		seen[it.Session] = true
	}
	return nil
}

// StepEach does what Step does with one Infer per item (ParamLogits "last", batch 1): the
// fallback a host uses for a backend without CapabilityStep, and the reference Step must match.
func StepEach(ctx context.Context, b Backend, req *StepRequest) (*StepResponse, error) {
	if err := ValidateStep(req); err != nil {
		return nil, err
	}
	var out []float32
	V := 0
	for i, it := range req.Items {
		r, err := b.Infer(ctx, &InferRequest{
			Model: req.Model, Session: it.Session,
			Inputs:  map[string]*Tensor{"input_ids": FromInt64([]int64{1, int64(len(it.TokenIDs))}, it.TokenIDs)},
			Outputs: []string{"logits"}, Params: map[string]string{ParamLogits: "last"},
		})
		if err != nil {
			return nil, fmt.Errorf("step item %d (session %q): %w", i, it.Session, err)
		}
		lt, ok := r.Outputs["logits"]
		if !ok || len(lt.Shape) == 0 {
			return nil, fmt.Errorf("step item %d (session %q): backend returned no logits", i, it.Session)
		}
		v, err := lt.Float32s()
		if err != nil {
			return nil, fmt.Errorf("step item %d (session %q): logits: %w", i, it.Session, err)
		}
		w := int(lt.Shape[len(lt.Shape)-1])
		if w == 0 || len(v) < w || (V != 0 && w != V) {
			return nil, fmt.Errorf("step item %d (session %q): logits of shape %v", i, it.Session, lt.Shape)
		}
		V = w
		out = append(out, v[len(v)-V:]...) // the last position when a backend returned them all
	}
	return &StepResponse{Logits: FromFloat32([]int64{int64(len(req.Items)), int64(V)}, out)}, nil
}

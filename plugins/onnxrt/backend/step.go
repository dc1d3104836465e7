package backend

import (
	"context"
	"fmt"

	"github.com/modelrt/modelrt/plugins/onnxrt/ort"
	"github.com/modelrt/modelrt/sdk"
)

// MetaStep is the causal-lm model metadata key that says how Step advances the model's
// sessions: StepBatched (one padded graph run for the sessions decoding one token each) or
// StepSequential (one run per session: the graph cannot express padding).
const (
	MetaStep       = "step"
	StepBatched    = "batched"
	StepSequential = "sequential"
)

// stepMode is MetaStep's value for lm.
func stepMode(lm *ort.LM) string {
	if lm.CanBatch() {
		return StepBatched
	}
	return StepSequential
}

// Step implements sdk.Stepper on ort.LM.Step: the sessions decoding one token each run as one
// left-padded batch (kept packed while the same sessions go on decoding), prompt chunks one
// session at a time, all within the call, on the model's step thread.
func (b *Backend) Step(ctx context.Context, req *sdk.StepRequest) (*sdk.StepResponse, error) {
	if err := sdk.ValidateStep(req); err != nil {
		return nil, err
	}
	m, err := b.Get(req.Model)
	if err != nil {
		return nil, err
	}
	if m.lm == nil {
		return nil, sdk.FailedPrecondition("model %q (%s) has no sessions to step; only causal-lm models do", req.Model, m.task)
	}
	list := make([]*ort.LMSession, len(req.Items))
	ids := make([][]int64, len(req.Items))
	for i, it := range req.Items {
		ss, err := b.Session(it.Session, req.Model)
		if err != nil {
			return nil, err
		}
		if ss.batch != 1 {
			return nil, sdk.InvalidArgument("step: session %q was opened for batch %d; Step advances batch-1 sessions", it.Session, ss.batch)
		}
		in := &sdk.CausalLMInput{IDs: it.TokenIDs, Batch: 1, Len: len(it.TokenIDs), LastOnly: true}
		if err := b.checkLM(m, in, ss.s.Len()); err != nil {
			return nil, fmt.Errorf("step: session %q: %w", it.Session, err)
		}
		list[i], ids[i] = ss.s, it.TokenIDs
	}
	V := m.lm.Info().VocabSize
	logits := make([]float32, len(list)*V)
	m.stepThread.run(func() { err = m.lm.Step(ctx, list, ids, logits) })
	if err != nil {
		return nil, ortError(err)
	}
	return &sdk.StepResponse{Logits: sdk.FromFloat32([]int64{int64(len(list)), int64(V)}, logits)}, nil
}

package backend

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/sdk"
)

// Step implements sdk.Stepper: one gpt2.ForwardBatch over every item's new tokens, so the
// matrix products see all rows at once while attention runs per session over its own cache.
// Each row is bit-identical to the same tokens stepped alone.
func (b *Backend) Step(ctx context.Context, req *sdk.StepRequest) (*sdk.StepResponse, error) {
	if err := sdk.ValidateStep(req); err != nil {
		return nil, err
	}
	m, err := b.Get(req.Model)
	if err != nil {
		return nil, err
	}
	if m.gpt2 == nil {
		return nil, sdk.FailedPrecondition("model %q (%s) has no sessions to step; only causal-lm models do", req.Model, m.task)
	}
	items := make([]gpt2.BatchItem, len(req.Items))
	sessions := make([]*session, len(req.Items))
	for i, it := range req.Items {
		s, err := b.Session(it.Session, req.Model)
		if err != nil {
			return nil, err
		}
		sessions[i] = s
	}
	// Lock in a fixed order (by session id) so that two calls sharing sessions cannot deadlock.
	order := make([]int, len(sessions))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, c int) bool { return req.Items[order[a]].Session < req.Items[order[c]].Session })
	for _, i := range order {
		sessions[i].mu.Lock()
		defer sessions[i].mu.Unlock()
	}
	for i, it := range req.Items {
		if n := sessions[i].cache.Batch(); n != 1 {
			return nil, sdk.InvalidArgument("step: session %q was opened for batch %d; Step advances batch-1 sessions", it.Session, n)
		}
		in := &sdk.CausalLMInput{IDs: it.TokenIDs, Batch: 1, Len: len(it.TokenIDs), LastOnly: true}
		if err := b.checkLM(m, in, sessions[i].cache.Len()); err != nil {
			return nil, fmt.Errorf("step: session %q: %w", it.Session, err)
		}
		items[i] = gpt2.BatchItem{Cache: sessions[i].cache, IDs: it.TokenIDs}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	V := m.gpt2.Config().VocabSize
	logits := make([]float32, len(items)*V)
	if err := m.gpt2.ForwardBatch(items, logits); err != nil {
		if errors.Is(err, gpt2.ErrInvalidInput) {
			return nil, sdk.InvalidArgument("step: %v", err)
		}
		return nil, sdk.Internal("step: %v", err)
	}
	return &sdk.StepResponse{Logits: sdk.FromFloat32([]int64{int64(len(items)), int64(V)}, logits)}, nil
}

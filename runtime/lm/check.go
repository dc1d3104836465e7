package lm

import (
	"fmt"

	"github.com/modelrt/modelrt/sdk"
)

// check makes the backend's own checks of a step before it is sent (docs/sdk.md, Limits):
// past+T positions within the context, ids within the vocabulary, the last-position logits
// within the backend's budget. A request the backend would refuse is never sent; the error is
// the same InvalidArgument.
func (s *Session) check(ids []int64, B, T int) error {
	in := &sdk.CausalLMInput{IDs: ids, Batch: B, Len: T, LastOnly: true}
	if err := sdk.CheckCausalLM(in, s.past, s.m.VocabSize, s.m.Context, s.m.MaxInferBytes); err != nil {
		return fmt.Errorf("model %q (not sent to its backend): %w", s.m.Name, err)
	}
	return nil
}

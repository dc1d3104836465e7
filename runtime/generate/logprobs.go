package generate

import (
	"context"
	"fmt"
	"math"
)

// LogSoftmax writes log(softmax(logits)) into dst (grown if short) and returns it, in float64
// so that a sum over a long text keeps its precision. -Inf logits give -Inf. (V)
func LogSoftmax(dst []float64, logits []float32) []float64 {
	dst = append(dst[:0], make([]float64, len(logits))...)
	m := math.Inf(-1)
	for _, l := range logits {
		m = max(m, float64(l))
	}
	if math.IsInf(m, -1) {
		for i := range dst {
			dst[i] = math.Inf(-1)
		}
		return dst
	}
	sum := 0.0
	for _, l := range logits {
		sum += math.Exp(float64(l) - m)
	}
	lse := m + math.Log(sum)
	for i, l := range logits {
		dst[i] = float64(l) - lse
	}
	return dst
}

// TokenLogprobs receives, for one row, the log-softmax of the model's raw logits at one
// position (before the repetition penalty, Allowed, temperature, top-k and top-p) and the token
// that stands at that position: pos indexes Row.IDs (the prompt, then new tokens). The slice is
// reused after the call returns.
type TokenLogprobs func(row, pos, token int, logprobs []float64)

// logprobsHook calls opts.OnLogprobs for row r's token at pos from its raw logits.
func (r *rowState) logprobsHook(logits []float32, pos, token int) {
	if r.opts.OnLogprobs == nil {
		return
	}
	r.lp = LogSoftmax(r.lp, logits)
	r.opts.OnLogprobs(r.index, pos, token, r.lp)
}

// scorePrompts is the prefill of PromptLogprobs: it feeds the left-padded prompts ids (B,T)
// one column per step, reports each prompt token after the first with the logits of the
// position before it, and returns the logits of the last column (B,V), as the one-step
// prefill would.
func scorePrompts(ctx context.Context, s Stepper, ids []int64, rows []*rowState, T int, maskBuf []int64) ([]float32, error) {
	B := len(rows)
	col := make([]int64, B)
	var logits []float32
	for j := range T {
		if j > 0 {
			if len(logits) == 0 || len(logits)%B != 0 {
				return nil, fmt.Errorf("step %d returned %d logits for %d rows", j, len(logits), B)
			}
			V := len(logits) / B
			for b, r := range rows {
				if i := j - r.pad; i >= 1 {
					tok := r.ids[i]
					if tok >= V {
						return nil, fmt.Errorf("%w: prompt token %d is outside the model's vocabulary of %d", ErrInvalidOptions, tok, V)
					}
					r.logprobsHook(logits[b*V:(b+1)*V], i, tok)
				}
			}
		}
		for b := range rows {
			col[b] = ids[b*T+j]
		}
		maskBuf = fillMask(maskBuf, rows, j+1)
		var err error
		if logits, err = s.Step(ctx, col, B, 1, maskBuf); err != nil {
			return nil, fmt.Errorf("position %d: %w", j, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return logits, nil
}

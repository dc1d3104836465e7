package batch_test

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/modelrt/modelrt/runtime/batch"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
)

// rowsLogprobTol bounds |logprob through lm.Rows − logprob alone|: each row is a batch-1
// session in both, so only what the scheduler batches it with differs (bit-identical on native,
// within the onnxrt batched-step tolerance on ONNX Runtime).
const rowsLogprobTol = 1e-4

// TestRowsMatchAlone: a multi-row generation through the scheduler (lm.Rows: prompts of 2, 7
// and 4 tokens, left-padded by generate, scored position by position with PromptLogprobs so
// that whole steps of a row are padding) draws the ids and logprobs each prompt gets alone,
// and its rows share steps.
func TestRowsMatchAlone(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			m := start(t, b.name, b.bin, b.model)
			ctx := context.Background()
			s := batch.New(ctx, m, batch.Options{MaxBatch: 4})
			defer s.Close()
			m.Batcher = s
			prompts := [][]int{{5, 9}, {1, 2, 3, 4, 5, 6, 7}, {100, 50, 25, 12}}
			type key struct{ row, pos int }
			run := func(sess lm.StepSession, ps [][]int, rowBase int, lp map[key]float64, mu *sync.Mutex) *generate.Result {
				opts := generate.Options{MaxNewTokens: 6, MaxContext: m.Context, Sampling: generate.DefaultSampling(), PromptLogprobs: true,
					OnLogprobs: func(row, pos, token int, l []float64) {
						mu.Lock()
						lp[key{rowBase + row, pos}] = l[token]
						mu.Unlock()
					}}
				res, err := generate.Generate(ctx, sess, ps, opts)
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			var mu sync.Mutex
			aloneLP, rowsLP := map[key]float64{}, map[key]float64{}
			var alone [][]int
			for i, p := range prompts {
				sess, err := s.Open(ctx)
				if err != nil {
					t.Fatal(err)
				}
				alone = append(alone, run(sess, [][]int{p}, i, aloneLP, &mu).Rows[0].IDs)
				sess.Close()
			}
			steps0, rows0 := s.Metrics().Steps()
			sess, err := m.OpenStepSession(ctx, len(prompts))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := sess.(*lm.Rows); !ok {
				t.Fatalf("OpenStepSession(3) with a Batcher gave a %T, want *lm.Rows", sess)
			}
			res := run(sess, prompts, 0, rowsLP, &mu)
			sess.Close()
			for i := range prompts {
				if !slices.Equal(res.Rows[i].IDs, alone[i]) {
					t.Errorf("row %d: through Rows %v, alone %v", i, res.Rows[i].IDs, alone[i])
				}
			}
			if len(rowsLP) != len(aloneLP) {
				t.Errorf("%d logprobs through Rows, %d alone", len(rowsLP), len(aloneLP))
			}
			worst := 0.0
			for k, want := range aloneLP {
				got, ok := rowsLP[k]
				d := math.Abs(got - want)
				if !ok || d > rowsLogprobTol {
					t.Errorf("row %d position %d: logprob through Rows %v (present %v), alone %v (|d| %.3g > %.0e)", k.row, k.pos, got, ok, want, d, rowsLogprobTol)
				}
				worst = max(worst, d)
			}
			steps1, rows1 := s.Metrics().Steps()
			steps, rows := steps1-steps0, rows1-rows0
			t.Logf("%s: %d logprobs, max |d| %.3g; %d steps advanced %.0f rows", b.name, len(aloneLP), worst, steps, rows)
			if rows <= float64(steps) {
				t.Errorf("the rows never shared a step: %d steps, %.0f advances", steps, rows)
			}
		})
	}
}

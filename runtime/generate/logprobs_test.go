package generate

import (
	"context"
	"math"
	"slices"
	"testing"
)

// logprobTolerance bounds the difference between two float64 log-softmax computations of the
// same float32 logits.
const logprobTolerance = 1e-9

// TestPromptLogprobs: with PromptLogprobs every prompt token after the first, and every drawn
// token, is reported with the log-softmax of the logits that the model gives after the tokens
// before it (recomputed here on each prefix, without a session), and the draws are those of a
// plain prefill.
func TestPromptLogprobs(t *testing.T) {
	prompts := [][]int{{3, 14, 15, 9}, {7, 1, 2, 8}}
	for _, maxNew := range []int{0, 3} {
		m := &hashLM{V: 40, K: 7}
		o := opts(maxNew)
		o.Sampling.Temperature, o.Sampling.Seed = 1, 5
		o.PromptLogprobs = true
		type key struct{ row, pos int }
		got := map[key]float64{}
		tokens := map[key]int{}
		o.OnLogprobs = func(row, pos, token int, lp []float64) {
			if _, dup := got[key{row, pos}]; dup {
				t.Errorf("row %d pos %d reported twice", row, pos)
			}
			got[key{row, pos}] = lp[token]
			tokens[key{row, pos}] = token
		}
		res, err := Generate(context.Background(), m, prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		plain := opts(maxNew)
		plain.Sampling = o.Sampling
		if maxNew > 0 {
			want, err := Generate(context.Background(), &hashLM{V: 40, K: 7}, prompts, plain)
			if err != nil {
				t.Fatal(err)
			}
			for b := range prompts {
				if !slices.Equal(res.Rows[b].IDs, want.Rows[b].IDs) {
					t.Errorf("max %d row %d: ids %v, plain prefill %v", maxNew, b, res.Rows[b].IDs, want.Rows[b].IDs)
				}
			}
		}
		for b, row := range res.Rows {
			if maxNew == 0 && (len(row.IDs) != len(prompts[b]) || row.FinishReason != FinishLength) {
				t.Errorf("scoring only: row %d ids %v finish %q", b, row.IDs, row.FinishReason)
			}
			if len(got) != countFrom1(res.Rows) {
				t.Fatalf("max %d: %d reports, want %d", maxNew, len(got), countFrom1(res.Rows))
			}
			ref := make([]float32, m.V)
			for pos := 1; pos < len(row.IDs); pos++ {
				seq := make([]int64, pos)
				for i := range pos {
					seq[i] = int64(row.IDs[i])
				}
				m.logitsFor(seq, ref)
				want := LogSoftmax(nil, ref)[row.IDs[pos]]
				if g, ok := got[key{b, pos}]; !ok || math.Abs(g-want) > logprobTolerance || tokens[key{b, pos}] != row.IDs[pos] {
					t.Errorf("max %d row %d pos %d: logprob %v (reported %v, token %d), want %v for %d", maxNew, b, pos, g, ok, tokens[key{b, pos}], want, row.IDs[pos])
				}
			}
		}
	}
}

func countFrom1(rows []Row) int {
	n := 0
	for _, r := range rows {
		n += len(r.IDs) - 1
	}
	return n
}

func TestLogSoftmax(t *testing.T) {
	lp := LogSoftmax(nil, []float32{1, 2, 3, float32(math.Inf(-1))})
	sum := 0.0
	for _, v := range lp {
		sum += math.Exp(v)
	}
	if math.Abs(sum-1) > logprobTolerance || !math.IsInf(lp[3], -1) || !(lp[2] > lp[1]) {
		t.Errorf("LogSoftmax = %v (Σexp %v)", lp, sum)
	}
	if err := validate([][]int{{1}}, Options{Sampling: DefaultSampling()}); err == nil {
		t.Error("MaxNewTokens 0 without PromptLogprobs: accepted")
	}
}

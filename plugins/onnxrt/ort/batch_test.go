package ort

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// stepTol is the absolute tolerance between a session's logits advanced in a batched Step and
// the same session advanced alone. Padding changes the shapes ONNX Runtime's matrix products
// see (one row against N) and so the order of float sums; the masked keys themselves add
// exactly zero. Observed differences on gpt2-odd are ~1e-6.
const stepTol = 1e-4

// TestStepMatchesAlone drives sessions through Step in a random schedule — staggered arrivals,
// prompt chunks of different lengths beside single decode tokens, single-session Forwards in
// between (which unpack a kept batch), sessions finishing at different lengths — and each
// session's twin through Forward alone with the same ids. Every Step row is within stepTol of
// its twin's logits and has the same argmax.
func TestStepMatchesAlone(t *testing.T) {
	dirs := []string{"gpt2-odd-onnx-plain-op14"}
	for _, fx := range fixtures {
		dirs = append(dirs, fx.dir)
	}
	for _, dir := range dirs {
		for _, repack := range []bool{false, true} {
			if repack && dir != "gpt2-odd-onnx-optimum-op14" {
				continue
			}
			t.Run(fmt.Sprintf("%s/repack=%v", dir, repack), func(t *testing.T) {
				lm := loadFixture(t, dir)
				lm.SetRepackEveryStep(repack)
				stepSchedule(t, lm, rand.New(rand.NewPCG(14, uint64(len(dir)))))
			})
		}
	}
}

func stepSchedule(t *testing.T, lm *LM, rng *rand.Rand) {
	ctx := context.Background()
	const sessions = 6
	V := lm.Info().VocabSize
	type seq struct {
		b, a    *LMSession // batched, alone
		prompt  []int64
		fed     int // prompt ids fed
		next    int64
		length  int // positions to reach before closing
		start   int // round of arrival
		done    bool
		batched bool // Step has advanced it with others at least once
	}
	seqs := make([]*seq, sessions)
	for i := range seqs {
		p := make([]int64, 1+rng.IntN(9))
		for j := range p {
			p[j] = int64(rng.IntN(V))
		}
		seqs[i] = &seq{b: newSession(t, lm, 1), a: newSession(t, lm, 1), prompt: p,
			length: len(p) + 4 + rng.IntN(oddContext-len(p)-4), start: rng.IntN(8)}
	}
	var maxErr float64
	shared := 0
	for round := 0; round < 200; round++ {
		var items []*seq
		var ids [][]int64
		for _, s := range seqs {
			if s.done || round < s.start || rng.IntN(12) == 0 { // sometimes a session misses a step
				continue
			}
			var feed []int64
			if s.fed < len(s.prompt) {
				n := min(1+rng.IntN(4), len(s.prompt)-s.fed)
				feed = s.prompt[s.fed : s.fed+n]
			} else {
				feed = []int64{s.next}
			}
			items = append(items, s)
			ids = append(ids, feed)
		}
		if len(items) == 0 {
			if allDone(seqs, func(s *seq) bool { return s.done }) {
				break
			}
			continue
		}
		got := make([]float32, len(items)*V)
		if len(items) == 1 && rng.IntN(2) == 0 {
			// a single-session Forward on the batched side: unpacks the kept batch
			if err := items[0].b.Forward(ctx, ids[0], 1, len(ids[0]), nil, true, got); err != nil {
				t.Fatalf("round %d: Forward: %v", round, err)
			}
		} else if err := lm.Step(ctx, sessionsOf(items, func(s *seq) *LMSession { return s.b }), ids, got); err != nil {
			t.Fatalf("round %d: Step of %d: %v", round, len(items), err)
		}
		if len(items) > 1 {
			shared++
		}
		for k, s := range items {
			want := make([]float32, V)
			if err := s.a.Forward(ctx, ids[k], 1, len(ids[k]), nil, true, want); err != nil {
				t.Fatalf("round %d: alone: %v", round, err)
			}
			row := got[k*V : (k+1)*V]
			for j := range row {
				d := math.Abs(float64(row[j] - want[j]))
				if math.IsNaN(d) || d > stepTol {
					t.Fatalf("round %d, item %d of %d (held %d, fed %d): logit %d batched %.7g alone %.7g (|d| %.3g > stepTol %.0e)",
						round, k, len(items), s.a.Len()-len(ids[k]), len(ids[k]), j, row[j], want[j], d, stepTol)
				}
				maxErr = math.Max(maxErr, d)
			}
			if a, b := argmax(row), argmax(want); a != b {
				t.Fatalf("round %d, item %d: batched argmax %d, alone %d", round, k, a, b)
			}
			if s.fed < len(s.prompt) {
				s.fed += len(ids[k])
			}
			s.next = int64(argmax(want))
			if s.b.Len() != s.a.Len() {
				t.Fatalf("round %d: batched session holds %d positions, alone %d", round, s.b.Len(), s.a.Len())
			}
			if s.a.Len() >= s.length {
				s.done = true
				s.b.Close()
			}
		}
	}
	if !allDone(seqs, func(s *seq) bool { return s.done }) {
		t.Fatalf("schedule did not finish in 200 rounds")
	}
	st := lm.BatchStats()
	t.Logf("%d steps over several sessions; max |batched-alone| %.3g (stepTol %.0e); batched graph runs: %v; %+v", shared, maxErr, stepTol, lm.CanBatch(), st)
	switch {
	case !lm.CanBatch() && st != (BatchStats{}):
		t.Errorf("a graph without attention_mask packed batches: %+v", st)
	case lm.CanBatch() && st.Packed == 0:
		t.Errorf("no Step packed a batch")
	case lm.CanBatch() && !lm.repack && st.Kept == 0:
		t.Errorf("no Step reused the packed batch of the previous one")
	case lm.CanBatch() && !lm.repack && st.Gaps == 0:
		t.Errorf("no Step reused a packed batch beside a member that skipped it")
	case lm.repack && st.Kept != 0:
		t.Errorf("%d Steps reused a packed batch with SetRepackEveryStep(true)", st.Kept)
	}
}

func allDone[T any](xs []T, f func(T) bool) bool {
	for _, x := range xs {
		if !f(x) {
			return false
		}
	}
	return true
}

func sessionsOf[T any](xs []T, f func(T) *LMSession) []*LMSession {
	out := make([]*LMSession, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// TestStepMemberChunk: a member of a kept batch that feeds several tokens (run on its own
// buffers) beside the others decoding gives what it gives alone.
func TestStepMemberChunk(t *testing.T) {
	lm := loadFixture(t, "gpt2-odd-onnx-optimum-op14")
	ctx := context.Background()
	V := lm.Info().VocabSize
	var batched, alone []*LMSession
	for range 4 {
		batched = append(batched, newSession(t, lm, 1))
		alone = append(alone, newSession(t, lm, 1))
	}
	steps := [][][]int64{
		{{1, 2}, {3}, {4, 5, 6}, {7}},
		{{8}, {9}, {10}, {11}},
		{{12}, {13}, {14}, {15}},
		{{16}, {17}, {18}, {19, 20, 21}}, // the member of row 3 feeds a chunk
		{{22}, {23}, {24}, {25}},
	}
	for k, ids := range steps {
		got := make([]float32, len(ids)*V)
		if err := lm.Step(ctx, batched, ids, got); err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
		for i, s := range alone {
			want := make([]float32, V)
			if err := s.Forward(ctx, ids[i], 1, len(ids[i]), nil, true, want); err != nil {
				t.Fatal(err)
			}
			compare(t, fmt.Sprintf("step %d row %d", k, i), got[i*V:(i+1)*V], want, stepTol)
		}
	}
	if st := lm.BatchStats(); st.Kept == 0 {
		t.Errorf("no Step reused the packed batch: %+v", st)
	}
}

// TestStepErrorLeavesSessions: a Step with one bad item fails before anything runs, and a
// cancelled Step leaves every session as it was.
func TestStepErrorLeavesSessions(t *testing.T) {
	lm := loadFixture(t, "gpt2-odd-onnx-optimum-op14")
	ctx := context.Background()
	V := lm.Info().VocabSize
	a, b := newSession(t, lm, 1), newSession(t, lm, 1)
	dst := make([]float32, 2*V)
	if err := lm.Step(ctx, []*LMSession{a, b}, [][]int64{{1, 2}, {3}}, dst); err != nil {
		t.Fatal(err)
	}
	if err := lm.Step(ctx, []*LMSession{a, b}, [][]int64{{4}, {5}}, dst); err != nil {
		t.Fatal(err)
	}
	if err := lm.Step(ctx, []*LMSession{a, b}, [][]int64{{4}, {int64(V)}}, dst); err == nil {
		t.Fatal("Step with an out-of-vocabulary id succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := lm.Step(cctx, []*LMSession{a, b}, [][]int64{{4}, {5}}, dst); err == nil {
		t.Fatal("cancelled Step succeeded")
	}
	if a.Len() != 3 || b.Len() != 2 {
		t.Fatalf("after failed steps the sessions hold %d and %d positions, want 3 and 2", a.Len(), b.Len())
	}
	if err := lm.Step(ctx, []*LMSession{b, a}, [][]int64{{5}, {6}}, dst); err != nil {
		t.Fatal(err)
	}
	if err := lm.Step(ctx, []*LMSession{a, a}, [][]int64{{1}, {1}}, dst); err == nil {
		t.Fatal("Step with a session twice succeeded")
	}
}

// BenchmarkStep8 decodes 8 sessions of GPT-2 124M (random weights; prompts of 64..92 tokens,
// so the caches differ in length) one token each per step, three ways interleaved in blocks of
// 6 steps on one loaded model, so that a noisy machine slows them alike: "kept" (Step, the
// packed batch reused while the same sessions decode), "repack" (Step packing the caches afresh
// every step) and "alone" (8 Forwards one after another). The first step of each block (the
// switch: packing or unpacking) is not counted. Reported: tokens/s of each (all 8 rows).
func BenchmarkStep8(b *testing.B) {
	lm := benchLM(b, new(bool))
	const n, block = 8, 6
	V := lm.Info().VocabSize
	ctx := context.Background()
	logits := make([]float32, n*V)
	var ss []*LMSession
	start := func() {
		for _, s := range ss {
			s.Close()
		}
		ss = ss[:0]
		for i := range n {
			s, err := lm.NewSession(1)
			if err != nil {
				b.Fatal(err)
			}
			p := benchPrompt(64 + 4*i)
			if err := s.Forward(ctx, p, 1, len(p), nil, true, logits); err != nil {
				b.Fatal(err)
			}
			ss = append(ss, s)
		}
	}
	start()
	defer func() {
		for _, s := range ss {
			s.Close()
		}
	}()
	ids := make([][]int64, n)
	for i := range ids {
		ids[i] = []int64{464}
	}
	modes := []string{"kept", "repack", "alone"}
	spent := make([]time.Duration, len(modes))
	steps := make([]int, len(modes))
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for k, mode := range modes {
			lm.SetRepackEveryStep(mode == "repack")
			for j := range block {
				if ss[n-1].Len() >= lm.Info().MaxContext {
					start()
				}
				t0 := time.Now()
				if mode == "alone" {
					for i, s := range ss {
						if err := s.Forward(ctx, ids[i], 1, 1, nil, true, logits[i*V:(i+1)*V]); err != nil {
							b.Fatal(err)
						}
					}
				} else if err := lm.Step(ctx, ss, ids, logits); err != nil {
					b.Fatal(err)
				}
				if j > 0 {
					spent[k] += time.Since(t0)
					steps[k]++
				}
				for i := range ids {
					ids[i][0] = int64(it*31+7*i+j) % int64(V)
				}
			}
		}
	}
	for k, mode := range modes {
		b.ReportMetric(float64(n*steps[k])/spent[k].Seconds(), mode+"-tokens/s")
	}
}

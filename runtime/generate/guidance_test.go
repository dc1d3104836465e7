package generate

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestAllowedRestrictsDraws(t *testing.T) {
	allowed := []IDRange{{10, 20}, {30, 35}}
	in := func(id int) bool { return (id >= 10 && id < 20) || (id >= 30 && id < 35) }
	for name, sp := range map[string]Sampling{
		"greedy":  DefaultSampling(),
		"sampled": {Temperature: 2, TopK: 8, TopP: 0.95, RepetitionPenalty: 1.2, Seed: 5},
	} {
		o := opts(40)
		o.Sampling = sp
		o.Allowed = allowed
		res, err := Generate(context.Background(), &hashLM{V: 50, K: 3}, [][]int{{1, 2}}, o)
		if err != nil {
			t.Fatal(err)
		}
		newIDs := res.Rows[0].IDs[2:]
		if i := slices.IndexFunc(newIDs, func(id int) bool { return !in(id) }); i >= 0 {
			t.Errorf("%s: token %d at %d is outside %v: %v", name, newIDs[i], i, allowed, newIDs)
		}
		if name == "greedy" {
			// Reference: argmax over the allowed ids of the model run on the whole sequence.
			m := &hashLM{V: 50, K: 3}
			seq := []int64{1, 2}
			l := make([]float32, 50)
			for i, got := range newIDs {
				m.logitsFor(seq, l)
				best := 10
				for v := range l {
					if in(v) && l[v] > l[best] {
						best = v
					}
				}
				if got != best {
					t.Fatalf("greedy token %d: %d, want %d", i, got, best)
				}
				seq = append(seq, int64(best))
			}
		}
	}
}

func TestApplyAllowed(t *testing.T) {
	l := []float32{1, 2, 3, 4, 5, 6, 7}
	ApplyAllowed(l, []IDRange{{1, 3}, {5, 6}})
	inf := float32(math.Inf(-1))
	if want := []float32{inf, 2, 3, inf, inf, 6, inf}; !slices.Equal(l, want) {
		t.Fatalf("%v, want %v", l, want)
	}
}

// guidedReference continues prompt greedily with classifier-free guidance by recomputing the
// model on the whole conditional and unconditional sequences at every token.
func guidedReference(m *hashLM, prompt, uncond []int, scale float32, maxNew int) []int {
	var c, u []int64
	for _, id := range prompt {
		c = append(c, int64(id))
	}
	for _, id := range uncond {
		u = append(u, int64(id))
	}
	lc, lu := make([]float32, m.V), make([]float32, m.V)
	out := slices.Clone(prompt)
	for range maxNew {
		m.logitsFor(c, lc)
		m.logitsFor(u, lu)
		best := 0
		for v := range lc {
			if lu[v]+scale*(lc[v]-lu[v]) > lu[best]+scale*(lc[best]-lu[best]) {
				best = v
			}
		}
		out = append(out, best)
		c, u = append(c, int64(best)), append(u, int64(best))
	}
	return out
}

func TestGuidanceMatchesReference(t *testing.T) {
	prompts := [][]int{{3, 4, 5}, {6, 7, 8}, {1, 1, 2}}
	null := []int{0, 0, 0}
	const scale = 3
	o := opts(15)
	o.Guidance = &Guidance{Scale: scale, Unconditional: [][]int{null}}
	m := &hashLM{V: 40, K: 7}
	res, err := Generate(context.Background(), m, prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.seqs) != 2*len(prompts) {
		t.Errorf("session ran %d rows, want %d (conditional + unconditional)", len(m.seqs), 2*len(prompts))
	}
	unguided, err := Generate(context.Background(), &hashLM{V: 40, K: 7}, prompts, opts(15))
	if err != nil {
		t.Fatal(err)
	}
	differs := false
	for b, p := range prompts {
		want := guidedReference(&hashLM{V: 40, K: 7}, p, null, scale, 15)
		if got := res.Rows[b].IDs; !slices.Equal(got, want) {
			t.Errorf("row %d: %v\nreference %v", b, got, want)
		}
		differs = differs || !slices.Equal(res.Rows[b].IDs, unguided.Rows[b].IDs)
		if res.Rows[b].PromptTokens != 3 || res.Rows[b].GeneratedTokens != 15 {
			t.Errorf("row %d: %+v", b, res.Rows[b])
		}
	}
	if !differs {
		t.Error("guidance scale 3 drew exactly the unguided tokens in every row")
	}
}

// TestGuidedRowDoesNotDependOnBatch: row r of a guided, sampled batch equals its prompt run
// alone with seed Seed+r.
func TestGuidedRowDoesNotDependOnBatch(t *testing.T) {
	prompts := [][]int{{3, 4, 5}, {6, 7, 8, 9, 10}, {1}}
	uncond := [][]int{{0, 0}, {0, 0, 0}, {0}}
	o := opts(20)
	o.Sampling = Sampling{Temperature: 1.1, TopK: 12, TopP: 0.9, RepetitionPenalty: 1, Seed: 77}
	o.Guidance = &Guidance{Scale: 2.5, Unconditional: uncond}
	o.Allowed = []IDRange{{5, 30}}
	batch, err := Generate(context.Background(), &hashLM{V: 40, K: 7}, prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	for b, p := range prompts {
		alone := o
		alone.Sampling.Seed = o.Sampling.Seed + uint64(b)
		alone.Guidance = &Guidance{Scale: 2.5, Unconditional: [][]int{uncond[b]}}
		res, err := Generate(context.Background(), &hashLM{V: 40, K: 7}, [][]int{p}, alone)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := batch.Rows[b].IDs, res.Rows[0].IDs; !slices.Equal(got, want) {
			t.Errorf("row %d: batch %v, alone %v", b, got, want)
		}
	}
}

func TestGuidanceScaleOneIsUnguided(t *testing.T) {
	o := opts(10)
	o.Sampling = Sampling{Temperature: 1, TopP: 1, RepetitionPenalty: 1, Seed: 3}
	plain, err := Generate(context.Background(), &hashLM{V: 30, K: 3}, [][]int{{1, 2}}, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Guidance = &Guidance{Scale: 1, Unconditional: [][]int{{0}}}
	m := &hashLM{V: 30, K: 3}
	guided, err := Generate(context.Background(), m, [][]int{{1, 2}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plain.Rows[0].IDs, guided.Rows[0].IDs) || len(m.seqs) != 1 {
		t.Errorf("scale 1: %v (%d session rows), unguided %v", guided.Rows[0].IDs, len(m.seqs), plain.Rows[0].IDs)
	}
}

func TestGuidanceAndAllowedInvalid(t *testing.T) {
	m := &hashLM{V: 10, K: 2}
	cases := []struct {
		name  string
		mod   func(*Options)
		field string
	}{
		{"negative scale", func(o *Options) { o.Guidance = &Guidance{Scale: -1, Unconditional: [][]int{{0}}} }, "guidance scale"},
		{"NaN scale", func(o *Options) { o.Guidance = &Guidance{Scale: math.NaN(), Unconditional: [][]int{{0}}} }, "guidance scale"},
		{"unconditional count", func(o *Options) { o.Guidance = &Guidance{Scale: 2, Unconditional: [][]int{{0}, {0}}} }, "2 unconditional prompts for 3 rows"},
		{"empty unconditional", func(o *Options) { o.Guidance = &Guidance{Scale: 2, Unconditional: [][]int{{}}} }, "unconditional prompt 0"},
		{"allowed unsorted", func(o *Options) { o.Allowed = []IDRange{{5, 6}, {1, 2}} }, "allowed ids"},
		{"allowed empty range", func(o *Options) { o.Allowed = []IDRange{{3, 3}} }, "allowed ids"},
	}
	for _, c := range cases {
		o := opts(5)
		c.mod(&o)
		_, err := Generate(context.Background(), m, [][]int{{1}, {2}, {3}}, o)
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err %v, want ErrInvalidOptions naming %q", c.name, err, c.field)
		}
	}
	if m.calls != 0 {
		t.Errorf("invalid input reached the model (%d steps)", m.calls)
	}
	o := opts(5)
	o.Allowed = []IDRange{{5, 11}}
	if _, err := Generate(context.Background(), &hashLM{V: 10, K: 2}, [][]int{{1}}, o); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "vocabulary of 10") {
		t.Errorf("allowed range beyond the vocabulary: err %v", err)
	}
}

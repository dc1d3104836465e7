package generate

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/modelrt/modelrt/runtime/tokenizer"
)

const gpt2Dir = "../../testdata/models/gpt2-tiny"

var (
	gpt2Once sync.Once
	gpt2Tok  *tokenizer.Tokenizer
	gpt2Err  error
)

func gpt2(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = tokenizer.Load(gpt2Dir) })
	if gpt2Err != nil {
		t.Fatal(gpt2Err)
	}
	return gpt2Tok
}

func opts(maxNew int) Options {
	return Options{MaxNewTokens: maxNew, Sampling: DefaultSampling()}
}

func TestGreedyMatchesReference(t *testing.T) {
	m := &hashLM{V: 50, K: 7}
	prompt := []int{3, 14, 15, 9}
	res, err := Generate(context.Background(), m, [][]int{prompt}, opts(20))
	if err != nil {
		t.Fatal(err)
	}
	want := greedyReference(&hashLM{V: 50, K: 7}, prompt, 20, -1)
	row := res.Rows[0]
	if !slices.Equal(row.IDs, want) {
		t.Fatalf("ids %v\nwant %v", row.IDs, want)
	}
	if row.FinishReason != FinishLength || row.PromptTokens != 4 || row.GeneratedTokens != 20 {
		t.Errorf("row %+v", row)
	}
	if m.calls != 20 {
		t.Errorf("%d steps for 20 tokens, want 20 (prefill + 19 decode; the last token is not fed)", m.calls)
	}
	if res.PrefillMS < 0 || res.DecodeTokensPerS <= 0 {
		t.Errorf("timings %+v", res)
	}
}

func TestSeedReproducesSamples(t *testing.T) {
	prompt := [][]int{{1, 2, 3}}
	run := func(seed uint64) []int {
		o := opts(30)
		o.Sampling = Sampling{Temperature: 1.5, TopP: 1, RepetitionPenalty: 1, Seed: seed}
		res, err := Generate(context.Background(), &hashLM{V: 40, K: 3}, prompt, o)
		if err != nil {
			t.Fatal(err)
		}
		return res.Rows[0].IDs
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different samples:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Fatalf("seeds 7 and 8 drew the same 30 tokens: %v", a)
	}
	greedy := greedyReference(&hashLM{V: 40, K: 3}, prompt[0], 30, -1)
	if slices.Equal(a, greedy) {
		t.Fatalf("temperature 1.5 drew exactly the greedy sequence; sampling is not happening")
	}
}

func TestFiltersThatKeepOneTokenAreGreedy(t *testing.T) {
	prompt := [][]int{{5, 6}}
	want := greedyReference(&hashLM{V: 60, K: 4}, prompt[0], 25, -1)
	for name, sp := range map[string]Sampling{
		"top_k=1":    {Temperature: 2, TopK: 1, TopP: 1, RepetitionPenalty: 1, Seed: 3},
		"top_p=1e-6": {Temperature: 2, TopP: 1e-6, RepetitionPenalty: 1, Seed: 3},
	} {
		o := opts(25)
		o.Sampling = sp
		res, err := Generate(context.Background(), &hashLM{V: 60, K: 4}, prompt, o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Rows[0].IDs, want) {
			t.Errorf("%s: %v\nwant greedy %v", name, res.Rows[0].IDs, want)
		}
	}
}

// TestRepetitionPenaltyHandComputed: with penalty 2 and prompt [0]:
//
//	after 0: [2.0, 1.5, -1.0, -0.5], seen {0}     → [1.0, 1.5, -1.0, -0.5]  → 1 (greedy alone: 0)
//	after 1: [-0.2, 0.8, -0.1, 0.5], seen {0,1}   → [-0.4, 0.4, -0.1, 0.5]  → 3
//	after 3: [-0.3, -0.9, -0.35, -0.9], seen {0,1,3} → [-0.6, -1.8, -0.35, -1.8] → 2
func TestRepetitionPenaltyHandComputed(t *testing.T) {
	rows := map[int][]float32{
		0: {2.0, 1.5, -1.0, -0.5},
		1: {-0.2, 0.8, -0.1, 0.5},
		3: {-0.3, -0.9, -0.35, -0.9},
		2: {0, 0, 0, 1},
	}
	o := opts(3)
	o.Sampling.RepetitionPenalty = 2
	res, err := Generate(context.Background(), &hashLM{V: 4, K: 1, rows: rows}, [][]int{{0}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Rows[0].IDs, []int{0, 1, 3, 2}; !slices.Equal(got, want) {
		t.Fatalf("with penalty: %v, want %v", got, want)
	}
	res, err = Generate(context.Background(), &hashLM{V: 4, K: 1, rows: rows}, [][]int{{0}}, opts(3))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Rows[0].IDs, []int{0, 0, 0, 0}; !slices.Equal(got, want) {
		t.Fatalf("without penalty: %v, want %v", got, want)
	}
}

// script makes m produce text after prompt, then eos (when ≥ 0).
func script(m *hashLM, promptLen int, ids []int, eos int) {
	m.force = map[int]int{}
	for i, id := range ids {
		m.force[promptLen+i] = id
	}
	if eos >= 0 {
		m.force[promptLen+len(ids)] = eos
	}
}

type streamed struct {
	deltas map[int][]string
}

func (s *streamed) onText(row int, d string) {
	if s.deltas == nil {
		s.deltas = map[int][]string{}
	}
	s.deltas[row] = append(s.deltas[row], d)
}

// runScripted has a model over the GPT-2 vocabulary write text after prompt (then eos when ≥ 0)
// and returns the row and its streamed deltas; native picks the tokenizer's stream decoder
// over the re-decoding fallback.
func runScripted(t *testing.T, tok *tokenizer.Tokenizer, prompt, text []int, eos int, o Options, native bool) (Row, []string) {
	t.Helper()
	m := &hashLM{V: tok.VocabSize(), K: 3}
	script(m, len(prompt), text, eos)
	var s streamed
	o.Decoder = tok
	o.OnText = s.onText
	if native {
		o.NewStreamDecoder = func() StreamDecoder { return tok.NewStreamDecoder() }
	}
	res, err := Generate(context.Background(), m, [][]int{prompt}, o)
	if err != nil {
		t.Fatal(err)
	}
	return res.Rows[0], s.deltas[0]
}

func TestStreamingWithTokenizer(t *testing.T) {
	tok := gpt2(t)
	const want = "Hi 🦀 there, 日本語! 👨‍👩‍👧"
	prompt := tok.Encode("Say:")
	ids := tok.Encode(want)
	for _, native := range []bool{true, false} {
		o := opts(100)
		o.EOS = []int{tok.EOS()}
		row, deltas := runScripted(t, tok, prompt, ids, tok.EOS(), o, native)
		if row.Text != want || row.FinishReason != FinishEOS || row.IDs[len(row.IDs)-1] != tok.EOS() {
			t.Fatalf("native=%v: text %q reason %s ids %v", native, row.Text, row.FinishReason, row.IDs)
		}
		if row.GeneratedTokens != len(ids)+1 {
			t.Errorf("generated %d, want %d (text + EOS)", row.GeneratedTokens, len(ids)+1)
		}
		if got := strings.Join(deltas, ""); got != want {
			t.Errorf("native=%v: deltas join to %q", native, got)
		}
		for _, d := range deltas {
			if d == "" || !utf8.ValidString(d) {
				t.Errorf("native=%v: delta %q is empty or splits a character (all: %q)", native, d, deltas)
			}
		}
		if len(deltas) < 5 {
			t.Errorf("native=%v: only %d deltas; text is not streamed", native, len(deltas))
		}
	}
}

// TestLengthCutsCharacter ends a row inside a multi-token emoji: the unfinished bytes are
// flushed as U+FFFD, as Decode of the same ids gives.
func TestLengthCutsCharacter(t *testing.T) {
	tok := gpt2(t)
	prompt := tok.Encode("Q")
	ids := tok.Encode("ab🦀")
	for _, native := range []bool{true, false} {
		row, deltas := runScripted(t, tok, prompt, ids, -1, opts(len(ids)-1), native)
		want := tok.Decode(ids[:len(ids)-1])
		if row.Text != want || !strings.HasSuffix(want, "\uFFFD") || row.FinishReason != FinishLength {
			t.Errorf("native=%v: text %q reason %s, want %q length", native, row.Text, row.FinishReason, want)
		}
		if got := strings.Join(deltas, ""); got != want {
			t.Errorf("native=%v: deltas %q", native, deltas)
		}
	}
}

func TestStopStrings(t *testing.T) {
	tok := gpt2(t)
	cases := []struct {
		text, stop, want, reason string
	}{
		{"Hello\n\nWorld and more", "\n\n", "Hello", FinishStop},
		{"Hello world. Bye", "ld. B", "Hello wor", FinishStop},
		{"Hello x", "xyz", "Hello x", FinishEOS}, // a held-back prefix is released at the end
		{"abc 🦀 def", "🦀", "abc ", FinishStop},   // stop inside a multi-token character
		{"one two three", "three", "one two ", FinishStop},
	}
	for _, c := range cases {
		o := opts(50)
		o.EOS = []int{tok.EOS()}
		o.StopStrings = []string{"never", c.stop}
		row, deltas := runScripted(t, tok, tok.Encode("Q"), tok.Encode(c.text), tok.EOS(), o, true)
		if row.Text != c.want || row.FinishReason != c.reason {
			t.Errorf("%q stop %q: text %q reason %s, want %q %s", c.text, c.stop, row.Text, row.FinishReason, c.want, c.reason)
		}
		if got := strings.Join(deltas, ""); got != row.Text {
			t.Errorf("%q stop %q: deltas %q join to %q, text %q", c.text, c.stop, deltas, got, row.Text)
		}
	}
}

func TestBatchEqualsAlone(t *testing.T) {
	prompts := [][]int{{7}, {1, 2, 3, 4}, {9, 9, 8, 7, 6, 5, 4}}
	for name, sp := range map[string]Sampling{
		"greedy":  DefaultSampling(),
		"sampled": {Temperature: 0.9, TopK: 10, TopP: 0.9, RepetitionPenalty: 1.3, Seed: 42},
	} {
		o := opts(12)
		o.EOS = []int{0}
		o.Sampling = sp
		batch, err := Generate(context.Background(), &hashLM{V: 30, K: 5}, prompts, o)
		if err != nil {
			t.Fatal(err)
		}
		for b, p := range prompts {
			alone := o
			alone.Sampling.Seed = sp.Seed + uint64(b)
			res, err := Generate(context.Background(), &hashLM{V: 30, K: 5}, [][]int{p}, alone)
			if err != nil {
				t.Fatal(err)
			}
			got, want := batch.Rows[b], res.Rows[0]
			if !slices.Equal(got.IDs, want.IDs) || got.FinishReason != want.FinishReason {
				t.Errorf("%s row %d: batch %v (%s), alone %v (%s)", name, b, got.IDs, got.FinishReason, want.IDs, want.FinishReason)
			}
			if name == "greedy" {
				if ref := greedyReference(&hashLM{V: 30, K: 5}, p, 12, 0); !slices.Equal(got.IDs, ref) {
					t.Errorf("row %d: %v, reference %v", b, got.IDs, ref)
				}
			}
		}
	}
}

func TestEOSStopsRowsIndependently(t *testing.T) {
	m := &hashLM{V: 20, K: 1}
	// Row 0 (length 2) meets EOS 19 at its 3rd new token; row 1 (length 3) never does.
	m.rows = map[int][]float32{}
	for id := range 20 {
		row := make([]float32, 20)
		row[(id+1)%19] = 1 // count upwards, never to 19
		m.rows[id] = row
	}
	m.rows[4] = make([]float32, 20)
	m.rows[4][19] = 1
	o := opts(6)
	o.EOS = []int{19}
	res, err := Generate(context.Background(), m, [][]int{{0, 1}, {10, 11, 12}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Rows[0]; !slices.Equal(r.IDs, []int{0, 1, 2, 3, 4, 19}) || r.FinishReason != FinishEOS {
		t.Errorf("row 0: %v %s", r.IDs, r.FinishReason)
	}
	if r := res.Rows[1]; !slices.Equal(r.IDs, []int{10, 11, 12, 13, 14, 15, 16, 17, 18}) || r.FinishReason != FinishLength {
		t.Errorf("row 1: %v %s", r.IDs, r.FinishReason)
	}
}

func TestContextLength(t *testing.T) {
	m := &hashLM{V: 10, K: 2}
	o := opts(50)
	o.MaxContext = 4
	_, err := Generate(context.Background(), m, [][]int{{1}, {1, 2, 3, 4}}, o)
	if !errors.Is(err, ErrContextLength) || m.calls != 0 {
		t.Fatalf("prompt filling the context: err %v after %d steps", err, m.calls)
	}
	o.MaxContext = 6
	res, err := Generate(context.Background(), &hashLM{V: 10, K: 2}, [][]int{{1}, {1, 2, 3, 4}}, o)
	if err != nil {
		t.Fatal(err)
	}
	for b, r := range res.Rows {
		if r.FinishReason != FinishLength || r.GeneratedTokens != 2 {
			t.Errorf("row %d: %d new tokens, reason %s; want 2 (padded length 4, context 6), length", b, r.GeneratedTokens, r.FinishReason)
		}
	}
}

func TestCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &hashLM{V: 10, K: 2, hook: func(call int) {
		if call == 3 {
			cancel()
		}
	}}
	_, err := Generate(ctx, m, [][]int{{1, 2}}, opts(100))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if m.calls != 3 {
		t.Errorf("%d steps after cancelling at step 3", m.calls)
	}
	_, err = Generate(ctx, &hashLM{V: 10, K: 2}, [][]int{{1}}, opts(5))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: err %v", err)
	}
}

type badStepper struct{ n int }

func (s badStepper) Step(context.Context, []int64, int, int, []int64) ([]float32, error) {
	return make([]float32, s.n), nil
}

func TestInvalidInput(t *testing.T) {
	tok := gpt2(t)
	m := &hashLM{V: 10, K: 2}
	cases := []struct {
		name    string
		prompts [][]int
		mod     func(*Options)
		field   string
	}{
		{"no prompts", nil, nil, "no prompts"},
		{"empty prompt", [][]int{{1}, {}}, nil, "prompt 1 is empty"},
		{"negative id", [][]int{{1, -2}}, nil, "negative"},
		{"max_new_tokens", [][]int{{1}}, func(o *Options) { o.MaxNewTokens = 0 }, "max_new_tokens"},
		{"temperature", [][]int{{1}}, func(o *Options) { o.Sampling.Temperature = -1 }, "temperature"},
		{"temperature NaN", [][]int{{1}}, func(o *Options) { o.Sampling.Temperature = math.NaN() }, "temperature"},
		{"top_k", [][]int{{1}}, func(o *Options) { o.Sampling.TopK = -1 }, "top_k"},
		{"top_p 0", [][]int{{1}}, func(o *Options) { o.Sampling.TopP = 0 }, "top_p"},
		{"top_p 1.5", [][]int{{1}}, func(o *Options) { o.Sampling.TopP = 1.5 }, "top_p"},
		{"repetition_penalty", [][]int{{1}}, func(o *Options) { o.Sampling.RepetitionPenalty = 0 }, "repetition_penalty"},
		{"stop without decoder", [][]int{{1}}, func(o *Options) { o.StopStrings = []string{"x"} }, "Decoder"},
		{"empty stop", [][]int{{1}}, func(o *Options) { o.Decoder = tok; o.StopStrings = []string{""} }, "stop string"},
	}
	for _, c := range cases {
		o := opts(5)
		if c.mod != nil {
			c.mod(&o)
		}
		_, err := Generate(context.Background(), m, c.prompts, o)
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err %v, want ErrInvalidOptions naming %q", c.name, err, c.field)
		}
	}
	if m.calls != 0 {
		t.Errorf("invalid input reached the model (%d steps)", m.calls)
	}
	if _, err := Generate(context.Background(), badStepper{n: 7}, [][]int{{1}, {2}}, opts(3)); err == nil {
		t.Error("7 logits for 2 rows accepted")
	}
	if _, err := Generate(context.Background(), &hashLM{V: 10, K: 2}, [][]int{{1, 12}}, opts(3)); err == nil {
		t.Error("prompt id beyond the vocabulary accepted")
	}
}

func TestApplyRepetitionPenalty(t *testing.T) {
	l := []float32{2, -1, 0.5, -0.25, 3}
	ApplyRepetitionPenalty(l, []int{0, 1, 3}, 2)
	if want := []float32{1, -2, 0.5, -0.5, 3}; !slices.Equal(l, want) {
		t.Fatalf("%v, want %v", l, want)
	}
}

func TestApplyTopK(t *testing.T) {
	inf := float32(math.Inf(-1))
	for _, c := range []struct {
		k    int
		want []float32
	}{
		{1, []float32{inf, 3, 3, inf}}, // ties with the k-th survive, as in Hugging Face
		{2, []float32{inf, 3, 3, inf}},
		{3, []float32{inf, 3, 3, 2}},
		{4, []float32{1, 3, 3, 2}},
		{0, []float32{1, 3, 3, 2}},
	} {
		l := []float32{1, 3, 3, 2}
		ApplyTopK(l, c.k, nil)
		if !slices.Equal(l, c.want) {
			t.Errorf("k=%d: %v, want %v", c.k, l, c.want)
		}
	}
}

// TestApplyTopP: probabilities [0.5 0.3 0.15 0.05]. Hugging Face drops tokens whose ascending
// cumulative probability (0.05 0.2 0.5 1.0) is ≤ 1−p: p=0.75 keeps {0.5, 0.3}; p=0.85 keeps
// three; p=0.4 keeps only the top one.
func TestApplyTopP(t *testing.T) {
	for _, c := range []struct {
		p    float64
		keep []bool
	}{
		{0.75, []bool{true, true, false, false}},
		{0.85, []bool{true, true, true, false}},
		{0.4, []bool{true, false, false, false}},
		{1, []bool{true, true, true, true}},
	} {
		l := logOf(0.15, 0.5, 0.05, 0.3)
		perm := []int{1, 3, 0, 2} // tokens in decreasing probability
		ApplyTopP(l, c.p, nil)
		for rank, tok := range perm {
			if kept := !math.IsInf(float64(l[tok]), -1); kept != c.keep[rank] {
				t.Errorf("p=%v: token %d (rank %d) kept=%v, want %v (%v)", c.p, tok, rank, kept, c.keep[rank], l)
			}
		}
	}
}

func TestSampleInvertsCDF(t *testing.T) {
	l := logOf(0.25, 0.25, 0.5)
	for _, c := range []struct {
		u    float64
		want int
	}{{0, 0}, {0.24, 0}, {0.26, 1}, {0.49, 1}, {0.51, 2}, {0.999, 2}} {
		if got := Sample(l, c.u); got != c.want {
			t.Errorf("u=%v: %d, want %d", c.u, got, c.want)
		}
	}
	inf := float32(math.Inf(-1))
	if got := Sample([]float32{inf, 0, inf}, 0.99); got != 1 {
		t.Errorf("masked sample: %d", got)
	}
}

// sampleFreqTol bounds |observed frequency − probability| over sampleDraws draws (4σ ≈ 0.01).
const (
	sampleDraws   = 40000
	sampleFreqTol = 0.01
)

func TestSampleFrequencies(t *testing.T) {
	probs := []float64{0.1, 0.2, 0.3, 0.4}
	l := logOf(probs...)
	rng := rand.New(rand.NewPCG(1, pcgStream))
	counts := make([]int, len(probs))
	for range sampleDraws {
		counts[Sample(l, rng.Float64())]++
	}
	for i, p := range probs {
		if f := float64(counts[i]) / sampleDraws; math.Abs(f-p) > sampleFreqTol {
			t.Errorf("token %d: frequency %.4f, probability %.2f (|err| %.4f > %v)", i, f, p, math.Abs(f-p), sampleFreqTol)
		}
	}
}

func TestGreedyFirstMax(t *testing.T) {
	if got := Greedy([]float32{1, 5, 5, 2}); got != 1 {
		t.Fatalf("Greedy = %d, want the first maximum 1", got)
	}
}

func BenchmarkPick(b *testing.B) {
	const V = 50257
	logits := make([]float32, V)
	for i := range logits {
		logits[i] = hashWeight(3, 0, uint64(i)) * 4
	}
	for name, sp := range map[string]Sampling{
		"greedy":     DefaultSampling(),
		"top_k=50":   {Temperature: 0.8, TopK: 50, TopP: 1, RepetitionPenalty: 1.1},
		"top_p=0.9":  {Temperature: 0.8, TopP: 0.9, RepetitionPenalty: 1.1},
		"k=50,p=0.9": {Temperature: 0.8, TopK: 50, TopP: 0.9, RepetitionPenalty: 1.1},
	} {
		b.Run(name, func(b *testing.B) {
			o := Options{MaxNewTokens: 1 << 30, Sampling: sp}
			r := newRowState(0, []int{1, 2, 3}, 0, &o)
			for b.Loop() {
				r.pick(logits)
			}
		})
	}
}

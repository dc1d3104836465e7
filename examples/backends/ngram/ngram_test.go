package main

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/conformance"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/tokenizer"
	"github.com/modelrt/modelrt/sdk"
)

const modelDir = "testdata/model"

// probTol bounds |Σ softmax(logits) − 1|: logits are log-probabilities computed in float64
// and rounded to float32.
const probTol = 1e-5

// fuzzProbTol is probTol for any config: a vocabulary of near-equal tiny probabilities (k huge)
// rounds more.
const fuzzProbTol = 1e-4

// TestContract runs modelrt's contract checks on this backend, in-process (which also checks
// that a call with an already-cancelled context is refused) and as the real plugin binary.
func TestContract(t *testing.T) {
	t.Run("in-process", func(t *testing.T) {
		conformance.CheckBackend(t, conformance.Contract{Backend: newBackend(), Model: modelDir, Task: sdk.TaskCausalLM})
	})
	t.Run("plugin", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "modelrt-ngram")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		// With the config block of pipeline.hcl: the limit of 8 sessions must not get in the way.
		conformance.CheckBackend(t, conformance.Contract{Plugin: bin, Model: modelDir, Task: sdk.TaskCausalLM, Config: []byte(`{"max_sessions": 8}`)})
	})
}

// TestCounts checks the smoothing formula on a corpus small enough to count by hand:
// "abab" + EOS, order 2, k = 1: after "a", b was seen twice, so P(b|a) = (2+1)/(2+257).
func TestCounts(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "corpus.txt"), []byte("abab"), 0o644)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"order": 2, "k": 1, "n_positions": 8}`), 0o644)
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, VocabSize)
	for _, tc := range []struct {
		ctx  []int32
		tok  int32
		want float64
	}{
		{[]int32{'a'}, 'b', 3.0 / 259},
		{[]int32{'a'}, 'a', 1.0 / 259},
		{[]int32{'b'}, 'a', 2.0 / 259}, // b is followed by a once and by EOS once
		{[]int32{'b'}, EOS, 2.0 / 259},
		{[]int32{}, 'a', 3.0 / 262},         // unigram: 5 tokens in all, a twice
		{[]int32{'z'}, 'a', 3.0 / 262},      // unseen context: back off to the unigram
		{[]int32{'x', 'a'}, 'b', 3.0 / 259}, // only the last order-1 tokens count
	} {
		m.Logits(tc.ctx, logits)
		if got := math.Exp(float64(logits[tc.tok])); math.Abs(got-tc.want) > probTol {
			t.Errorf("P(%q | %q) = %.6f, want %.6f", tc.tok, tc.ctx, got, tc.want)
		}
	}
}

func TestLogitsAreLogProbabilities(t *testing.T) {
	m, err := Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, VocabSize)
	for _, ctx := range []string{"", "The", "gard", "zzzz", "the s"} {
		c := make([]int32, 0, len(ctx))
		for _, b := range []byte(ctx) {
			c = m.push(c, int32(b))
		}
		m.Logits(c, logits)
		sum := 0.0
		for _, l := range logits {
			sum += math.Exp(float64(l))
		}
		if math.Abs(sum-1) > probTol {
			t.Errorf("context %q: probabilities sum to %.8f", ctx, sum)
		}
	}
}

// TestGenerateWithHostTokenizer drives the backend the way modelrt does: the host tokenizer
// (from the vocab.json + merges.txt that write-tokenizer made), runtime/lm sessions and the
// host's greedy decode loop. Greedy decoding of an n-gram model only ever takes a continuation
// seen in the corpus, so every n-gram of the output must occur in the corpus.
func TestGenerateWithHostTokenizer(t *testing.T) {
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	prompt := "The gardener"
	ids := tok.Encode(prompt)
	if len(ids) != len(prompt) || ids[0] != 'T' {
		t.Fatalf("host tokenizer: %q → %v, want one id per byte", prompt, ids)
	}
	ctx := context.Background()
	m, err := lm.Load(ctx, newBackend(), "ngram", modelDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.VocabSize != VocabSize || m.EOS != EOS || m.Context != 512 {
		t.Fatalf("lm.Model = %+v: metadata not read", m)
	}
	sess, err := m.Open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	res, err := generate.Generate(ctx, sess, [][]int{ids}, generate.Options{
		MaxNewTokens: 60, MaxContext: m.Context, EOS: []int{m.EOS}, Sampling: generate.DefaultSampling(), Decoder: tok,
	})
	if err != nil {
		t.Fatal(err)
	}
	text := prompt + res.Rows[0].Text
	t.Logf("greedy: %q (%s)", text, res.Rows[0].FinishReason)
	corpus, _ := os.ReadFile(filepath.Join(modelDir, "corpus.txt"))
	const n = 5 // config.json's order
	for i := 0; i+n <= len(text); i++ {
		if !strings.Contains(string(corpus), text[i:i+n]) {
			t.Errorf("the %d-gram %q at %d of the output is not in the corpus", n, text[i:i+n], i)
		}
	}
	if res.Rows[0].GeneratedTokens == 0 {
		t.Error("no tokens generated")
	}
}

func TestLoadErrors(t *testing.T) {
	b := newBackend()
	ctx := context.Background()
	dir := t.TempDir()
	_, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: "m", Path: dir, Task: sdk.TaskCausalLM})
	if sdk.CodeOf(err) != sdk.CodeNotFound || !strings.Contains(err.Error(), "corpus.txt") {
		t.Errorf("no corpus.txt: %v, want NotFound naming corpus.txt", err)
	}
	os.WriteFile(filepath.Join(dir, "corpus.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"order": 0}`), 0o644)
	_, err = b.LoadModel(ctx, &sdk.LoadModelRequest{Name: "m", Path: dir, Task: sdk.TaskCausalLM})
	if sdk.CodeOf(err) != sdk.CodeInvalidArgument || !strings.Contains(err.Error(), "order") {
		t.Errorf("order 0: %v, want InvalidArgument naming order", err)
	}
	_, err = b.LoadModel(ctx, &sdk.LoadModelRequest{Name: "m", Path: modelDir, Task: sdk.TaskVAE})
	if sdk.CodeOf(err) != sdk.CodeUnimplemented {
		t.Errorf("task vae: %v, want Unimplemented", err)
	}
}

// TestConformanceChecks runs modelrt's case runner on this backend with cases whose expected
// values come straight from Model.Logits (the formula, without sessions or the wire), so that
// its checks — KV cache (the session's context) against one pass, batch against one by one,
// left padding, reload, fixed-seed sampling — exercise the backend's plumbing.
func TestConformanceChecks(t *testing.T) {
	m, err := Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	text := "The blackbird sings"
	ids := make([]int64, len(text))
	var logits []float32
	ctx := []int32{}
	row := make([]float32, VocabSize)
	for i, b := range []byte(text) {
		ids[i] = int64(b)
		ctx = m.push(ctx, int32(b))
		m.Logits(ctx, row)
		logits = append(logits, row...)
	}
	T := int64(len(text))
	const newTokens = 12
	greedy := append([]int64{}, ids...)
	for range newTokens {
		m.Logits(ctx, row)
		next := int64(generate.Greedy(row))
		greedy = append(greedy, next)
		ctx = m.push(ctx, int32(next))
	}
	cases := []*conformance.Case{
		{Name: "ngram-logits", Model: modelDir, Task: conformance.TaskLogits, Tol: conformance.Tolerance{Abs: 1e-6, Rel: 1e-6},
			Inputs:   map[string]*conformance.Tensor{"input_ids": {DType: sdk.Int64, Shape: []int64{1, T}, I64: ids}},
			Expected: map[string]*conformance.Tensor{"logits": {DType: sdk.Float32, Shape: []int64{1, T, VocabSize}, F32: logits}}},
		{Name: "ngram-generate", Model: modelDir, Task: conformance.TaskGenerate, Params: conformance.Params{MaxNewTokens: newTokens, Greedy: true},
			Inputs:   map[string]*conformance.Tensor{"input_ids": {DType: sdk.Int64, Shape: []int64{1, T}, I64: ids}},
			Expected: map[string]*conformance.Tensor{"ids": {DType: sdk.Int64, Shape: []int64{1, T + newTokens}, I64: greedy}}},
	}
	rep := conformance.Run(context.Background(), cases, []conformance.Target{{Name: "ngram", Backend: newBackend()}}, conformance.Options{})
	var b strings.Builder
	conformance.WriteTable(&b, rep)
	t.Log("\n" + b.String())
	for _, r := range rep.Rows {
		if r.Result != conformance.Pass {
			t.Errorf("%s: %s: %s", r.Case, r.Result, r.Reason)
		}
		t.Logf("%s: %s", r.Case, r.Summary())
	}
}

// BenchmarkDecodeStep is one decode step as the host makes it: one token appended to a session,
// the last position's logits back (in-process, without the wire).
func BenchmarkDecodeStep(b *testing.B) {
	ctx := context.Background()
	be := newBackend()
	if _, err := be.LoadModel(ctx, &sdk.LoadModelRequest{Name: "m", Path: modelDir, Task: sdk.TaskCausalLM}); err != nil {
		b.Fatal(err)
	}
	s, err := be.OpenSession(ctx, &sdk.OpenSessionRequest{Model: "m", BatchSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	req := &sdk.InferRequest{Model: "m", Session: s.Session, Params: map[string]string{sdk.ParamLogits: "last"},
		Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, 1}, []int64{'e'})}}
	n := 0
	for b.Loop() {
		if n == 500 { // stay within n_positions
			b.StopTimer()
			be.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s.Session})
			s, _ = be.OpenSession(ctx, &sdk.OpenSessionRequest{Model: "m", BatchSize: 1})
			req.Session, n = s.Session, 0
			b.StartTimer()
		}
		if _, err := be.Infer(ctx, req); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// FuzzLoad feeds arbitrary config.json and corpus.txt contents to Load: it must not panic, and a
// model it accepts must give log-probabilities that sum to 1 after any context.
func FuzzLoad(f *testing.F) {
	corpus, _ := os.ReadFile(filepath.Join(modelDir, "corpus.txt"))
	f.Add([]byte(`{"order": 5, "k": 0.0001, "n_positions": 512}`), corpus[:300], []byte("The"))
	f.Add([]byte(`{"order": 1, "k": 1}`), []byte("a\n\n\n\nb"), []byte{0, 255})
	f.Add([]byte(`{"order": 16, "k": 1e300, "n_positions": 1}`), []byte("\r\n\r\n"), []byte{})
	f.Add([]byte(`not json`), []byte("x"), []byte("x"))
	f.Fuzz(func(t *testing.T, config, text, ctx []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644)
		os.WriteFile(filepath.Join(dir, "corpus.txt"), text, 0o644)
		m, err := Load(dir)
		if err != nil {
			return
		}
		c := []int32{}
		for _, b := range ctx {
			c = m.push(c, int32(b))
		}
		logits := make([]float32, VocabSize)
		m.Logits(c, logits)
		sum := 0.0
		for _, l := range logits {
			sum += math.Exp(float64(l))
		}
		if math.Abs(sum-1) > fuzzProbTol {
			t.Fatalf("probabilities sum to %v after %q (config %s)", sum, ctx, config)
		}
	})
}

// TestImportsOnlySDK keeps the example honest: besides the standard library, the backend's code
// (not its tests) imports package sdk and nothing else.
func TestImportsOnlySDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(imp, "/")
		if strings.Contains(first, ".") && imp != "github.com/modelrt/modelrt/sdk" {
			t.Errorf("the backend imports %s; a custom backend should need only the sdk", imp)
		}
	}
}

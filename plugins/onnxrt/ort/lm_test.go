package ort

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// logitsTol is the absolute tolerance between ONNX Runtime's logits and PyTorch's for the same
// float32 weights (different kernels and summation orders; observed differences are ~1e-6).
const logitsTol = 1e-4

const modelsDir = "../../../testdata/models"

// fixtures are the graphs scripts/fixtures/gpt2_onnx.py exports from gpt2-odd.
var fixtures = []struct {
	dir       string
	conv      Convention
	idsType   string
	pos, mask bool
}{
	{"gpt2-odd-onnx-optimum-op14", ConventionOptimum, "int64", true, true},
	{"gpt2-odd-onnx-optimum-op17", ConventionOptimum, "int64", false, true},
	{"gpt2-odd-onnx-nocache-op14", ConventionNoPast, "int64", true, true},
	{"gpt2-odd-onnx-nocache-op17", ConventionNoPast, "int64", false, true},
	{"gpt2-odd-onnx-stacked-op14", ConventionStacked, "int32", true, true},
	{"gpt2-odd-onnx-merged-op14", ConventionOptimum, "int64", true, true},
}

// gpt2-odd's shape (testdata/models/README.md).
const (
	oddLayers, oddHeads, oddHeadDim, oddVocab, oddContext = 3, 3, 16, 384, 32
	oddEOS                                                = 383
)

var initErr error

func TestMain(m *testing.M) {
	initErr = Init(EnvOptions{})
	if initErr != nil && os.Getenv("CI") == "true" {
		fmt.Fprintf(os.Stderr, "ONNX Runtime is required in CI: %v\n", initErr)
		os.Exit(1)
	}
	code := m.Run()
	if bench124M.dir != "" {
		os.RemoveAll(bench124M.dir)
	}
	os.Exit(code)
}

// needORT skips (outside CI, where TestMain already failed) when the library is missing.
func needORT(t testing.TB) {
	t.Helper()
	if initErr != nil {
		t.Skipf("ONNX Runtime library unavailable (run scripts/install-onnxruntime.sh): %v", initErr)
	}
}

// reference is the PyTorch reference written beside each graph.
type reference struct {
	ids, mask []int64 // (2,T)
	T         int
	logits    []float32 // (2,T,V)
	greedy    []int64   // prompt + 8 new tokens
}

func loadReference(t testing.TB, dir string) reference {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r reference
	var shape []int
	if r.ids, shape, err = f.Int64("input_ids"); err != nil {
		t.Fatal(err)
	}
	r.T = shape[1]
	if r.mask, _, err = f.Int64("attention_mask"); err != nil {
		t.Fatal(err)
	}
	if r.logits, _, err = f.Float32("logits"); err != nil {
		t.Fatal(err)
	}
	if r.greedy, _, err = f.Int64("greedy_ids"); err != nil {
		t.Fatal(err)
	}
	return r
}

func loadFixture(t testing.TB, dir string) *LM {
	t.Helper()
	needORT(t)
	lm, err := LoadLM(filepath.Join(modelsDir, dir), SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lm.Close() })
	return lm
}

func newSession(t testing.TB, lm *LM, batch int) *LMSession {
	t.Helper()
	s, err := lm.NewSession(batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// compare fails with the max abs/rel error and the first mismatches when got and want differ
// by more than tol anywhere; skip, when non-nil, excludes indices.
func compare(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var maxAbs, maxRel float64
	var bad []string
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		maxAbs = math.Max(maxAbs, d)
		if w := math.Abs(float64(want[i])); w > 0 {
			maxRel = math.Max(maxRel, d/w)
		}
		if d > tol && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("[%d] got %.6g want %.6g", i, got[i], want[i]))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%s: max abs err %.3g, max rel err %.3g (tol %.0e); first mismatches: %s", what, maxAbs, maxRel, tol, strings.Join(bad, ", "))
	}
	t.Logf("%s: max abs err %.3g, max rel err %.3g", what, maxAbs, maxRel)
}

func TestDetectFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.dir, func(t *testing.T) {
			info := loadFixture(t, fx.dir).Info()
			inspected, err := InspectLM(filepath.Join(modelsDir, fx.dir))
			if err != nil || inspected != info {
				t.Fatalf("InspectLM = %+v, %v; LoadLM's Info() = %+v", inspected, err, info)
			}
			file := "model.onnx"
			if strings.Contains(fx.dir, "merged") {
				file = "decoder_model_merged.onnx"
			}
			want := LMInfo{
				Path: filepath.Join(modelsDir, fx.dir, file), Convention: fx.conv,
				NLayer: oddLayers, NHead: oddHeads, HeadDim: oddHeadDim, VocabSize: oddVocab,
				IDsType: fx.idsType, HasPositionIDs: fx.pos, HasAttentionMask: fx.mask,
				EOS: oddEOS, MaxContext: oddContext,
			}
			if info != want {
				t.Fatalf("Info() = %+v\nwant      %+v", info, want)
			}
		})
	}
}

// TestLogitsMatchPyTorch runs the reference batch (row 1 left-padded) in one prefill.
func TestLogitsMatchPyTorch(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.dir, func(t *testing.T) {
			lm := loadFixture(t, fx.dir)
			ref := loadReference(t, filepath.Join(modelsDir, fx.dir))
			s := newSession(t, lm, 2)
			got := make([]float32, 2*ref.T*oddVocab)
			if err := s.Forward(context.Background(), ref.ids, 2, ref.T, ref.mask, false, got); err != nil {
				t.Fatal(err)
			}
			compare(t, "logits", got, ref.logits, logitsTol)
			if s.Len() != ref.T {
				t.Fatalf("Len() = %d after a prefill of %d", s.Len(), ref.T)
			}
		})
	}
}

// TestCacheStepwise feeds the reference batch as a prefill of 3 then one position per step,
// with the growing mask, and compares every step's logits with the one-shot reference.
func TestCacheStepwise(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.dir, func(t *testing.T) {
			lm := loadFixture(t, fx.dir)
			ref := loadReference(t, filepath.Join(modelsDir, fx.dir))
			s := newSession(t, lm, 2)
			V := oddVocab
			for n := 0; n < ref.T; {
				step := 1
				if n == 0 {
					step = 3
				}
				ids := make([]int64, 0, 2*step)
				mask := make([]int64, 0, 2*(n+step))
				for b := 0; b < 2; b++ {
					ids = append(ids, ref.ids[b*ref.T+n:b*ref.T+n+step]...)
					mask = append(mask, ref.mask[b*ref.T:b*ref.T+n+step]...)
				}
				got := make([]float32, 2*step*V)
				if err := s.Forward(context.Background(), ids, 2, step, mask, false, got); err != nil {
					t.Fatalf("step at %d: %v", n, err)
				}
				var want []float32
				for b := 0; b < 2; b++ {
					want = append(want, ref.logits[(b*ref.T+n)*V:(b*ref.T+n+step)*V]...)
				}
				compare(t, fmt.Sprintf("positions %d..%d", n, n+step-1), got, want, logitsTol)
				n += step
			}
		})
	}
}

// TestLeftPaddingMatchesUnpadded: the real positions of the padded reference row equal a run of
// the same tokens alone, without padding.
func TestLeftPaddingMatchesUnpadded(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.dir, func(t *testing.T) {
			lm := loadFixture(t, fx.dir)
			ref := loadReference(t, filepath.Join(modelsDir, fx.dir))
			V := oddVocab
			pads := 0
			for pads < ref.T && ref.mask[ref.T+pads] == 0 {
				pads++
			}
			if pads == 0 {
				t.Fatal("reference row 1 is not left-padded")
			}
			padded := newSession(t, lm, 2)
			all := make([]float32, 2*ref.T*V)
			if err := padded.Forward(context.Background(), ref.ids, 2, ref.T, ref.mask, false, all); err != nil {
				t.Fatal(err)
			}
			alone := newSession(t, lm, 1)
			real := ref.T - pads
			got := make([]float32, real*V)
			if err := alone.Forward(context.Background(), ref.ids[ref.T+pads:], 1, real, nil, false, got); err != nil {
				t.Fatal(err)
			}
			compare(t, "padded row vs alone", all[(ref.T+pads)*V:], got, logitsTol)
		})
	}
}

// greedy decodes n tokens with the KV cache (one Forward per token, last logits only) and
// returns the new ids per row.
func greedy(t *testing.T, s *LMSession, prompt []int64, mask []int64, B, n int) [][]int64 {
	t.Helper()
	V := oddVocab
	T := len(prompt) / B
	logits := make([]float32, B*V)
	out := make([][]int64, B)
	ids := prompt
	step := T
	for i := 0; i < n; i++ {
		if err := s.Forward(context.Background(), ids, B, step, mask, true, logits); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		ids = make([]int64, B)
		for b := 0; b < B; b++ {
			ids[b] = int64(argmax(logits[b*V : (b+1)*V]))
			out[b] = append(out[b], ids[b])
		}
		if mask != nil {
			mask = growMask(mask, B, s.Len())
		}
		step = 1
	}
	return out
}

// TestGreedyMatchesReference: greedy continuation of the reference prompt, alone and as the
// left-padded row of a batch, equals PyTorch's greedy_ids.
func TestGreedyMatchesReference(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.dir, func(t *testing.T) {
			lm := loadFixture(t, fx.dir)
			ref := loadReference(t, filepath.Join(modelsDir, fx.dir))
			const newTokens = 8
			prompt := ref.greedy[:len(ref.greedy)-newTokens]
			want := fmt.Sprint(ref.greedy[len(prompt):])

			got := greedy(t, newSession(t, lm, 1), prompt, nil, 1, newTokens)
			if fmt.Sprint(got[0]) != want {
				t.Fatalf("alone: greedy %v, want %v", got[0], want)
			}

			// Row 0: another prompt two tokens longer; row 1: the reference prompt after 2 pads.
			P := len(prompt) + 2
			ids := make([]int64, 2*P)
			mask := make([]int64, 2*P)
			for j := 0; j < P; j++ {
				ids[j], mask[j] = int64((j*37+11)%oddVocab), 1
			}
			for j := 0; j < len(prompt); j++ {
				ids[P+2+j], mask[P+2+j] = prompt[j], 1
			}
			ids[P], ids[P+1] = oddEOS, oddEOS
			got = greedy(t, newSession(t, lm, 2), ids, mask, 2, newTokens)
			if fmt.Sprint(got[1]) != want {
				t.Fatalf("left-padded in a batch: greedy %v, want %v", got[1], want)
			}
		})
	}
}

func TestForwardRejectsBadInput(t *testing.T) {
	lm := loadFixture(t, fixtures[0].dir)
	V := oddVocab
	dst := make([]float32, 2*40*V)
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(s *LMSession) error
	}{
		{"id out of range", func(s *LMSession) error { return s.Forward(ctx, []int64{1, oddVocab}, 1, 2, nil, false, dst) }},
		{"negative id", func(s *LMSession) error { return s.Forward(ctx, []int64{-1}, 1, 1, nil, false, dst) }},
		{"wrong batch", func(s *LMSession) error { return s.Forward(ctx, []int64{1, 2}, 2, 1, nil, false, dst) }},
		{"ids length", func(s *LMSession) error { return s.Forward(ctx, []int64{1, 2, 3}, 1, 2, nil, false, dst) }},
		{"no positions", func(s *LMSession) error { return s.Forward(ctx, nil, 1, 0, nil, false, dst) }},
		{"mask length", func(s *LMSession) error { return s.Forward(ctx, []int64{1, 2}, 1, 2, []int64{1}, false, dst) }},
		{"mask value", func(s *LMSession) error { return s.Forward(ctx, []int64{1, 2}, 1, 2, []int64{1, 2}, false, dst) }},
		{"beyond context", func(s *LMSession) error {
			return s.Forward(ctx, make([]int64, oddContext+1), 1, oddContext+1, nil, false, dst)
		}},
		{"small destination", func(s *LMSession) error { return s.Forward(ctx, []int64{1, 2}, 1, 2, nil, false, dst[:V]) }},
		{"mask history changed", func(s *LMSession) error {
			if err := s.Forward(ctx, []int64{1, 2}, 1, 2, []int64{0, 1}, false, dst); err != nil {
				return fmt.Errorf("first step: %w", err)
			}
			return s.Forward(ctx, []int64{3}, 1, 1, []int64{1, 1, 1}, false, dst)
		}},
		{"context filled stepwise", func(s *LMSession) error {
			if err := s.Forward(ctx, make([]int64, oddContext), 1, oddContext, nil, true, dst); err != nil {
				return fmt.Errorf("first step: %w", err)
			}
			return s.Forward(ctx, []int64{3}, 1, 1, nil, true, dst)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(t, lm, 1)
			err := c.run(s)
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error %v, want ErrInvalidInput", err)
			}
			t.Log(err)
		})
	}
	// The session survives a rejected step.
	s := newSession(t, lm, 1)
	if err := s.Forward(ctx, []int64{oddVocab}, 1, 1, nil, false, dst); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("error %v, want ErrInvalidInput", err)
	}
	if err := s.Forward(ctx, []int64{5}, 1, 1, nil, false, dst); err != nil || s.Len() != 1 {
		t.Fatalf("after a rejected step: err %v, Len %d", err, s.Len())
	}
}

func TestForwardCancelled(t *testing.T) {
	lm := loadFixture(t, fixtures[0].dir)
	s := newSession(t, lm, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Forward(ctx, []int64{1}, 1, 1, nil, false, make([]float32, oddVocab))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if s.Len() != 0 {
		t.Fatalf("Len() = %d after a cancelled step", s.Len())
	}
}

func TestClosed(t *testing.T) {
	needORT(t)
	lm, err := LoadLM(filepath.Join(modelsDir, fixtures[0].dir), SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := lm.NewSession(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := lm.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Forward(context.Background(), []int64{1}, 1, 1, nil, false, make([]float32, oddVocab)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Forward after LM.Close: %v, want ErrClosed", err)
	}
	if _, err := lm.NewSession(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewSession after LM.Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGraphFileLookup: LoadLM takes the first of LMFiles in a directory, or a file path.
func TestGraphFileLookup(t *testing.T) {
	needORT(t)
	src, err := filepath.Abs(filepath.Join(modelsDir, fixtures[0].dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := LoadLM(dir, SessionOptions{}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), strings.Join(LMFiles, ", ")) {
		t.Fatalf("empty directory: %v, want fs.ErrNotExist listing %v", err, LMFiles)
	}
	with := filepath.Join(dir, "decoder_with_past_model.onnx")
	if err := os.Symlink(src, with); err != nil {
		t.Fatal(err)
	}
	lm, err := LoadLM(dir, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if i := lm.Info(); i.Path != with || i.MaxContext != 0 || i.EOS != -1 {
		t.Fatalf("Info() = %+v; want %s, no config (MaxContext 0, EOS -1)", i, with)
	}
	lm.Close()
	if lm, err = LoadLM(src, SessionOptions{}); err != nil || lm.Info().Path != src || lm.Info().MaxContext != oddContext {
		t.Fatalf("file path: %v, %+v", err, lm)
	}
	lm.Close()
}

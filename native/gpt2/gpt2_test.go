package gpt2

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/native/gpt2/gpt2ref"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

const (
	// refLogitsTol is the absolute tolerance between native logits and the PyTorch reference
	// (float32 both; the difference is summation order only).
	refLogitsTol = 1e-4
	// selfTol bounds native-vs-native comparisons that differ only in how the work is split
	// (cache vs recompute, padded vs unpadded batch).
	selfTol = 2e-5
)

var fixtures = []string{"gpt2-tiny", "gpt2-odd", "gpt2-bf16"}

func fixtureDir(name string) string { return filepath.Join("..", "..", "testdata", "models", name) }

// forEachFixture runs f as a subtest for every fixture with its model and reference.
func forEachFixture(t *testing.T, f func(t *testing.T, name string, m *Model, r *gpt2ref.Reference)) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			f(t, name, mustLoad(t, name), mustReference(t, fixtureDir(name)))
		})
	}
}

func mustReference(t *testing.T, dir string) *gpt2ref.Reference {
	t.Helper()
	r, err := gpt2ref.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// compare fails t when |got−want| > tol anywhere, printing max abs and rel error and the first
// mismatching indices.
func compare(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var maxAbs, maxRel float64
	var bad []string
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if !(d <= tol) && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("[%d] got %.6g want %.6g", i, got[i], want[i]))
		}
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		maxAbs = max(maxAbs, d)
		if w := math.Abs(float64(want[i])); w > 1e-3 {
			maxRel = max(maxRel, d/w)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: max abs %.3g, max rel %.3g (tol %g); first mismatches: %s", what, maxAbs, maxRel, tol, strings.Join(bad, ", "))
	} else {
		t.Logf("%s: max abs %.3g, max rel %.3g (tol %g)", what, maxAbs, maxRel, tol)
	}
}

// forwardReference runs the reference batch through a fresh cache.
func forwardReference(t *testing.T, m *Model, r *gpt2ref.Reference, lastOnly bool) []float32 {
	t.Helper()
	rows := r.B * r.T
	if lastOnly {
		rows = r.B
	}
	out := make([]float32, rows*m.Config().VocabSize)
	if err := m.Forward(m.NewCache(r.B), r.InputIDs, r.B, r.T, r.AttentionMask, lastOnly, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustLoad(t *testing.T, name string) *Model {
	t.Helper()
	m, err := Load(fixtureDir(name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLogitsMatchPyTorch(t *testing.T) {
	forEachFixture(t, func(t *testing.T, name string, m *Model, r *gpt2ref.Reference) {
		V := m.Config().VocabSize
		compare(t, name+" logits (padded batch)", forwardReference(t, m, r, false), r.Logits, refLogitsTol)
		last := forwardReference(t, m, r, true)
		for b := 0; b < r.B; b++ {
			compare(t, fmt.Sprintf("%s lastOnly row %d", name, b), last[b*V:(b+1)*V], r.Logits[((b+1)*r.T-1)*V:][:V], refLogitsTol)
		}
	})
}

// TestLeftPaddedRowEqualsUnpadded: the padded row of the reference batch must give, at its real
// positions, the logits of the same tokens run alone without padding.
func TestLeftPaddedRowEqualsUnpadded(t *testing.T) {
	forEachFixture(t, func(t *testing.T, name string, m *Model, r *gpt2ref.Reference) {
		V := m.Config().VocabSize
		batch := forwardReference(t, m, r, false)
		for b := 0; b < r.B; b++ {
			pads := 0
			for pads < r.T && r.AttentionMask[b*r.T+pads] == 0 {
				pads++
			}
			n := r.T - pads
			alone := make([]float32, n*V)
			if err := m.Forward(m.NewCache(1), r.InputIDs[b*r.T+pads:(b+1)*r.T], 1, n, nil, false, alone); err != nil {
				t.Fatal(err)
			}
			compare(t, fmt.Sprintf("row %d (%d pads) vs alone", b, pads), batch[(b*r.T+pads)*V:(b+1)*r.T*V], alone, selfTol)
		}
	})
}

// TestCacheStepsEqualRecompute feeds the padded reference batch in pieces (2 tokens, then one
// at a time, with the growing mask) and compares with the full recompute.
func TestCacheStepsEqualRecompute(t *testing.T) {
	forEachFixture(t, func(t *testing.T, name string, m *Model, r *gpt2ref.Reference) {
		V := m.Config().VocabSize
		full := forwardReference(t, m, r, false)
		c := m.NewCache(r.B)
		for t0 := 0; t0 < r.T; {
			n := 1
			if t0 == 0 {
				n = 2
			}
			ids := make([]int64, 0, r.B*n)
			mask := make([]int64, 0, r.B*(t0+n))
			for b := 0; b < r.B; b++ {
				ids = append(ids, r.InputIDs[b*r.T+t0:b*r.T+t0+n]...)
				mask = append(mask, r.AttentionMask[b*r.T:b*r.T+t0+n]...)
			}
			step := make([]float32, r.B*n*V)
			if err := m.Forward(c, ids, r.B, n, mask, false, step); err != nil {
				t.Fatal(err)
			}
			if c.Len() != t0+n {
				t.Fatalf("Len() = %d after %d positions", c.Len(), t0+n)
			}
			for b := 0; b < r.B; b++ {
				compare(t, fmt.Sprintf("row %d positions [%d,%d)", b, t0, t0+n), step[b*n*V:(b+1)*n*V], full[(b*r.T+t0)*V:(b*r.T+t0+n)*V], selfTol)
			}
			t0 += n
		}
	})
}

// greedy runs prompt then steps argmax tokens through the cache, one Forward per token.
func greedy(t *testing.T, m *Model, prompt []int64, steps int) []int64 {
	t.Helper()
	V := m.Config().VocabSize
	c := m.NewCache(1)
	logits := make([]float32, V)
	ids := append([]int64(nil), prompt...)
	in := prompt
	for range steps {
		if err := m.Forward(c, in, 1, len(in), nil, true, logits); err != nil {
			t.Fatal(err)
		}
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		ids = append(ids, int64(best))
		in = ids[len(ids)-1:]
	}
	return ids
}

func TestGreedyMatchesPyTorch(t *testing.T) {
	forEachFixture(t, func(t *testing.T, name string, m *Model, r *gpt2ref.Reference) {
		check := func(what string, want []int64) {
			got := greedy(t, m, want[:len(want)-r.NewTokens], r.NewTokens)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: greedy ids %v, want %v", what, got, want)
			}
		}
		check("greedy_ids", r.GreedyIDs)
		if r.GreedyHelloIDs != nil {
			check("greedy_hello_ids", r.GreedyHelloIDs)
		}
	})
}

// TestHubNaming rewrites gpt2-odd the way the hub's original gpt2 checkpoint names it (no
// "transformer." prefix, attn.bias mask buffers, an explicit lm_head.weight) and expects the
// same logits.
func TestHubNaming(t *testing.T) {
	src := fixtureDir("gpt2-odd")
	dir := t.TempDir()
	copyFile(t, filepath.Join(src, "config.json"), filepath.Join(dir, "config.json"))
	ts := readAll(t, filepath.Join(src, "model.safetensors"))
	var out []safetensors.Tensor
	for _, x := range ts {
		x.Name = strings.TrimPrefix(x.Name, "transformer.")
		out = append(out, x)
		if x.Name == "wte.weight" {
			out = append(out, safetensors.Tensor{Name: "lm_head.weight", DType: x.DType, Shape: x.Shape, F32: x.F32})
		}
	}
	for i := 0; i < 3; i++ {
		out = append(out, safetensors.Tensor{Name: fmt.Sprintf("h.%d.attn.bias", i), DType: safetensors.F32, Shape: []int{1, 1, 2, 2}, F32: []float32{1, 0, 1, 1}})
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), out, nil); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := mustReference(t, src)
	compare(t, "hub-named gpt2-odd", forwardReference(t, m, r, false), r.Logits, refLogitsTol)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readAll loads every tensor of a float safetensors file as F32 writer input.
func readAll(t *testing.T, path string) []safetensors.Tensor {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, name := range f.Names() {
		v, shape, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, F32: v})
	}
	return ts
}

func TestForwardRejectsBadInput(t *testing.T) {
	m := mustLoad(t, "gpt2-odd")
	cfg := m.Config()
	V := cfg.VocabSize
	one := make([]float32, V)
	cases := []struct {
		name  string
		B, T  int
		ids   []int64
		mask  []int64
		cache int // batch of the cache
		want  string
	}{
		{"id = vocab", 1, 1, []int64{int64(V)}, nil, 1, "outside the vocabulary"},
		{"negative id", 1, 2, []int64{3, -1}, nil, 1, "token id -1 at (0,1)"},
		{"empty prompt", 1, 0, nil, nil, 1, "no input tokens"},
		{"too long", 1, cfg.NPositions + 1, make([]int64, cfg.NPositions+1), nil, 1, "exceeds the model's n_positions 32"},
		{"mask length", 1, 2, []int64{1, 2}, []int64{1}, 1, "attention mask has 1 values"},
		{"mask value", 1, 2, []int64{1, 2}, []int64{1, 2}, 1, "mask value 2"},
		{"batch mismatch", 2, 1, []int64{1, 2}, nil, 1, "created for 1 rows"},
		{"ids length", 1, 2, []int64{1}, nil, 1, "1 ids for shape (1,2)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cache := m.NewCache(c.cache)
			dst := make([]float32, max(1, c.B*c.T)*V)
			err := m.Forward(cache, c.ids, c.B, c.T, c.mask, false, dst)
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidInput containing %q", err, c.want)
			}
			if cache.Len() != 0 {
				t.Errorf("cache grew to %d on error", cache.Len())
			}
		})
	}
	// Filling the context exactly works; one more position is refused, never truncated.
	c := m.NewCache(1)
	if err := m.Forward(c, make([]int64, cfg.NPositions-1), 1, cfg.NPositions-1, nil, true, one); err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(c, []int64{7}, 1, 1, nil, true, one); err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(c, []int64{7}, 1, 1, nil, true, one); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("step past n_positions: err = %v", err)
	}
	// A mask that rewrites a cached position is refused.
	c.Reset()
	if err := m.Forward(c, []int64{1, 2}, 1, 2, []int64{0, 1}, true, one); err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(c, []int64{3}, 1, 1, []int64{1, 1, 1}, true, one); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "cached position") {
		t.Fatalf("rewritten mask: err = %v", err)
	}
	if err := m.Forward(c, []int64{3}, 1, 1, nil, true, make([]float32, 3)); err == nil || !strings.Contains(err.Error(), "dst has 3 values") {
		t.Fatalf("short dst: err = %v", err)
	}
	if err := mustLoad(t, "gpt2-odd").Forward(c, []int64{3}, 1, 1, nil, true, one); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Fatalf("foreign cache: err = %v", err)
	}
}

// TestDecodeDoesNotAllocate: a decode step reuses the cache's buffers.
func TestDecodeDoesNotAllocate(t *testing.T) {
	for _, kv := range []quant.DType{quant.F32, quant.F16} {
		m := mustLoad(t, "gpt2-odd")
		if err := m.SetKVCache(kv); err != nil {
			t.Fatal(err)
		}
		testDecodeDoesNotAllocate(t, m)
	}
}

func testDecodeDoesNotAllocate(t *testing.T, m *Model) {
	c := m.NewCache(1)
	logits := make([]float32, m.Config().VocabSize)
	if err := m.Forward(c, []int64{1, 2, 3}, 1, 3, nil, true, logits); err != nil {
		t.Fatal(err)
	}
	ids := []int64{4}
	allocs := testing.AllocsPerRun(10, func() {
		if err := m.Forward(c, ids, 1, 1, nil, true, logits); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decode step, %s KV cache: %v allocations, want 0", m.KVCache(), allocs)
	}
}

// TestConcurrentSessions: sessions of one model on separate goroutines (as the plugin serves
// them: a new cache each, released at the end, its working buffers handed to the next
// NewCache) give the logits they give alone; run with -race to check the kernels' worker pool
// and the model's spare buffers.
func TestConcurrentSessions(t *testing.T) {
	m := mustLoad(t, "gpt2-odd")
	r := mustReference(t, fixtureDir("gpt2-odd"))
	want := forwardReference(t, m, r, false)
	const sessions = 4
	errs := make(chan error, sessions)
	got := make([][]float32, sessions)
	for s := range sessions {
		go func() {
			out := make([]float32, len(want))
			var err error
			for range 3 {
				c := m.NewCache(r.B)
				err = m.Forward(c, r.InputIDs, r.B, r.T, r.AttentionMask, false, out)
				c.Release()
				if err != nil {
					break
				}
			}
			got[s] = out
			errs <- err
		}()
	}
	for range sessions {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for s := range sessions {
		compare(t, fmt.Sprintf("session %d", s), got[s], want, 0)
	}
}

// TestCacheGrowth decodes one token at a time past the cache's initial capacity (64 → 128 →
// 200 positions) and compares every step with a full recompute.
func TestCacheGrowth(t *testing.T) {
	for _, off := range []bool{true, false} {
		for _, kv := range []quant.DType{quant.F32, quant.F16} {
			t.Run(fmt.Sprintf("offHeap=%v/kv=%s", off, kv), func(t *testing.T) {
				defer func(v bool) { kvOffHeap = v }(kvOffHeap)
				kvOffHeap = off
				testCacheGrowth(t, kv)
			})
		}
	}
}

func testCacheGrowth(t *testing.T, kv quant.DType) {
	cfg := Config{VocabSize: 50, NPositions: 200, NEmbd: 8, NLayer: 2, NHead: 2,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 49, EOSTokenID: 49}
	m := NewRandom(cfg, 3)
	if err := m.SetKVCache(kv); err != nil {
		t.Fatal(err)
	}
	// NewRandom's std 0.02 leaves logits near 1e-3; std 0.1 makes positions and attention
	// visible against the tolerance, as in the PyTorch fixtures.
	for _, w := range [][]float32{m.WTE, m.WPE} {
		scale(w, 5)
	}
	for i := range m.Blocks {
		scale(m.Blocks[i].Attn.CAttn.Q.F32, 5) // packed in panels: scaling is element-wise
		scale(m.Blocks[i].MLP.CFC.Q.F32, 5)
	}
	V := cfg.VocabSize
	ids := make([]int64, cfg.NPositions)
	for i := range ids {
		ids[i] = int64((i*31 + 7) % V)
	}
	full := make([]float32, len(ids)*V)
	if err := m.Forward(m.NewCache(1), ids, 1, len(ids), nil, false, full); err != nil {
		t.Fatal(err)
	}
	c := m.NewCache(1)
	step := make([]float32, V)
	for i := range ids {
		if err := m.Forward(c, ids[i:i+1], 1, 1, nil, true, step); err != nil {
			t.Fatal(err)
		}
		if i == 0 || i == 63 || i == 64 || i == 128 || i == len(ids)-1 {
			compare(t, fmt.Sprintf("step %d vs recompute", i), step, full[i*V:(i+1)*V], selfTol)
		}
	}
	if c.capacity != cfg.NPositions {
		t.Errorf("capacity %d after %d positions, want %d", c.capacity, len(ids), cfg.NPositions)
	}
}

func scale(w []float32, f float32) {
	for i := range w {
		w[i] *= f
	}
}

package gpt2

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// batchTestModel is a small random GPT-2 whose widths are not multiples of the kernels' vector
// width, so that a batched row and the same row alone would differ if anything split rows
// differently.
func batchTestModel() *Model {
	cfg := Config{VocabSize: 61, NPositions: 96, NEmbd: 20, NLayer: 2, NHead: 2,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 60, EOSTokenID: 60}
	m := NewRandom(cfg, 11)
	for _, w := range [][]float32{m.WTE, m.WPE} {
		scale(w, 5)
	}
	return m
}

func batchIDs(n, salt, V int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64((i*17 + salt*29 + 5) % V)
	}
	return out
}

// TestForwardBatchIdentical: sessions of different lengths stepped together (prefill chunks
// beside single decode tokens, more rows than one product group) give bit for bit what each
// gives stepped alone, and a batched decode token equals Forward with T=1.
func TestForwardBatchIdentical(t *testing.T) {
	for _, kv := range []quant.DType{quant.F32, quant.F16} {
		t.Run("kv="+string(kv), func(t *testing.T) {
			m := batchTestModel()
			if err := m.SetKVCache(kv); err != nil {
				t.Fatal(err)
			}
			testForwardBatchIdentical(t, m, true)
		})
	}
}

// TestQuantizedForwardBatchIdentical is TestForwardBatchIdentical with int8 weights where int8
// products quantize their activations, which ForwardBatch then runs over all rows at once: the
// first batched step (63 rows, the int8 GEMM) gives each session what its own steps of 1–33 rows
// give (below 16 rows, the decode kernels). The full recompute is not
// compared: its LM head over 46 rows runs on float activations, the steps' on quantized ones.
// The model's default KV cache for int8 weights is half precision.
func TestQuantizedForwardBatchIdentical(t *testing.T) {
	if !kernels.QuantizedActivations() {
		t.Skip("int8 products do not quantize their activations on this CPU or build (no AVX512-VNNI)")
	}
	m := batchTestModel()
	if err := m.Quantize(quant.Int8); err != nil {
		t.Fatal(err)
	}
	testForwardBatchIdentical(t, m, false)
}

func testForwardBatchIdentical(t *testing.T, m *Model, recompute bool) {
	V := m.cfg.VocabSize
	// Per session: the tokens fed at each of three steps.
	feeds := [][]int{{7, 1, 1}, {20, 3, 1}, {1, 1, 1}, {33, 1, 12}, {2, 18, 1}}
	run := func(sessions []int, step func(items []BatchItem, dst []float32) error) [][]float32 {
		caches := make([]*Cache, len(feeds))
		pos := make([]int, len(feeds))
		out := make([][]float32, len(feeds))
		for _, s := range sessions {
			caches[s] = m.NewCache(1)
		}
		for k := range 3 {
			var items []BatchItem
			for _, s := range sessions {
				n := feeds[s][k]
				items = append(items, BatchItem{Cache: caches[s], IDs: batchIDs(pos[s]+n, s, V)[pos[s]:]})
				pos[s] += n
			}
			dst := make([]float32, len(items)*V)
			if err := step(items, dst); err != nil {
				t.Fatal(err)
			}
			for i, s := range sessions {
				out[s] = append(out[s], dst[i*V:(i+1)*V]...)
			}
		}
		return out
	}
	all := []int{0, 1, 2, 3, 4}
	batched := run(all, m.ForwardBatch)
	for _, s := range all {
		alone := run([]int{s}, m.ForwardBatch)
		if !slices.Equal(batched[s], alone[s]) {
			t.Errorf("session %d: batched logits differ from the session stepped alone (max |Δ| %g)", s, maxDiff(batched[s], alone[s]))
		}
	}
	// Session 2 feeds one token per step: the same as Forward(T=1, last only).
	single := run([]int{2}, func(items []BatchItem, dst []float32) error {
		return m.Forward(items[0].Cache, items[0].IDs, 1, len(items[0].IDs), nil, true, dst)
	})
	if !slices.Equal(batched[2], single[2]) {
		t.Errorf("decode tokens stepped in a batch differ from Forward with T=1 (max |Δ| %g)", maxDiff(batched[2], single[2]))
	}
	if !recompute {
		return
	}
	// And within tolerance of a full recompute (the batched path is a correct forward).
	ids := batchIDs(46, 3, V)
	ref := make([]float32, len(ids)*V)
	if err := m.Forward(m.NewCache(1), ids, 1, len(ids), nil, false, ref); err != nil {
		t.Fatal(err)
	}
	for k, p := range []int{33, 34, 46} {
		compare(t, fmt.Sprintf("session 3 step %d vs recompute", k), batched[3][k*V:(k+1)*V], ref[(p-1)*V:p*V], selfTol)
	}
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range min(len(a), len(b)) {
		d = max(d, float64(abs32(a[i]-b[i])))
	}
	return d
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// TestForwardBatchRejects: a bad item fails the whole call and leaves every cache unchanged.
func TestForwardBatchRejects(t *testing.T) {
	m := batchTestModel()
	V := m.cfg.VocabSize
	a, b := m.NewCache(1), m.NewCache(1)
	dst := make([]float32, 2*V)
	for _, tc := range []struct {
		name  string
		items []BatchItem
	}{
		{"no items", nil},
		{"out-of-vocabulary id", []BatchItem{{a, []int64{1}}, {b, []int64{int64(V)}}}},
		{"shared cache", []BatchItem{{a, []int64{1}}, {a, []int64{2}}}},
		{"batch-2 cache", []BatchItem{{a, []int64{1}}, {m.NewCache(2), []int64{2}}}},
		{"no tokens", []BatchItem{{a, []int64{1}}, {b, nil}}},
	} {
		err := m.ForwardBatch(tc.items, dst[:len(tc.items)*V])
		if !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", tc.name, err)
		}
		if a.Len() != 0 || b.Len() != 0 {
			t.Fatalf("%s: caches hold %d and %d positions after a refused call", tc.name, a.Len(), b.Len())
		}
	}
}

// TestLastOnlyPrefill: a prefill with lastOnly, whose last block runs on the last rows alone
// (Block.forwardLast), gives the last rows of the full forward within selfTol, and leaves the
// cache exactly as the full forward does: the next step's logits are bit-identical. With a
// float32 and a half-precision KV cache.
func TestLastOnlyPrefill(t *testing.T) {
	for _, kv := range []quant.DType{quant.F32, quant.F16} {
		t.Run("kv="+string(kv), func(t *testing.T) {
			m := batchTestModel()
			if err := m.SetKVCache(kv); err != nil {
				t.Fatal(err)
			}
			testLastOnlyPrefill(t, m)
		})
	}
}

func testLastOnlyPrefill(t *testing.T, m *Model) {
	V := m.cfg.VocabSize
	const B, T = 2, 40
	ids := batchIDs(B*T, 7, V)
	mask := make([]int64, B*T)
	for i := range mask {
		mask[i] = 1
	}
	for j := 0; j < 5; j++ {
		mask[T+j] = 0 // row 1 left-padded by 5
	}
	full, last := make([]float32, B*T*V), make([]float32, B*V)
	cFull, cLast := m.NewCache(B), m.NewCache(B)
	if err := m.Forward(cFull, ids, B, T, mask, false, full); err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(cLast, ids, B, T, mask, true, last); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < B; b++ {
		compare(t, fmt.Sprintf("row %d last position", b), last[b*V:(b+1)*V], full[(b*T+T-1)*V:][:V], selfTol)
	}
	next := []int64{3, 9}
	mask2 := append(append(append([]int64{}, mask[:T]...), 1), append(mask[T:], 1)...)
	a, c := make([]float32, B*V), make([]float32, B*V)
	if err := m.Forward(cFull, next, B, 1, mask2, true, a); err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(cLast, next, B, 1, mask2, true, c); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, c) {
		t.Errorf("the step after a lastOnly prefill differs from the step after a full one (max |Δ| %g)", maxDiff(a, c))
	}
}

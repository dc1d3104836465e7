package gpt2

import (
	"fmt"
	"slices"
	"testing"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// TestQuantizedPrefillEqualsBatchSteps: with int8 weights where int8 products quantize their
// activations, a prefill of gemmMB rows or more through Forward (each product one int8 GEMM over
// all rows) gives the bits of the same tokens through ForwardBatch (products in groups of fewer
// than 16 rows: the decode kernels), then of a decode token after it.
func TestQuantizedPrefillEqualsBatchSteps(t *testing.T) {
	if !kernels.QuantizedActivations() {
		t.Skip("int8 products do not quantize their activations on this CPU or build (no AVX512-VNNI)")
	}
	m := batchTestModel()
	if err := m.Quantize(quant.Int8); err != nil {
		t.Fatal(err)
	}
	V := m.cfg.VocabSize
	for _, T := range []int{16, 33, 64} {
		ids := batchIDs(T+1, T, V)
		a, b := m.NewCache(1), m.NewCache(1)
		got, want := make([]float32, V), make([]float32, V)
		for _, step := range [][]int64{ids[:T], ids[T:]} {
			if err := m.Forward(a, step, 1, len(step), nil, true, got); err != nil {
				t.Fatal(err)
			}
			if err := m.ForwardBatch([]BatchItem{{b, step}}, want); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("T=%d, step of %d tokens: Forward's logits differ from ForwardBatch's (max |Δ| %g)", T, len(step), maxDiff(got, want))
			}
		}
	}
}

// trainedPrefillChunk is the prompt chunk of TestQuantizedTrainedPrefill: 64 rows per product,
// the int8 GEMM of a prefill.
const trainedPrefillChunk = 64

// TestQuantizedTrainedPrefill is TestQuantizedTrainedModel's top-1 check through prefills of
// trainedPrefillChunk tokens instead of decode steps of trainedChunk: where int8 products
// quantize their activations, the prefill's products do too, and must stay as close to float32.
func TestQuantizedTrainedPrefill(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	ids := trainedIDs(t)
	f32 := mustLoadDir(t, trainedDir, "")
	want := runChunks(t, f32, ids, trainedPrefillChunk)
	got := runChunks(t, mustLoadDir(t, trainedDir, quant.Int8), ids, trainedPrefillChunk)
	V := f32.Config().VocabSize
	rel, _ := relLogitErr(got, want)
	top1 := 0
	for p := range ids {
		if generate.Greedy(got[p*V:(p+1)*V]) == generate.Greedy(want[p*V:(p+1)*V]) {
			top1++
		}
	}
	r1 := float64(top1) / float64(len(ids))
	msg := fmt.Sprintf("gpt2-go int8, prefill chunks of %d: max |Δlogit| / max |logit| = %.3g; top-1 agrees at %d/%d positions (%.1f%%)",
		trainedPrefillChunk, rel, top1, len(ids), 100*r1)
	if r1 < int8TrainedMinTop1 {
		t.Errorf("%s; want ≥ %.0f%%", msg, 100*int8TrainedMinTop1)
	} else {
		t.Log(msg)
	}
}

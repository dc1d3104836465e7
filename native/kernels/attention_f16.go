package kernels

import (
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// AttentionF16 is Attention over a KV cache stored in IEEE half precision (k and v hold the
// bits, in Attention's (B,H,S,D) layout): each key and value is widened as it is read, and the
// scores, softmax and sums are float32 as in Attention. Storing the cache in half precision
// halves its memory (llama.cpp's default KV type is F16).
func AttentionF16(dst, q []float32, k, v []uint16, mask []int64, s AttentionShape) {
	s.check(dst, q, len(k), len(v), mask)
	runAttention(attentionJob{s: s, dst: dst, q: q, k16: k, v16: v, mask: mask})
}

// AttentionF16Naive is the reference for AttentionF16: AttentionNaive on the widened cache.
func AttentionF16Naive(dst, q []float32, k, v []uint16, mask []int64, s AttentionShape) {
	s.check(dst, q, len(k), len(v), mask)
	AttentionNaive(dst, q, WidenF16(k), WidenF16(v), mask, s)
}

// WidenF16 returns the float32 values of half-precision bits h.
func WidenF16(h []uint16) []float32 {
	out := make([]float32, len(h))
	quant.FromF16(out, h)
	return out
}

// NarrowF16 writes src rounded to half precision (round to nearest even) into dst.
func NarrowF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = safetensors.F32ToF16(x)
	}
}

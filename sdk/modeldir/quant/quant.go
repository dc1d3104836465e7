// Package quant converts float32 weights to the compact formats the native kernels read
// directly: symmetric int8 with one float32 scale per output channel, and IEEE float16. It holds
// the conversion math and its exact inverses (the references the quantized kernels are tested
// against). It sits under sdk/modeldir because the quantized model directory is a file format
// the host writes (modeldir.QuantizeGPT2) and the native backend reads.
package quant

import (
	"fmt"
	"math"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// DType names a weight storage type, as written in a model's config.json "quantization" entry
// and accepted by load options.
type DType string

// The weight storage types.
const (
	F32  DType = "f32"
	Int8 DType = "int8"
	F16  DType = "fp16"
)

// ParseDType accepts "f32"/"fp32"/"float32", "int8"/"i8" and "fp16"/"f16"/"float16".
func ParseDType(s string) (DType, error) {
	switch s {
	case "", "f32", "fp32", "float32":
		return F32, nil
	case "int8", "i8":
		return Int8, nil
	case "fp16", "f16", "float16":
		return F16, nil
	}
	return "", fmt.Errorf("quant: unknown weight dtype %q (want f32, int8 or fp16)", s)
}

// Int8Cols quantizes w (K,N) — a Conv1D [in,out] weight whose output channels are columns —
// symmetrically per column:
//
//	scale[j] = max_p |w[p,j]| / 127,  q[p,j] = round(w[p,j] / scale[j]) ∈ [-127,127]
//
// An all-zero column gets scale 0 and zeros. It panics when len(w) != k·n.
func Int8Cols(w []float32, k, n int) (q []int8, scale []float32) {
	if len(w) != k*n {
		panic(fmt.Sprintf("quant: Int8Cols: %d values for (%d,%d)", len(w), k, n))
	}
	scale = make([]float32, n)
	for p := 0; p < k; p++ {
		for j, v := range w[p*n : (p+1)*n] {
			scale[j] = max(scale[j], float32(math.Abs(float64(v))))
		}
	}
	for j := range scale {
		scale[j] /= 127
	}
	q = make([]int8, k*n)
	for p := 0; p < k; p++ {
		for j, v := range w[p*n : (p+1)*n] {
			q[p*n+j] = quantize(v, scale[j])
		}
	}
	return q, scale
}

// Int8Rows quantizes w (N,K) — a weight stored one output channel per row (nn.Linear, token
// embeddings used as the LM head) — symmetrically per row, as Int8Cols does per column.
func Int8Rows(w []float32, n, k int) (q []int8, scale []float32) {
	if len(w) != k*n {
		panic(fmt.Sprintf("quant: Int8Rows: %d values for (%d,%d)", len(w), n, k))
	}
	scale = make([]float32, n)
	q = make([]int8, k*n)
	for j := 0; j < n; j++ {
		row := w[j*k : (j+1)*k]
		var m float32
		for _, v := range row {
			m = max(m, float32(math.Abs(float64(v))))
		}
		scale[j] = m / 127
		for p, v := range row {
			q[j*k+p] = quantize(v, scale[j])
		}
	}
	return q, scale
}

func quantize(v, scale float32) int8 {
	if scale == 0 {
		return 0
	}
	r := math.RoundToEven(float64(v / scale))
	return int8(max(-127, min(127, r)))
}

// DequantCols returns w[p,j] = q[p,j]·scale[j] for q (K,N) — the reference of the int8 kernels.
func DequantCols(q []int8, scale []float32, k, n int) []float32 {
	w := make([]float32, k*n)
	for p := 0; p < k; p++ {
		for j := 0; j < n; j++ {
			w[p*n+j] = float32(q[p*n+j]) * scale[j]
		}
	}
	return w
}

// DequantRows returns w[j,p] = q[j,p]·scale[j] for q (N,K).
func DequantRows(q []int8, scale []float32, n, k int) []float32 {
	w := make([]float32, k*n)
	DequantRowsInto(w, q, scale, k)
	return w
}

// DequantRowsInto writes rows of q·scale into dst (len(dst)/k rows of k values), used to read one
// row of quantized token embeddings.
func DequantRowsInto(dst []float32, q []int8, scale []float32, k int) {
	for j := range len(dst) / k {
		s := scale[j]
		for p, v := range q[j*k : (j+1)*k] {
			dst[j*k+p] = float32(v) * s
		}
	}
}

// ToF16 rounds w to IEEE half precision (round to nearest even; values beyond ±65504 become ±Inf).
func ToF16(w []float32) []uint16 {
	h := make([]uint16, len(w))
	for i, v := range w {
		h[i] = safetensors.F32ToF16(v)
	}
	return h
}

// FromF16 widens half-precision bits into dst (len(dst) values).
func FromF16(dst []float32, h []uint16) {
	for i := range dst {
		dst[i] = safetensors.F16ToF32(h[i])
	}
}

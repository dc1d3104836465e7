package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestInt8RoundTripWithinHalfStep(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const k, n = 37, 13
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	w[5*n+3] = 0 // zeros stay zeros
	for j := 0; j < k; j++ {
		w[j*n+7] = 0 // an all-zero column
	}
	q, s := Int8Cols(w, k, n)
	back := DequantCols(q, s, k, n)
	for p := 0; p < k; p++ {
		for j := 0; j < n; j++ {
			// Rounding to the nearest step leaves at most half a step (plus float rounding).
			if d := math.Abs(float64(back[p*n+j] - w[p*n+j])); d > 0.5*float64(s[j])*(1+1e-5) {
				t.Fatalf("Int8Cols (%d,%d): %v → %v, error %g > half step %g", p, j, w[p*n+j], back[p*n+j], d, 0.5*s[j])
			}
		}
	}
	if s[7] != 0 || back[5*n+3] != 0 {
		t.Fatalf("zero column scale %v, zero value → %v", s[7], back[5*n+3])
	}
	qr, sr := Int8Rows(w, k, n) // rows as channels
	back = DequantRows(qr, sr, k, n)
	for j := 0; j < k; j++ {
		for p := 0; p < n; p++ {
			if d := math.Abs(float64(back[j*n+p] - w[j*n+p])); d > 0.5*float64(sr[j])*(1+1e-5) {
				t.Fatalf("Int8Rows (%d,%d): error %g > half step %g", j, p, d, 0.5*sr[j])
			}
		}
	}
}

func TestF16RoundTrip(t *testing.T) {
	w := []float32{0, 1, -2.5, 65504, 1e-8, 3.14159}
	got := make([]float32, len(w))
	FromF16(got, ToF16(w))
	for i, v := range w {
		if d := math.Abs(float64(got[i] - v)); d > math.Abs(float64(v))/1024+6e-8 {
			t.Fatalf("fp16 %v → %v", v, got[i])
		}
	}
}

func TestParseDType(t *testing.T) {
	for in, want := range map[string]DType{"": F32, "fp32": F32, "i8": Int8, "int8": Int8, "float16": F16} {
		if got, err := ParseDType(in); err != nil || got != want {
			t.Errorf("ParseDType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseDType("int4"); err == nil {
		t.Error("ParseDType(int4) succeeded")
	}
}

package engine

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// FuzzTensorArg feeds infer's literal-tensor decoding arbitrary dtypes, shapes and data: it must
// return an error or a tensor that passes sdk validation, never panic.
func FuzzTensorArg(f *testing.F) {
	f.Add("float32", []byte{2, 3}, []byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add("int64", []byte{1, 2}, []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0})
	f.Add("int32", []byte{}, []byte{7, 0, 0, 0, 0, 0, 0, 0})
	f.Add("bool", []byte{1}, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add("int64", []byte{255, 255}, []byte{})
	f.Fuzz(func(t *testing.T, dtype string, shape []byte, raw []byte) {
		if len(shape) > 20 || len(raw) > 8*4096 {
			return
		}
		dims := make([]cty.Value, len(shape))
		for i, d := range shape {
			dims[i] = cty.NumberIntVal(int64(int8(d))) // negative dimensions too
		}
		data := make([]cty.Value, len(raw)/8)
		for i := range data {
			x := math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
			if math.IsNaN(x) || math.IsInf(x, 0) {
				x = 0
			}
			data[i] = cty.NumberFloatVal(x)
		}
		obj := cty.ObjectVal(map[string]cty.Value{
			"dtype": cty.StringVal(dtype),
			"shape": cty.TupleVal(dims),
			"data":  cty.TupleVal(data),
		})
		tt, err := tensorArg(obj)
		if err != nil {
			return
		}
		if err := tt.Validate(); err != nil {
			t.Fatalf("tensorArg(%s %v, %d values) = invalid tensor: %v", dtype, shape, len(data), err)
		}
	})
}

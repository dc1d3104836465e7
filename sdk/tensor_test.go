package sdk

import (
	"strings"
	"testing"
)

func TestTensorValidate(t *testing.T) {
	ok := []*Tensor{
		FromFloat32([]int64{2, 3}, make([]float32, 6)),
		FromInt64([]int64{}, []int64{7}), // rank 0: one element
		FromInt32([]int64{0, 5}, nil),    // zero-size
		{DType: Float16, Shape: []int64{3}, Data: make([]byte, 6)},
		{DType: BFloat16, Shape: []int64{1}, Data: make([]byte, 2)},
		{DType: Uint8, Shape: []int64{4}, Data: make([]byte, 4)},
	}
	for i, tt := range ok {
		if err := tt.Validate(); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
	bad := map[string]struct {
		t    *Tensor
		want string
	}{
		"nil":         {nil, "nil"},
		"dtype":       {&Tensor{DType: "float128", Shape: []int64{1}, Data: make([]byte, 16)}, "unknown dtype"},
		"short":       {&Tensor{DType: Float32, Shape: []int64{2}, Data: make([]byte, 7)}, "needs 8 bytes, has 7"},
		"negative":    {&Tensor{DType: Float32, Shape: []int64{2, -1}}, "negative"},
		"huge":        {&Tensor{DType: Float32, Shape: []int64{1 << 20, 1 << 20, 1 << 20}}, "more than"},
		"overflow":    {&Tensor{DType: Int64, Shape: []int64{1 << 62, 4}}, "more than"},
		"rank":        {&Tensor{DType: Uint8, Shape: make([]int64, MaxRank+1)}, "rank"},
		"zero then 2": {&Tensor{DType: Float32, Shape: []int64{0, 1 << 62, 1 << 62}, Data: nil}, ""},
	}
	for name, c := range bad {
		err := c.t.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want valid", name, err)
			}
			continue
		}
		if CodeOf(err) != CodeInvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want InvalidArgument containing %q", name, err, c.want)
		}
	}
}

func TestTensorViewsShareMemory(t *testing.T) {
	v := []float32{1, 2, 3}
	tt := FromFloat32([]int64{3}, v)
	got, err := tt.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	v[1] = 42
	if got[1] != 42 {
		t.Errorf("Float32s copied the data; want a view of it")
	}
	ids := FromInt32([]int64{2}, []int32{5, -6})
	w, err := ids.Int64s()
	if err != nil || w[0] != 5 || w[1] != -6 {
		t.Errorf("Int64s of an int32 tensor = %v, %v", w, err)
	}
	if _, err := tt.Int64s(); CodeOf(err) != CodeInvalidArgument {
		t.Errorf("Int64s of a float32 tensor: err = %v, want InvalidArgument", err)
	}
	// A misaligned buffer is copied, not viewed.
	buf := make([]byte, 13)
	mis := &Tensor{DType: Float32, Shape: []int64{3}, Data: buf[1:13]}
	if f, err := mis.Float32s(); err != nil || len(f) != 3 {
		t.Errorf("misaligned Float32s = %v, %v", f, err)
	}
}

func FuzzTensorValidate(f *testing.F) {
	f.Add("float32", int64(2), int64(3), 24)
	f.Add("int64", int64(-1), int64(1), 0)
	f.Add("bfloat16", int64(1<<40), int64(1<<40), 0)
	f.Fuzz(func(t *testing.T, dtype string, d0, d1 int64, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		tt := &Tensor{DType: DType(dtype), Shape: []int64{d0, d1}, Data: make([]byte, n)}
		if err := tt.Validate(); err == nil {
			if int64(len(tt.Data)) != d0*d1*int64(tt.DType.Size()) {
				t.Fatalf("valid tensor %v %v with %d bytes", dtype, tt.Shape, n)
			}
		}
	})
}

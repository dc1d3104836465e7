package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// allKVs has one entry of every scalar type and arrays of several element types.
func allKVs() []KV {
	return []KV{
		{"general.architecture", "gpt2"},
		{"test.u8", uint8(200)}, {"test.i8", int8(-100)},
		{"test.u16", uint16(60000)}, {"test.i16", int16(-30000)},
		{"test.u32", uint32(4000000000)}, {"test.i32", int32(-2000000000)},
		{"test.f32", float32(0.15625)}, {"test.bool", true},
		{"test.string", "héllo gguf"},
		{"test.u64", uint64(1 << 40)}, {"test.i64", int64(-(1 << 40))},
		{"test.f64", 2.5e-300},
		{"test.strings", Array{Elem: TypeString, Values: []string{"a", "", "Ġthe"}}},
		{"test.i32s", Array{Elem: TypeInt32, Values: []int32{1, -2, 3}}},
		{"test.f32s", Array{Elem: TypeFloat32, Values: []float32{0.5, -1.25}}},
	}
}

// fixtureValues restates scripts/fixtures/gguf_fixture.py's values(): (i·7 mod 23 − 11)·scale.
func fixtureValues(n int, scale float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((i*7)%23-11) * scale
	}
	return out
}

// fixtureTensors are the tensors gguf_fixture.py writes, encoded by this package.
func fixtureTensors(t *testing.T) []Tensor {
	q, err := QuantizeQ8_0(fixtureValues(4*64, 1.0/64))
	if err != nil {
		t.Fatal(err)
	}
	return []Tensor{
		{Name: "a.f32", Dims: []uint64{5, 3}, Type: F32, Data: EncodeF32(fixtureValues(15, 0.25))},
		{Name: "b.f16", Dims: []uint64{8, 2}, Type: F16, Data: EncodeF16(fixtureValues(16, 0.5))},
		{Name: "c.q8_0", Dims: []uint64{64, 4}, Type: Q8_0, Data: q},
	}
}

func encodeFile(t *testing.T, kvs []KV, ts []Tensor) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, kvs, ts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGGUFPyFixture reads the file llama.cpp's gguf-py wrote (scripts/fixtures/gguf_fixture.py)
// and writes the same content with this package: the bytes must be identical.
func TestGGUFPyFixture(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "gguf-py.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.KV, allKVs()) {
		t.Errorf("metadata read from gguf-py's file:\n got %#v\nwant %#v", f.KV, allKVs())
	}
	for _, ts := range fixtureTensors(t) {
		ti, raw, err := f.Tensor(ts.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ti.Dims, ts.Dims) || ti.Type != ts.Type {
			t.Errorf("%s: %s %v, want %s %v", ts.Name, ti.Type, ti.Dims, ts.Type, ts.Dims)
		}
		if i := firstDiff(raw, ts.Data); i >= 0 {
			t.Errorf("%s: data differs from this package's encoding at byte %d of %d", ts.Name, i, len(raw))
		}
	}
	got := encodeFile(t, allKVs(), fixtureTensors(t))
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("Write differs from gguf-py's file at byte %d (lengths %d and %d)", i, len(got), len(want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func TestRoundTrip(t *testing.T) {
	ts := fixtureTensors(t)
	ts = append(ts, Tensor{Name: "d.fill", Dims: []uint64{3}, Type: F32, Fill: func() ([]byte, error) {
		return EncodeF32([]float32{1, 2, 3}), nil
	}})
	kvs := append(allKVs(), KV{"test.empty", Array{Elem: TypeUint64, Values: []uint64{}}})
	f, err := Parse(encodeFile(t, kvs, ts))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.KV, kvs) {
		t.Errorf("metadata:\n got %#v\nwant %#v", f.KV, kvs)
	}
	if v, ok := f.Get("test.string"); !ok || v != "héllo gguf" {
		t.Errorf("Get(test.string) = %v, %v", v, ok)
	}
	for i, want := range [][]float32{fixtureValues(15, 0.25), fixtureValues(16, 0.5), fixtureValues(256, 1.0/64), {1, 2, 3}} {
		got, ti, err := f.Float32(ts[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		if ti.Offset%DefaultAlignment != 0 {
			t.Errorf("%s: offset %d is not aligned", ti.Name, ti.Offset)
		}
		// Every value is exact in F32 and F16; in Q8_0 within the bound of TestQ8_0.
		tol := 0.0
		if ti.Type == Q8_0 {
			tol = q8MaxErrPerScale * (11.0 / 64 / 127)
		}
		checkClose(t, ti.Name, got, want, tol)
	}
}

func checkClose(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	worst, at := 0.0, -1
	for i := range got {
		if e := math.Abs(float64(got[i]) - float64(want[i])); e > worst {
			worst, at = e, i
		}
	}
	if worst > tol {
		t.Errorf("%s: max abs error %g at index %d (got %g, want %g) exceeds %g", name, worst, at, got[at], want[at], tol)
	}
}

// TestKnownLayout spells out the bytes of a small file by hand.
func TestKnownLayout(t *testing.T) {
	got := encodeFile(t, []KV{{"k", uint32(7)}}, []Tensor{{Name: "w", Dims: []uint64{2}, Type: F32, Data: EncodeF32([]float32{1, -2})}})
	le := binary.LittleEndian
	var want []byte
	want = append(want, "GGUF"...)
	want = le.AppendUint32(want, 3)
	want = le.AppendUint64(want, 1) // tensors
	want = le.AppendUint64(want, 1) // kvs
	want = le.AppendUint64(want, 1)
	want = append(want, 'k')
	want = le.AppendUint32(want, uint32(TypeUint32))
	want = le.AppendUint32(want, 7)
	want = le.AppendUint64(want, 1)
	want = append(want, 'w')
	want = le.AppendUint32(want, 1) // n_dims
	want = le.AppendUint64(want, 2)
	want = le.AppendUint32(want, uint32(F32))
	want = le.AppendUint64(want, 0) // offset
	want = append(want, make([]byte, 32-len(want)%32)...)
	want = le.AppendUint32(want, math.Float32bits(1))
	want = le.AppendUint32(want, math.Float32bits(-2))
	want = append(want, make([]byte, 24)...) // the data section ends aligned
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("bytes differ at %d:\n got % x\nwant % x", i, got, want)
	}
}

// q8MaxErrPerScale bounds |x − dequantize(quantize(x))| in units of the block's float32 scale
// d = max|x|/127: half a step for the rounding of x/d, plus 127 steps times the relative error
// of storing d as fp16 (2^-11).
const q8MaxErrPerScale = 0.5 + 127.0/2048

// naiveQ8_0 is ggml's quantize_row_q8_0_ref transcribed one element at a time, and
// naiveDequant its dequantize_row_q8_0.
func naiveQ8_0(x []float32) (scales []uint16, qs []int8) {
	for b := 0; b < len(x)/32; b++ {
		amax := float32(0)
		for j := 0; j < 32; j++ {
			if v := float32(math.Abs(float64(x[b*32+j]))); v > amax {
				amax = v
			}
		}
		d := amax / 127
		id := float32(0)
		if d != 0 {
			id = 1 / d
		}
		scales = append(scales, f32ToF16Naive(d))
		for j := 0; j < 32; j++ {
			qs = append(qs, int8(math.Round(float64(x[b*32+j]*id))))
		}
	}
	return scales, qs
}

// f32ToF16Naive rounds through float64 arithmetic on the value (normal range only, which the
// test data stays in).
func f32ToF16Naive(f float32) uint16 {
	if f == 0 {
		return 0
	}
	e := math.Floor(math.Log2(float64(f)))
	m := float64(f)/math.Pow(2, e)*1024 - 1024
	r := math.RoundToEven(m)
	if r == 1024 {
		r, e = 0, e+1
	}
	return uint16(e+15)<<10 | uint16(r)
}

func TestQ8_0(t *testing.T) {
	// Blocks of mixed magnitude: sines scaled per block, one all-zero block, one block with a
	// single large outlier.
	x := make([]float32, 32*64)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)*0.37)) * float32(1+i/32) * 0.01
	}
	for j := 0; j < 32; j++ {
		x[5*32+j] = 0
	}
	x[7*32+3] = 50
	got, err := QuantizeQ8_0(x)
	if err != nil {
		t.Fatal(err)
	}
	scales, qs := naiveQ8_0(x)
	for b := range scales {
		blk := got[b*34 : (b+1)*34]
		if s := binary.LittleEndian.Uint16(blk); s != scales[b] {
			t.Fatalf("block %d: scale %#04x, naive reference %#04x", b, s, scales[b])
		}
		for j := 0; j < 32; j++ {
			if q := int8(blk[2+j]); q != qs[b*32+j] {
				t.Fatalf("block %d index %d: q %d, naive reference %d", b, j, q, qs[b*32+j])
			}
		}
	}
	deq := make([]float32, len(x))
	DequantizeQ8_0(deq, got)
	for b := 0; b < len(x)/32; b++ {
		amax := 0.0
		for _, v := range x[b*32 : (b+1)*32] {
			amax = max(amax, math.Abs(float64(v)))
		}
		checkClose(t, "Q8_0 block", deq[b*32:(b+1)*32], x[b*32:(b+1)*32], q8MaxErrPerScale*amax/127)
	}
	if _, err := QuantizeQ8_0(x[:31]); err == nil {
		t.Error("QuantizeQ8_0 of 31 values: no error")
	}
}

func TestF16Encoding(t *testing.T) {
	for _, v := range []float32{0, 1, -2, 0.5, 65504, 1.0 / 1024, 0.1} {
		got := binary.LittleEndian.Uint16(EncodeF16([]float32{v}))
		if v == 0 {
			if got != 0 {
				t.Errorf("EncodeF16(0) = %#04x", got)
			}
			continue
		}
		if want := f32ToF16Naive(float32(math.Abs(float64(v)))) | uint16(math.Float32bits(v)>>16)&0x8000; got != want {
			t.Errorf("EncodeF16(%g) = %#04x, naive %#04x", v, got, want)
		}
	}
}

func TestBadFiles(t *testing.T) {
	good := encodeFile(t, allKVs(), fixtureTensors(t))
	le := binary.LittleEndian
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":        {},
		"magic":        mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"version 2":    mutate(func(b []byte) []byte { le.PutUint32(b[4:], 2); return b }),
		"huge tensors": mutate(func(b []byte) []byte { le.PutUint64(b[8:], 1<<60); return b }),
		"huge kvs":     mutate(func(b []byte) []byte { le.PutUint64(b[16:], 1<<60); return b }),
		"huge key":     mutate(func(b []byte) []byte { le.PutUint64(b[24:], 1<<62); return b }),
		"value type":   mutate(func(b []byte) []byte { le.PutUint32(b[24+8+len("general.architecture"):], 99); return b }),
		"truncated":    good[:len(good)-40], // into the last tensor (its padding alone may go)
		"header only":  good[:200],
	}
	for name, data := range cases {
		if _, err := Parse(data); err == nil {
			t.Errorf("%s: no error", name)
		} else if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: error %v is neither ErrFormat nor ErrUnsupported", name, err)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	for name, c := range map[string]struct {
		kvs []KV
		ts  []Tensor
	}{
		"short data":    {nil, []Tensor{{Name: "a", Dims: []uint64{4}, Type: F32, Data: make([]byte, 15)}}},
		"q8_0 width":    {nil, []Tensor{{Name: "a", Dims: []uint64{16}, Type: Q8_0, Data: make([]byte, 18)}}},
		"duplicate":     {nil, []Tensor{{Name: "a", Dims: []uint64{1}, Type: F32, Data: make([]byte, 4)}, {Name: "a", Dims: []uint64{1}, Type: F32, Data: make([]byte, 4)}}},
		"unknown type":  {nil, []Tensor{{Name: "a", Dims: []uint64{1}, Type: 2, Data: make([]byte, 4)}}},
		"go type":       {[]KV{{"k", 3}}, nil},
		"mixed array":   {[]KV{{"k", Array{Elem: TypeInt32, Values: []uint32{1}}}}, nil},
		"alignment key": {[]KV{{"general.alignment", uint32(64)}}, nil},
	} {
		if err := Write(&bytes.Buffer{}, c.kvs, c.ts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzParse: no input makes Parse panic or read out of bounds, and a file it accepts yields
// every tensor of a known type.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("testdata", "gguf-py.gguf")); err == nil {
		f.Add(data)
	}
	var buf bytes.Buffer
	if err := Write(&buf, []KV{{"k", Array{Elem: TypeString, Values: []string{"x"}}}}, []Tensor{{Name: "w", Dims: []uint64{32}, Type: Q8_0, Data: make([]byte, 34)}}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("GGUF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		for _, ti := range file.Tensors {
			if ti.Type != F32 && ti.Type != F16 && ti.Type != Q8_0 {
				continue
			}
			// No size cap needed: Parse checked that the bytes are in the file, so the values
			// decoded are at most a few times the input's size.
			if _, _, err := file.Float32(ti.Name); err != nil {
				t.Fatalf("tensor %q accepted by Parse: %v", ti.Name, err)
			}
		}
	})
}

// TestHugeDims: dimensions whose byte count overflows uint64 are refused, not wrapped into a
// small size that would pass the bounds check.
func TestHugeDims(t *testing.T) {
	data := encodeFile(t, nil, []Tensor{{Name: "w", Dims: []uint64{4, 1}, Type: F32, Data: make([]byte, 16)}})
	// The tensor info follows the 24-byte header: name (8+1), n_dims (4), dims at 37 and 45.
	binary.LittleEndian.PutUint64(data[37:], 1<<62) // 2^62 float32 = 2^64 bytes: wraps to 0
	binary.LittleEndian.PutUint64(data[45:], 1)
	if _, err := Parse(data); !errors.Is(err, ErrFormat) {
		t.Errorf("ne = [2^62, 1]: error %v, want ErrFormat", err)
	}
	binary.LittleEndian.PutUint64(data[37:], 4)
	binary.LittleEndian.PutUint64(data[45:], 1<<63)
	if _, err := Parse(data); !errors.Is(err, ErrFormat) {
		t.Errorf("ne = [4, 2^63]: error %v, want ErrFormat", err)
	}
}

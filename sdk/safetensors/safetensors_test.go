package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// build returns a safetensors image with the given raw JSON header and data.
func build(header string, data []byte) []byte {
	var b bytes.Buffer
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	b.Write(n[:])
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	vals := []float32{0, 1, -2.5, 3.14159, 1e-3, -65504, 1e-7}
	tensors := []Tensor{
		{Name: "b.f32", DType: F32, Shape: []int{7}, F32: vals},
		{Name: "a.f16", DType: F16, Shape: []int{1, 7}, F32: vals},
		{Name: "c.bf16", DType: BF16, Shape: []int{7, 1}, F32: vals},
		{Name: "d.i64", DType: I64, Shape: []int{2, 2}, I64: []int64{1, -2, 1 << 40, 50256}},
		{Name: "e.i32", DType: I32, Shape: []int{2}, I64: []int64{-7, 9}},
		{Name: "f.scalar", DType: F32, Shape: []int{}, F32: []float32{42}},
		{Name: "g.empty", DType: F32, Shape: []int{0, 3}, F32: []float32{}},
	}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := WriteFile(path, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := strings.Join(f.Names(), ","); got != "a.f16,b.f32,c.bf16,d.i64,e.i32,f.scalar,g.empty" {
		t.Fatalf("Names() = %s", got)
	}
	if f.Metadata()["format"] != "pt" {
		t.Errorf("metadata = %v", f.Metadata())
	}
	got, shape, err := f.Float32("b.f32")
	if err != nil || len(shape) != 1 || shape[0] != 7 {
		t.Fatalf("Float32(b.f32) shape %v err %v", shape, err)
	}
	for i := range vals {
		if got[i] != vals[i] {
			t.Errorf("f32[%d] = %v, want %v", i, got[i], vals[i])
		}
	}
	h, _, _ := f.Float32("a.f16")
	bf, _, _ := f.Float32("c.bf16")
	for i, v := range vals {
		if want := F16ToF32(F32ToF16(v)); h[i] != want {
			t.Errorf("f16[%d] = %v, want %v", i, h[i], want)
		}
		if want := BF16ToF32(F32ToBF16(v)); bf[i] != want {
			t.Errorf("bf16[%d] = %v, want %v", i, bf[i], want)
		}
		// half precision keeps ~3 significant digits, bf16 ~2
		if v != 0 && math.Abs(float64(bf[i]-v)/float64(v)) > 1.0/128 {
			t.Errorf("bf16[%d] = %v too far from %v", i, bf[i], v)
		}
	}
	ints, _, err := f.Int64("d.i64")
	if err != nil || ints[2] != 1<<40 || ints[1] != -2 {
		t.Errorf("Int64(d.i64) = %v, %v", ints, err)
	}
	i32, _, err := f.Int64("e.i32")
	if err != nil || i32[0] != -7 || i32[1] != 9 {
		t.Errorf("Int64(e.i32) = %v, %v", i32, err)
	}
	if s, shp, err := f.Float32("f.scalar"); err != nil || len(shp) != 0 || s[0] != 42 {
		t.Errorf("scalar = %v %v %v", s, shp, err)
	}
	if _, _, err := f.Float32("d.i64"); !errors.Is(err, ErrDType) || !strings.Contains(err.Error(), "d.i64") {
		t.Errorf("Float32 of I64: err = %v, want ErrDType naming the tensor", err)
	}
	if _, err := f.Info("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Info(nope): err = %v, want ErrNotFound naming file and tensor", err)
	}
}

// TestFixtureWrittenByPython reads a file written by scripts/fixtures/gpt2_fixtures.py (an
// independent writer) and checks values that script sets.
func TestFixtureWrittenByPython(t *testing.T) {
	f, err := Open("../../testdata/models/gpt2-odd/reference.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, shape, err := f.Int64("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	if shape[0] != 2 || shape[1] != 7 || ids[0] != 5 || ids[1] != 77 || ids[2] != 300 || ids[7] != 383 {
		t.Errorf("input_ids = %v %v", shape, ids)
	}
	if f.Metadata()["format"] != "modelrt-gpt2-reference/v1" {
		t.Errorf("metadata = %v", f.Metadata())
	}
	for _, dir := range []string{"gpt2-tiny", "gpt2-bf16", "gpt2-odd"} {
		m, err := Open("../../testdata/models/" + dir + "/model.safetensors")
		if err != nil {
			t.Fatal(err)
		}
		// LayerNorm gains are 1 + N(0, 0.1): their mean must be near 1 whatever the dtype.
		g, _, err := m.Float32("transformer.ln_f.weight")
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, v := range g {
			s += float64(v)
		}
		if mean := s / float64(len(g)); math.Abs(mean-1) > 0.1 {
			t.Errorf("%s: ln_f.weight mean %v, want about 1", dir, mean)
		}
		m.Close()
	}
}

func TestF16Exhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if f != f { // NaN stays NaN
			if g := F16ToF32(F32ToF16(f)); g == g {
				t.Fatalf("NaN %#x round-trips to %v", h, g)
			}
			continue
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)=%v) = %#04x", h, f, back)
		}
	}
	cases := []struct {
		in   float32
		want uint16
	}{
		{65504, 0x7bff}, {65520, 0x7c00}, {1 + 1.0/2048, 0x3c00}, {1 + 3.0/2048, 0x3c02},
		{float32(math.Ldexp(1, -24)), 0x0001}, {float32(math.Ldexp(1, -25)), 0x0000},
		{float32(math.Ldexp(1.5, -25)), 0x0001}, {-0.0, 0x0000}, {float32(math.Inf(-1)), 0xfc00},
	}
	for _, c := range cases {
		if got := F32ToF16(c.in); got != c.want {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if got := F32ToBF16(1 + 1.0/256); got != 0x3f80 { // tie to even
		t.Errorf("F32ToBF16 tie = %#04x", got)
	}
	if got := F32ToBF16(1 + 3.0/256); got != 0x3f82 {
		t.Errorf("F32ToBF16 tie up = %#04x", got)
	}
}

func TestBadFiles(t *testing.T) {
	data8 := make([]byte, 8)
	good := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	cases := []struct {
		name string
		file []byte
		want string // substring of the error
	}{
		{"empty", nil, "no 8-byte header length"},
		{"short", []byte{1, 2, 3}, "no 8-byte header length"},
		{"header beyond file", build(good, data8)[:20], "runs past the end"},
		{"header cap", func() []byte { b := make([]byte, 16); binary.LittleEndian.PutUint64(b, 1<<40); return b }(), "cap"},
		{"not json", build("[1,2,3] ", data8), "not a JSON object"},
		{"bad json", build(`{"a":{"dtype":"F32",`, data8), `tensor "a": unexpected EOF`},
		{"truncated data", build(good, data8[:4]), "run past"},
		{"unknown dtype", build(`{"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}`, data8), `tensor "a": unknown dtype`},
		{"size mismatch", build(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, data8), `tensor "a": F16[2] needs 4 bytes`},
		{"negative dim", build(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, data8), "negative dimension"},
		{"reversed offsets", build(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, data8), "invalid data_offsets"},
		{"out of range", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, data8), "gap"},
		{"past end", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, data8), `tensor "b": data_offsets [8,12] run past`},
		{"overlap", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8), "overlap"},
		{"trailing bytes", build(good, make([]byte, 12)), "cover 8 bytes but the data section holds 12"},
		{"duplicate", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, data8), "duplicate"},
		{"metadata not strings", build(`{"__metadata__":{"x":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, data8), "__metadata__"},
		{"missing offsets", build(`{"a":{"dtype":"F32","shape":[2]}}`, data8), "data_offsets must hold 2"},
		{"shape overflow", build(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, data8), "overflows"},
		{"trailing json", build(good+`{}`, data8), "trailing"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want error containing %q", c.want)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v\nwant ErrInvalid naming %s and containing %q", err, path, c.want)
			}
		})
	}
	if _, err := Open(filepath.Join(dir, "missing.safetensors")); err == nil || !strings.Contains(err.Error(), "missing.safetensors") {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	var b bytes.Buffer
	for _, ts := range [][]Tensor{
		{{Name: "a", DType: F32, Shape: []int{3}, F32: []float32{1}}},
		{{Name: "a", DType: U8, Shape: []int{1}}},
		{{Name: "a", DType: I32, Shape: []int{1}, I64: []int64{1 << 40}}},
		{{Name: "a", DType: F32, Shape: []int{1}, F32: []float32{1}}, {Name: "a", DType: F32, Shape: []int{1}, F32: []float32{1}}},
	} {
		if err := Write(&b, ts, nil); err == nil || !strings.Contains(err.Error(), `"a"`) {
			t.Errorf("Write(%v): err = %v", ts, err)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	var b bytes.Buffer
	_ = Write(&b, []Tensor{
		{Name: "w", DType: F16, Shape: []int{2, 2}, F32: []float32{1, 2, 3, 4}},
		{Name: "ids", DType: I64, Shape: []int{1}, I64: []int64{7}},
	}, map[string]string{"k": "v"})
	f.Add(b.Bytes())
	f.Add(build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(build(`{"a":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}`, make([]byte, 2)))
	f.Add(build(`{}`, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data, int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		// A header that validates must describe tensors that are safe to read.
		sf, err := FromBytes("fuzz", data)
		if err != nil {
			t.Fatalf("ParseHeader accepted but FromBytes failed: %v", err)
		}
		end := h.DataStart
		for _, ti := range h.Tensors {
			raw, _, err := sf.Raw(ti.Name)
			if err != nil || int64(len(raw)) != ti.End-ti.Begin {
				t.Fatalf("Raw(%q): %d bytes, err %v", ti.Name, len(raw), err)
			}
			if int64(ti.NumElements()*ti.DType.Size()) != ti.End-ti.Begin {
				t.Fatalf("tensor %q: size disagrees with shape", ti.Name)
			}
			switch ti.DType {
			case F32, F16, BF16, F64:
				if _, _, err := sf.Float32(ti.Name); err != nil {
					t.Fatalf("Float32(%q): %v", ti.Name, err)
				}
			}
			end = h.DataStart + ti.End
		}
		if end != int64(len(data)) {
			t.Fatalf("tensors end at %d, file has %d bytes", end, len(data))
		}
	})
}

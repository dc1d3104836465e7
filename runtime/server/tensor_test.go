package server

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/modelrt/modelrt/sdk"
)

func TestParseData(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  string
	}{
		{`[1, 2.5, -3e2]`, []string{"1", "2.5", "-3e2"}, ""},
		{`[[1,2],[3,4]]`, []string{"1", "2", "3", "4"}, ""},
		{` [ true , false ] `, []string{"true", "false"}, ""},
		{`["NaN", "-Infinity"]`, []string{"NaN", "-Infinity"}, ""},
		{`[]`, nil, ""},
		{`[[]]`, nil, ""},
		{`5`, nil, "want an array"},
		{`[1, null]`, nil, "element 1 is null"},
		{`[{"a":1}]`, nil, "objects"},
		{`["a\"b"]`, nil, "escaped"},
		{`[1]]`, nil, "trailing"},
		{`[1`, nil, "unterminated"},
		{``, nil, "required"},
		{strings.Repeat("[", 17) + "1" + strings.Repeat("]", 17), nil, "nested deeper"},
	}
	for _, tc := range cases {
		got, err := parseData(json.RawMessage(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseData(%s) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseData(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestTensorRoundTrip: what toTensor reads, appendData writes back, for every datatype.
func TestTensorRoundTrip(t *testing.T) {
	cases := []struct{ dtype, data string }{
		{"FP32", `[1,-2.5,3e-07,0]`},
		{"INT64", `[9007199254740993,-1,0,5]`},
		{"INT32", `[2147483647,-2147483648,0,1]`},
		{"UINT8", `[0,255,7,1]`},
		{"BOOL", `[true,false,false,true]`},
	}
	for _, tc := range cases {
		in := v2Tensor{Name: "x", Datatype: tc.dtype, Shape: []int64{2, 2}, Data: json.RawMessage(tc.data)}
		tt, err := in.toTensor()
		if err != nil {
			t.Fatalf("%s: %v", tc.dtype, err)
		}
		out, err := fromTensor("x", tt)
		if err != nil {
			t.Fatal(err)
		}
		if string(out.Data) != tc.data || out.Datatype != tc.dtype {
			t.Errorf("%s: round trip %s → %s %s", tc.dtype, tc.data, out.Datatype, out.Data)
		}
	}
	for _, bad := range []struct{ dtype, data, err string }{
		{"INT32", `[2147483648]`, "not a INT32 integer"},
		{"UINT8", `[-1]`, "not a UINT8 integer"},
		{"BOOL", `[1]`, "not a boolean"},
		{"FP32", `["x"]`, "not a number"},
		{"FP32", `["Infinity"]`, "not finite"},
		{"FP16", `[1]`, "datatype"},
	} {
		in := v2Tensor{Name: "x", Datatype: bad.dtype, Shape: []int64{1}, Data: json.RawMessage(bad.data)}
		if _, err := in.toTensor(); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("%s %s: %v, want %q", bad.dtype, bad.data, err, bad.err)
		}
	}
	// Non-finite outputs have no JSON number: they are written as the strings inputs read.
	nf := sdk.FromFloat32([]int64{3}, []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))})
	out, err := fromTensor("y", nf)
	if err != nil || string(out.Data) != `["NaN","Infinity","-Infinity"]` {
		t.Errorf("non-finite output: %s, %v", out.Data, err)
	}
}

// FuzzParseData: parseData never panics on valid JSON, and when it accepts a value, its
// elements are exactly the scalars encoding/json finds in it, in order.
func FuzzParseData(f *testing.F) {
	for _, s := range []string{`[1,2]`, `[[1],[2,3]]`, `["NaN"]`, `[true,null]`, `{"a":[1]}`, `[[[]]]`, `[1e400, -0]`, `[""]`, `[","]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) || !utf8.ValidString(s) {
			return // encoding/json rewrites invalid UTF-8; parseData's elements are numbers
		}
		elems, err := parseData(json.RawMessage(s))
		if err != nil {
			return
		}
		var v any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		var flat []string
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case []any:
				for _, e := range x {
					walk(e)
				}
			case json.Number:
				flat = append(flat, x.String())
			case string:
				flat = append(flat, x)
			case bool:
				flat = append(flat, map[bool]string{true: "true", false: "false"}[x])
			default:
				t.Fatalf("parseData(%q) accepted a %T", s, v)
			}
		}
		walk(v)
		if !slices.Equal(elems, flat) {
			t.Fatalf("parseData(%q) = %q; encoding/json finds %q", s, elems, flat)
		}
		in := v2Tensor{Name: "x", Datatype: "FP32", Shape: []int64{int64(len(elems))}, Data: json.RawMessage(s)}
		_, _ = in.toTensor()
	})
}

// BenchmarkTensorJSON: a (1,4,64,64) FP32 latent through the v2 input parser and back to JSON,
// the per-request cost of the JSON tensor form for a Stable Diffusion-sized latent.
func BenchmarkTensorJSON(b *testing.B) {
	v := make([]float32, 4*64*64)
	for i := range v {
		v[i] = float32(i%1000)/999 - 0.5
	}
	data, err := appendData(nil, sdk.FromFloat32([]int64{1, 4, 64, 64}, v))
	if err != nil {
		b.Fatal(err)
	}
	in := v2Tensor{Name: "latent", Datatype: "FP32", Shape: []int64{1, 4, 64, 64}, Data: data}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		t, err := in.toTensor()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := fromTensor("image", t); err != nil {
			b.Fatal(err)
		}
	}
}

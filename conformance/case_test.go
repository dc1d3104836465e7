package conformance

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk"
)

const goodLogits = `{ "format": "modelrt-case/v1", "name": "t-logits",
  "model": "../models/m", "task": "causal-lm.logits",
  "inputs":   { "input_ids": { "dtype": "int64", "shape": [1, 2], "data": [5, 7] } },
  "params":   { },
  "expected": { "logits": { "dtype": "float32", "shape": [1, 2, 3], "data": [0.5, -1, 2e-3, 1, 2, 3] } },
  "tolerance": { "abs": 1e-4, "rel": 1e-3 } }`

const goodGenerate = `{ "format": "modelrt-case/v1", "name": "t-gen", "model": "m", "task": "causal-lm.generate",
  "inputs": { "input_ids": { "dtype": "int64", "shape": [1, 2], "data": [5, 7] } },
  "params": { "max_new_tokens": 2, "greedy": true },
  "expected": { "ids": { "dtype": "int64", "shape": [1, 4], "data": [5, 7, 9, 9] } } }`

func TestParseCaseGood(t *testing.T) {
	c, err := ParseCase("cases/t.json", []byte(goodLogits))
	if err != nil {
		t.Fatal(err)
	}
	if c.Model != filepath.Join("cases", "../models/m") || c.Tol != (Tolerance{Abs: 1e-4, Rel: 1e-3}) || c.LoadTask() != "causal-lm" {
		t.Errorf("case = %+v", c)
	}
	if got := c.Expected["logits"].F32; !reflect.DeepEqual(got, []float32{0.5, -1, 2e-3, 1, 2, 3}) {
		t.Errorf("logits = %v", got)
	}
	g, err := ParseCase("g.json", []byte(goodGenerate))
	if err != nil {
		t.Fatal(err)
	}
	if g.Params != (Params{MaxNewTokens: 2, Greedy: true}) || g.Tol != (Tolerance{Abs: DefaultAbs, Rel: DefaultRel}) {
		t.Errorf("generate case = %+v", g)
	}
	// greedy is implied when left out.
	g, err = ParseCase("g.json", []byte(strings.Replace(goodGenerate, `, "greedy": true`, ``, 1)))
	if err != nil || !g.Params.Greedy {
		t.Errorf("generate case without greedy: %+v, %v", g, err)
	}
}

// TestParseCaseErrors: each broken file is refused with an error naming the file and field.
func TestParseCaseErrors(t *testing.T) {
	for _, tc := range []struct{ what, from, to, field string }{
		{"format", `"modelrt-case/v1"`, `"modelrt-case/v2"`, "format"},
		{"unknown top-level field", `"params":`, `"extra": 1, "params":`, `unknown field "extra"`},
		{"task", `"causal-lm.logits"`, `"causal-lm.logit"`, "task"},
		{"name", `"t-logits"`, `" "`, "name"},
		{"model", `"../models/m"`, `""`, "model"},
		{"dtype", `"dtype": "int64"`, `"dtype": "uint8"`, "inputs.input_ids"},
		{"data length", `"data": [5, 7]`, `"data": [5]`, "inputs.input_ids"},
		{"fractional id", `"data": [5, 7]`, `"data": [5, 7.5]`, "inputs.input_ids"},
		{"negative id", `"data": [5, 7]`, `"data": [5, -7]`, "inputs.input_ids"},
		{"float out of range", `0.5, -1`, `0.5, -1e60`, "expected.logits"},
		{"unknown input", `"inputs":   {`, `"inputs":   { "pixels": { "dtype": "int64", "shape": [1], "data": [1] },`, "inputs.pixels"},
		{"missing expected", `"logits": {`, `"scores": {`, "expected"},
		{"logits shape", `"shape": [1, 2, 3]`, `"shape": [1, 3, 2]`, "expected.logits"},
		{"negative tolerance", `"abs": 1e-4`, `"abs": -1`, "tolerance.abs"},
		{"params on logits", `"params":   { }`, `"params": { "greedy": true }`, "params.greedy"},
		{"tensor field", `"dtype": "float32"`, `"dtype": "float32", "scale": 2`, "expected.logits"},
		{"trailing data", `1e-3 } }`, `1e-3 } } {}`, "trailing"},
		{"mask padding on the right", `"data": [5, 7] } }`, `"data": [5, 7] }, "attention_mask": { "dtype": "int64", "shape": [1, 2], "data": [1, 0] } }`, "inputs.attention_mask"},
	} {
		src := strings.Replace(goodLogits, tc.from, tc.to, 1)
		if src == goodLogits {
			t.Fatalf("%s: %q not in the good case", tc.what, tc.from)
		}
		_, err := ParseCase("dir/bad.json", []byte(src))
		if err == nil || !errors.Is(err, ErrCase) || !strings.Contains(err.Error(), "dir/bad.json") || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v; want ErrCase naming dir/bad.json and %q", tc.what, err, tc.field)
		}
	}
	for _, tc := range []struct{ what, from, to, field string }{
		{"greedy false", `"greedy": true`, `"greedy": false`, "params.greedy"},
		{"greedy not a bool", `"greedy": true`, `"greedy": 1`, "params.greedy"},
		{"no max_new_tokens", `"max_new_tokens": 2, `, ``, "params.max_new_tokens"},
		{"zero max_new_tokens", `"max_new_tokens": 2`, `"max_new_tokens": 0`, "params.max_new_tokens"},
		{"ids length", `"shape": [1, 4]`, `"shape": [1, 5]`, "expected.ids"},
		{"ids without the prompt", `[5, 7, 9, 9]`, `[5, 8, 9, 9]`, "expected.ids"},
		{"unknown param", `"greedy": true`, `"greedy": true, "top_k": 1`, "params.top_k"},
	} {
		src := strings.Replace(goodGenerate, tc.from, tc.to, 1)
		if src == goodGenerate {
			t.Fatalf("%s: %q not in the good case", tc.what, tc.from)
		}
		_, err := ParseCase("g.json", []byte(src))
		if err == nil || !strings.Contains(err.Error(), "g.json") || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v; want an error naming g.json and %q", tc.what, err, tc.field)
		}
	}
}

func TestLoadDirReportsEveryBadFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(goodLogits), 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"format": "nope"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "c.json"), []byte(goodLogits), 0o644) // same name as a.json
	os.WriteFile(filepath.Join(dir, "d.json"), []byte(`not json`), 0o644)
	cases, err := LoadDir(dir)
	if len(cases) != 1 || err == nil {
		t.Fatalf("LoadDir = %d cases, %v; want 1 and errors", len(cases), err)
	}
	for _, want := range []string{"b.json", "c.json", "already used by", "d.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := LoadDir(t.TempDir()); err == nil {
		t.Error("LoadDir of an empty directory: no error")
	}
}

// TestRepositoryCasesParse: the committed case files load and round-trip through Marshal.
func TestRepositoryCasesParse(t *testing.T) {
	cases, err := LoadDir(casesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if _, err := os.Stat(c.Model); err != nil {
			t.Errorf("%s: model %s: %v", c.File, c.Model, err)
		}
		roundTrip(t, c)
	}
}

func roundTrip(t *testing.T, c *Case) {
	t.Helper()
	data, err := c.Marshal()
	if err != nil {
		t.Fatalf("%s: Marshal: %v", c.Name, err)
	}
	again, err := ParseCase("", data)
	if err != nil {
		t.Fatalf("%s: Marshal's output does not parse: %v\n%s", c.Name, err, data)
	}
	again.File, again.Model = c.File, c.Model
	if !reflect.DeepEqual(again, c) {
		t.Errorf("%s: round trip changed the case", c.Name)
	}
}

func FuzzParseCase(f *testing.F) {
	f.Add([]byte(goodLogits))
	f.Add([]byte(goodGenerate))
	f.Add([]byte(`{"format":"modelrt-case/v1","name":"v","model":"m","task":"vae.decode","inputs":{"latent":{"dtype":"float32","shape":[1,1,1,1],"data":[0]}},"expected":{"image":{"dtype":"float32","shape":[1,3,2,2],"data":[0,0,0,0,0,0,0,0,0,0,0,0]}}}`))
	f.Add([]byte(`{"format":"modelrt-case/v1","name":"e","model":"m","task":"vae.encode","inputs":{"image":{"dtype":"float32","shape":[1,1,2,2],"data":[0,1,0,1]}},"expected":{"mean":{"dtype":"float32","shape":[1,1,1,1],"data":[0]},"logvar":{"dtype":"float32","shape":[1,1,1,1],"data":[0]}}}`))
	f.Add([]byte(`{"format":"modelrt-case/v1","inputs":{"input_ids":{"dtype":"int64","shape":[4294967296,4294967296],"data":[]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCase("", data)
		if err != nil {
			if !errors.Is(err, ErrCase) {
				t.Fatalf("error does not wrap ErrCase: %v", err)
			}
			return
		}
		roundTrip(t, c)
	})
}

func TestCompareFloat(t *testing.T) {
	want := []float32{1, 2, 3, 4, 5, 6}
	got := []float32{1, 2.5, 3, 4, 5, 6.0001}
	d := CompareFloat(got, want, []int64{2, 3}, Tolerance{Abs: 1e-3}, nil)
	if d.OK() || d.Mismatches != 1 || d.MaxAbs != 0.5 || !reflect.DeepEqual(d.First[0].Index, []int{0, 1}) {
		t.Errorf("diff = %+v", d)
	}
	if !strings.Contains(d.String(), "[0 1] got 2.5 want 2") {
		t.Errorf("String() = %q does not name the first mismatch", d.String())
	}
	// The relative part of the tolerance scales with |want|.
	if d := CompareFloat([]float32{1000.5}, []float32{1000}, []int64{1}, Tolerance{Rel: 1e-3}, nil); !d.OK() {
		t.Errorf("rel tolerance: %v", d)
	}
	// NaN never passes; skipped elements are not compared.
	nan := float32(0)
	nan /= nan
	if d := CompareFloat([]float32{nan, 9}, []float32{1, 1}, []int64{2}, Tolerance{Abs: 1}, func(i int) bool { return i == 1 }); d.Mismatches != 1 || d.N != 1 {
		t.Errorf("NaN/skip: %+v", d)
	}
	if d := CompareInt([]int64{1, 2, 4}, []int64{1, 2, 3}, []int64{1, 3}); d.Mismatches != 1 || !reflect.DeepEqual(d.First[0].Index, []int{0, 2}) {
		t.Errorf("CompareInt: %+v", d)
	}
}

// BenchmarkParseCase parses the largest repository case (2·7·384 logits).
func BenchmarkParseCase(b *testing.B) {
	path := filepath.Join(casesDir, "gpt2-odd-logits-padded.json")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseCase(path, data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCaseTaskAliases: the VAE case tasks are the SDK's task names, and files written with the
// format's first names ("vae.encode", "vae.decode") still load, as those tasks.
func TestCaseTaskAliases(t *testing.T) {
	for name, want := range map[string]string{"vae.encode": sdk.TaskVAEEncode, "vae-encode": sdk.TaskVAEEncode} {
		data := `{"format":"modelrt-case/v1","name":"e","model":"m","task":"` + name + `","inputs":{"image":{"dtype":"float32","shape":[1,1,2,2],"data":[0,1,0,1]}},` +
			`"expected":{"mean":{"dtype":"float32","shape":[1,1,1,1],"data":[0]},"logvar":{"dtype":"float32","shape":[1,1,1,1],"data":[0]}}}`
		c, err := ParseCase("", []byte(data))
		if err != nil {
			t.Fatalf("task %q: %v", name, err)
		}
		if c.Task != want || c.LoadTask() != sdk.TaskVAE {
			t.Errorf("task %q: loaded as %q (model task %q), want %q", name, c.Task, c.LoadTask(), want)
		}
		roundTrip(t, c)
	}
	dec := `{"format":"modelrt-case/v1","name":"v","model":"m","task":"vae.decode","inputs":{"latent":{"dtype":"float32","shape":[1,1,1,1],"data":[0]}},"expected":{"image":{"dtype":"float32","shape":[1,1,2,2],"data":[0,0,0,0]}}}`
	if c, err := ParseCase("", []byte(dec)); err != nil || c.Task != sdk.TaskVAEDecode {
		t.Errorf("task vae.decode: %v, %v; want %q", c, err, sdk.TaskVAEDecode)
	}
}

package modeldir

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

func fixtureDir(name string) string { return filepath.Join("..", "..", "testdata", "models", name) }

func TestParseGPT2ConfigDefaults(t *testing.T) {
	c, err := ParseGPT2Config([]byte(`{"vocab_size": 50257, "n_ctx": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12}`))
	if err != nil {
		t.Fatal(err)
	}
	want := GPT2Config{VocabSize: 50257, NPositions: 1024, NEmbd: 768, NLayer: 12, NHead: 12,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 50256, EOSTokenID: 50256}
	if c != want {
		t.Errorf("ParseConfig = %+v\nwant %+v", c, want)
	}
	if c.Inner() != 3072 || c.HeadDim() != 64 {
		t.Errorf("Inner %d HeadDim %d", c.Inner(), c.HeadDim())
	}
}

func FuzzParseGPT2Config(f *testing.F) {
	b, err := os.ReadFile(filepath.Join(fixtureDir("gpt2-odd"), "config.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"vocab_size": 5, "n_positions": 2, "n_embd": 6, "n_layer": 1, "n_head": 3, "n_inner": null}`))
	f.Add([]byte(`{"vocab_size": -1}`))
	f.Add([]byte(`{"vocab_size": 5, "n_positions": 2, "n_embd": 6, "n_layer": 1, "n_head": 3, "quantization": {"format": "modelrt-weights/v1", "dtype": "int8"}}`))
	f.Add([]byte(`{"vocab_size": 5, "n_positions": 2, "n_embd": 6, "n_layer": 1, "n_head": 3, "quantization": {"format": "modelrt-weights/v1", "dtype": "f32"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseGPT2Config(data)
		if err != nil {
			return
		}
		if c.Weights != "" && c.Weights != quant.Int8 && c.Weights != quant.F16 {
			t.Fatalf("accepted weights %q", c.Weights)
		}
		if c.Validate() != nil || c.NEmbd%c.NHead != 0 || c.Inner() <= 0 {
			t.Fatalf("accepted an invalid config %+v", c)
		}
	})
}

// halfStepSlack is how far past half a quantization step a stored int8 value may land: w/scale
// is computed in float32, so a value within float32 rounding of a half step may round away.
const halfStepSlack = 1e-3

// TestQuantizeGPT2Layout: the int8 directory holds the layout docs/kernels.md describes, and
// every stored weight dequantizes to the float32 original within half a quantization step.
func TestQuantizeGPT2Layout(t *testing.T) {
	src := fixtureDir("gpt2-tiny")
	out := filepath.Join(t.TempDir(), "q")
	if err := QuantizeGPT2(src, out, quant.Int8); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadGPT2Config(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Weights != quant.Int8 {
		t.Fatalf("config.json weights %q, want int8", cfg.Weights)
	}
	for _, name := range []string{"encoder.json", "vocab.bpe"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("tokenizer file not copied: %v", err)
		}
	}
	orig, err := safetensors.Open(filepath.Join(src, GPT2WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	q, err := safetensors.Open(filepath.Join(out, GPT2WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Has("lm_head.weight") {
		t.Error("lm_head.weight written for a tied checkpoint")
	}
	c := cfg.NEmbd
	for _, m := range []struct {
		name        string
		rows, cols  int
		perCol      bool
		scaleLength int
	}{
		{"transformer.wte.weight", cfg.VocabSize, c, false, cfg.VocabSize},
		{"transformer.h.0.attn.c_attn.weight", c, 3 * c, true, 3 * c},
		{"transformer.h.0.mlp.c_proj.weight", cfg.Inner(), c, true, c},
	} {
		raw, ti, err := q.Raw(m.name)
		if err != nil {
			t.Fatal(err)
		}
		if ti.DType != safetensors.I8 || len(raw) != m.rows*m.cols {
			t.Fatalf("%s: %s with %d bytes, want I8 (%d,%d)", m.name, ti.DType, len(raw), m.rows, m.cols)
		}
		scale, _, err := q.Float32(m.name + ".scale")
		if err != nil || len(scale) != m.scaleLength {
			t.Fatalf("%s.scale: %d values, err %v; want %d", m.name, len(scale), err, m.scaleLength)
		}
		w := lookupFloat32(t, orig, m.name)
		for i, b := range raw {
			ch := i / m.cols // output channel: the row, or the column of a Conv1D weight
			if m.perCol {
				ch = i % m.cols
			}
			s := scale[ch]
			if d := math.Abs(float64(w[i]) - float64(int8(b))*float64(s)); d > float64(s)*(0.5+halfStepSlack) {
				t.Fatalf("%s[%d]: %v stored as %d×%v", m.name, i, w[i], int8(b), s)
			}
		}
	}
	if ti, err := q.Info("transformer.ln_f.weight"); err != nil || ti.DType != safetensors.F32 {
		t.Errorf("ln_f.weight: %+v, %v; want F32", ti, err)
	}
}

// lookupFloat32 reads a tensor of the fixture, whose names may lack the "transformer." prefix.
func lookupFloat32(t *testing.T, f *safetensors.File, name string) []float32 {
	t.Helper()
	if !f.Has(name) {
		name = strings.TrimPrefix(name, "transformer.")
	}
	v, _, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestQuantizeGPT2Rejects: bad requests are errors naming what is wrong, and leave no output.
func TestQuantizeGPT2Rejects(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "q")
	if err := QuantizeGPT2(fixtureDir("gpt2-tiny"), q, quant.F32); err == nil || !strings.Contains(err.Error(), "want int8 or fp16") {
		t.Errorf("dtype f32: err = %v", err)
	}
	if err := QuantizeGPT2(fixtureDir("gpt2-tiny"), q, quant.F16); err != nil {
		t.Fatal(err)
	}
	if err := QuantizeGPT2(q, filepath.Join(dir, "qq"), quant.Int8); !errors.Is(err, ErrQuantized) {
		t.Errorf("requantizing: err = %v, want ErrQuantized", err)
	}
	// A config.json with one layer more than the weights hold names the missing tensor.
	bad := filepath.Join(dir, "bad")
	if err := os.MkdirAll(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(fixtureDir("gpt2-tiny"), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatal(err)
	}
	conf["n_layer"] = conf["n_layer"].(float64) + 1
	data, _ = json.Marshal(conf)
	if err := os.WriteFile(filepath.Join(bad, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	weights, err := os.ReadFile(filepath.Join(fixtureDir("gpt2-tiny"), GPT2WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, GPT2WeightsFile), weights, 0o644); err != nil {
		t.Fatal(err)
	}
	err = QuantizeGPT2(bad, filepath.Join(dir, "bad-q"), quant.Int8)
	if err == nil || !strings.Contains(err.Error(), "missing tensor") || !strings.Contains(err.Error(), `"transformer.h.2.`) {
		t.Errorf("n_layer+1: err = %v, want the missing tensor named", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad-q")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed QuantizeGPT2 left its output directory: %v", err)
	}
}

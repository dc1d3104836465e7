package export_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/onnx"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

func fixtureDir(name string) string { return filepath.Join("..", "..", "testdata", "models", name) }

// TestExportLayout checks the exported graph's interface (Optimum names and symbolic dims),
// that the tied wte is stored once, and the files copied beside it; no ONNX Runtime needed.
func TestExportLayout(t *testing.T) {
	src := fixtureDir("gpt2-tiny")
	for _, opts := range []export.Options{export.DefaultOptions(), {Opset: 17}, {Opset: 14, WithPast: true, ExternalData: true}} {
		out := t.TempDir()
		if err := export.ExportGPT2(src, out, opts); err != nil {
			t.Fatal(err)
		}
		m, err := onnx.Read(filepath.Join(out, export.ModelFile))
		if err != nil {
			t.Fatal(err)
		}
		s := m.Summary()
		if s.Opsets[0].Version != int64(opts.Opset) || s.IRVersion != 8 {
			t.Errorf("%+v: opset %v ir %d", opts, s.Opsets, s.IRVersion)
		}
		shape := func(v onnx.Value) string {
			var ds []string
			for _, d := range v.Dims {
				ds = append(ds, d.String())
			}
			return v.Name + " " + v.DType + " [" + strings.Join(ds, ",") + "]"
		}
		var ins, outs []string
		for _, v := range s.Inputs {
			ins = append(ins, shape(v))
		}
		for _, v := range s.Outputs {
			outs = append(outs, shape(v))
		}
		wantIns := []string{
			"input_ids int64 [batch_size,sequence_length]",
			"attention_mask int64 [batch_size,past_sequence_length + sequence_length]",
			"position_ids int64 [batch_size,sequence_length]",
		}
		wantOuts := []string{"logits float32 [batch_size,sequence_length,50257]"}
		if opts.WithPast {
			wantIns = append(wantIns, "past_key_values.0.key float32 [batch_size,2,past_sequence_length,8]", "past_key_values.0.value float32 [batch_size,2,past_sequence_length,8]")
			wantOuts = append(wantOuts, "present.0.key float32 [batch_size,2,past_sequence_length + sequence_length,8]")
		}
		for _, w := range wantIns {
			if !slices.Contains(ins, w) {
				t.Errorf("%+v: inputs %q lack %q", opts, ins, w)
			}
		}
		for _, w := range wantOuts {
			if !slices.Contains(outs, w) {
				t.Errorf("%+v: outputs %q lack %q", opts, outs, w)
			}
		}
		if n := len(s.Inputs); opts.WithPast && n != 3+2*2 || !opts.WithPast && n != 3 {
			t.Errorf("%+v: %d inputs", opts, n)
		}

		// Tied weights: the initializer bytes are the checkpoint's float32 size plus small
		// constants, not that plus another V×C matrix.
		st, err := safetensors.Open(filepath.Join(src, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		var weights int64
		for _, name := range st.Names() {
			ti, _ := st.Info(name)
			weights += int64(4 * ti.NumElements())
		}
		st.Close()
		if extra := s.InitializerBytes - weights; extra < 0 || extra > 4096 {
			t.Errorf("%+v: initializers hold %d bytes, checkpoint %d as float32 (difference %d: wte stored twice?)", opts, s.InitializerBytes, weights, extra)
		}
		if opts.ExternalData != (len(s.External) == 1) {
			t.Errorf("%+v: external files %+v", opts, s.External)
		}
		if (opts.Opset == 17) != hasOp(s, "LayerNormalization") {
			t.Errorf("opset %d: ops %+v", opts.Opset, s.Ops)
		}
		for _, f := range []string{"config.json", "encoder.json", "vocab.bpe"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("%s not copied: %v", f, err)
			}
		}
	}
}

func hasOp(s *onnx.Summary, op string) bool {
	for _, o := range s.Ops {
		if o.Op == op {
			return true
		}
	}
	return false
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExportBadInput(t *testing.T) {
	src := fixtureDir("gpt2-odd")

	// No config.json.
	empty := t.TempDir()
	if err := export.ExportGPT2(empty, t.TempDir(), export.DefaultOptions()); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("missing config: %v", err)
	}

	// A config that disagrees with the weights names the tensor.
	dir := t.TempDir()
	copyFile(t, filepath.Join(src, "model.safetensors"), filepath.Join(dir, "model.safetensors"))
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), `"vocab_size": 384`, `"vocab_size": 385`, 1)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := export.ExportGPT2(dir, t.TempDir(), export.DefaultOptions()); err == nil || !strings.Contains(err.Error(), "transformer.wte.weight") {
		t.Errorf("vocab mismatch: %v", err)
	}

	// Unsupported activation and opset.
	act := strings.Replace(string(cfg), `"gelu_new"`, `"relu"`, 1)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(act), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := export.ExportGPT2(dir, t.TempDir(), export.DefaultOptions()); err == nil || !strings.Contains(err.Error(), "activation_function") {
		t.Errorf("relu: %v", err)
	}
	if err := export.ExportGPT2(src, t.TempDir(), export.Options{Opset: 13}); !errors.Is(err, export.ErrUnsupported) {
		t.Errorf("opset 13: %v", err)
	}

	// No weights.
	dir = t.TempDir()
	copyFile(t, filepath.Join(src, "config.json"), filepath.Join(dir, "config.json"))
	if err := export.ExportGPT2(dir, t.TempDir(), export.DefaultOptions()); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("missing weights: %v", err)
	}
}

func TestRandomWeights(t *testing.T) {
	cfg := gpt2.Config{VocabSize: 64, NPositions: 16, NEmbd: 8, NLayer: 2, NHead: 2, LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 63, EOSTokenID: 63}
	w1, w2 := export.RandomWeights(cfg, 7), export.RandomWeights(cfg, 7)
	a, _, err := w1.Tensor("transformer.h.1.mlp.c_fc.weight")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w2.Tensor("transformer.wte.weight"); err != nil { // another order
		t.Fatal(err)
	}
	b, shape, _ := w2.Tensor("transformer.h.1.mlp.c_fc.weight")
	if !bytes.Equal(a, b) || !slices.Equal(shape, []int64{8, 32}) {
		t.Errorf("RandomWeights not reproducible, or shape %v", shape)
	}
	if c, _, _ := export.RandomWeights(cfg, 8).Tensor("transformer.h.1.mlp.c_fc.weight"); bytes.Equal(a, c) {
		t.Error("seed does not change the weights")
	}
	if _, _, err := w1.Tensor("lm_head.weight"); !errors.Is(err, safetensors.ErrNotFound) {
		t.Errorf("lm_head.weight: %v, want ErrNotFound (tied)", err)
	}
	m, err := export.BuildGPT2(cfg, w1, export.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, init := range m.Graph.Initializer {
		used[init.GetName()] = true
	}
	for name := range modeldir.GPT2Shapes(cfg) {
		if !used[name] {
			t.Errorf("tensor %s of GPT2Shapes is not in the graph", name)
		}
	}
}

// TestExportInPlace exports into the source directory itself (the files must survive) and then
// again inline after an external-data export (no stale model.onnx_data may remain).
func TestExportInPlace(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		copyFile(t, filepath.Join(fixtureDir("gpt2-odd"), f), filepath.Join(dir, f))
	}
	before, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := export.ExportGPT2(dir, dir, export.Options{Opset: 14, WithPast: true, ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if !bytes.Equal(before, after) || len(after) == 0 {
		t.Errorf("config.json changed by an in-place export: %d bytes before, %d after", len(before), len(after))
	}
	if _, err := os.Stat(filepath.Join(dir, "model.onnx_data")); err != nil {
		t.Fatal(err)
	}
	if err := export.ExportGPT2(dir, dir, export.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "model.onnx_data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale model.onnx_data after an inline export: %v", err)
	}
	if _, err := onnx.Read(filepath.Join(dir, "model.onnx")); err != nil {
		t.Error(err)
	}
}

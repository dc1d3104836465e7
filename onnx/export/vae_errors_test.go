package export_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/native/vae"
	"github.com/modelrt/modelrt/onnx"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// TestExportVAELayout checks the split's interface (Optimum's names, fixed channel dims) and the
// config copies; no ONNX Runtime needed.
func TestExportVAELayout(t *testing.T) {
	out := t.TempDir()
	if err := export.ExportVAE(fixtureDir("vae-rect"), out, export.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ part, in, out string }{
		{export.VAEEncoderDir, "sample float32 [batch_size,3,height,width]", "latent_parameters float32 [batch_size,6,height/4,width/4]"},
		{export.VAEDecoderDir, "latent_sample float32 [batch_size,3,height/4,width/4]", "sample float32 [batch_size,3,height,width]"},
	} {
		m, err := onnx.Read(filepath.Join(out, tc.part, export.ModelFile))
		if err != nil {
			t.Fatal(err)
		}
		s := m.Summary()
		str := func(v onnx.Value) string {
			var ds []string
			for _, d := range v.Dims {
				ds = append(ds, d.String())
			}
			return v.Name + " " + v.DType + " [" + strings.Join(ds, ",") + "]"
		}
		if len(s.Inputs) != 1 || str(s.Inputs[0]) != tc.in || len(s.Outputs) != 1 || str(s.Outputs[0]) != tc.out {
			t.Errorf("%s: inputs %v outputs %v; want %q → %q", tc.part, s.Inputs, s.Outputs, tc.in, tc.out)
		}
		if _, err := os.Stat(filepath.Join(out, tc.part, "config.json")); err != nil {
			t.Errorf("%s: %v", tc.part, err)
		}
	}
}

func TestIsVAEDir(t *testing.T) {
	for dir, want := range map[string]bool{"vae-tiny": true, "vae-rect": true, "gpt2-tiny": false, "no-such-dir": false} {
		if got := export.IsVAEDir(fixtureDir(dir)); got != want {
			t.Errorf("IsVAEDir(%s) = %v, want %v", dir, got, want)
		}
	}
}

// TestExportVAEBadInput: a missing tensor, a tensor of the wrong shape, a bad config and a bad
// opset are errors naming what is wrong.
func TestExportVAEBadInput(t *testing.T) {
	cfg := vae.DefaultConfig()
	cfg.BlockOutChannels = []int{8, 16}
	cfg.NormNumGroups = 4
	write := func(t *testing.T, edit func(ts []safetensors.Tensor) []safetensors.Tensor) string {
		dir := t.TempDir()
		if err := export.WriteRandomVAE(dir, cfg, 1); err != nil {
			t.Fatal(err)
		}
		if edit == nil {
			return dir
		}
		p := filepath.Join(dir, vae.WeightFiles[0])
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var ts []safetensors.Tensor
		for _, n := range f.Names() {
			v, s, err := f.Float32(n)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: s, F32: v})
		}
		f.Close()
		if err := safetensors.WriteFile(p, edit(ts), nil); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	const victim = "decoder.up_blocks.1.resnets.0.conv1.weight"
	cases := []struct {
		name string
		dir  func(t *testing.T) string
		opts export.Options
		want string
	}{
		{"missing tensor", func(t *testing.T) string {
			return write(t, func(ts []safetensors.Tensor) []safetensors.Tensor {
				return slices.DeleteFunc(ts, func(x safetensors.Tensor) bool { return x.Name == victim })
			})
		}, export.Options{}, victim},
		{"wrong shape", func(t *testing.T) string {
			return write(t, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == victim {
						ts[i].Shape = []int{ts[i].Shape[0], ts[i].Shape[1], 1, 9}
					}
				}
				return ts
			})
		}, export.Options{}, "has shape [8 16 1 9], config says [8 16 3 3]"},
		{"bad config", func(t *testing.T) string {
			dir := write(t, nil)
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"block_out_channels": [6], "norm_num_groups": 4}`), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, export.Options{}, "norm_num_groups"},
		{"no weights", func(t *testing.T) string {
			dir := write(t, nil)
			os.Remove(filepath.Join(dir, vae.WeightFiles[0]))
			return dir
		}, export.Options{}, "diffusion_pytorch_model.safetensors"},
		{"opset", func(t *testing.T) string { return write(t, nil) }, export.Options{Opset: 12}, "opset 12"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := export.ExportVAE(tc.dir(t), t.TempDir(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if tc.name == "missing tensor" && !errors.Is(err, safetensors.ErrNotFound) {
				t.Errorf("err = %v, want it to wrap safetensors.ErrNotFound", err)
			}
		})
	}
}

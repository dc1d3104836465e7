package vae

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// torchTol is the largest absolute difference allowed between this package and the PyTorch
// reference (scripts/fixtures/vae_torch.py) on every output element.
const torchTol = 1e-4

var fixtures = []string{"vae-tiny", "vae-lpb2", "vae-rect"}

func fixtureDir(name string) string { return filepath.Join("..", "..", "testdata", "models", name) }

// reference reads one tensor of a fixture's reference.safetensors.
func reference(t *testing.T, f *safetensors.File, name string) ([]float32, []int) {
	t.Helper()
	v, shape, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v, shape
}

// compare fails t when got and want differ by more than tol anywhere, printing max abs and rel
// error and the first mismatching indices.
func compare(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	var maxAbs, maxRel float64
	var bad []string
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		maxAbs = max(maxAbs, d)
		if w := math.Abs(float64(want[i])); w > 1e-3 {
			maxRel = max(maxRel, d/w)
		}
		if !(d <= tol) && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("[%d] got %g want %g", i, got[i], want[i]))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: max abs %.3g, max rel %.3g (abs tol %g); first mismatches: %s", what, maxAbs, maxRel, tol, strings.Join(bad, ", "))
		return
	}
	t.Logf("%s: max abs %.3g, max rel %.3g over %d values", what, maxAbs, maxRel, len(want))
}

func TestMatchesPyTorch(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			dir := fixtureDir(name)
			m, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			img, is := reference(t, ref, "image")
			mean, logvar, err := m.Encode(img, is[0], is[1], is[2], is[3])
			if err != nil {
				t.Fatal(err)
			}
			want, _ := reference(t, ref, "logvar")
			compare(t, "logvar", logvar, want, torchTol)
			want, ms := reference(t, ref, "mean")
			if f := m.Config().DownsampleFactor(); ms[2] != is[2]/f || ms[3] != is[3]/f {
				t.Fatalf("reference mean shape %v does not match image %v / f=%d", ms, is, f)
			}
			compare(t, "mean", mean, want, torchTol)

			z, zs := reference(t, ref, "latent")
			dec, err := m.Decode(z, zs[0], zs[1], zs[2], zs[3])
			if err != nil {
				t.Fatal(err)
			}
			want, _ = reference(t, ref, "decoded")
			compare(t, "decoded", dec, want, torchTol)
		})
	}
}

func TestConfig(t *testing.T) {
	m, err := Load(fixtureDir("vae-lpb2"))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config()
	if c.DownsampleFactor() != 4 || c.LatentChannels != 4 || c.InChannels != 3 || c.OutChannels != 3 ||
		c.LayersPerBlock != 2 || c.ScalingFactor != 0.18215 {
		t.Fatalf("config %+v, f=%d", c, c.DownsampleFactor())
	}
}

func TestBadInput(t *testing.T) {
	m, err := Load(fixtureDir("vae-tiny")) // in 3, latent 4, f 2
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		b, c, h, w int
		n          int
		wantMsg    string
	}{
		{"wrong channels", 1, 4, 8, 8, 256, "4 channels, model takes 3"},
		{"not a multiple of f", 1, 3, 7, 8, 168, "multiples of the downsampling factor 2"},
		{"short data", 1, 3, 8, 8, 100, "has 100 values"},
		{"zero batch", 0, 3, 8, 8, 0, "non-positive"},
	} {
		_, _, err := m.Encode(make([]float32, tc.n), tc.b, tc.c, tc.h, tc.w)
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("Encode %s: error %v, want ErrInvalidInput mentioning %q", tc.name, err, tc.wantMsg)
		}
	}
	for _, tc := range []struct {
		name       string
		b, l, h, w int
		n          int
		wantMsg    string
	}{
		{"wrong latent channels", 1, 3, 4, 4, 48, "3 channels, model takes 4"},
		{"short latent", 1, 4, 4, 4, 63, "has 63 values"},
	} {
		_, err := m.Decode(make([]float32, tc.n), tc.b, tc.l, tc.h, tc.w)
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("Decode %s: error %v, want ErrInvalidInput mentioning %q", tc.name, err, tc.wantMsg)
		}
	}
}

// rewrite copies fixture vae-tiny to a temporary directory, passing its tensors through edit
// (which may drop, reshape or change them) and its config through editCfg.
func rewrite(t *testing.T, edit func([]safetensors.Tensor) []safetensors.Tensor, editCfg func(string) string) string {
	t.Helper()
	src := fixtureDir("vae-tiny")
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(editCfg(string(cfg))), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(src, "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		v, shape, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: shape, F32: v})
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), edit(ts), nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func same[T any](x T) T { return x }

func TestLoadErrors(t *testing.T) {
	const conv1 = "encoder.down_blocks.0.resnets.0.conv1.weight"
	for _, tc := range []struct {
		name    string
		edit    func([]safetensors.Tensor) []safetensors.Tensor
		cfg     func(string) string
		target  error
		wantMsg string
	}{
		{"missing tensor", func(ts []safetensors.Tensor) []safetensors.Tensor {
			var out []safetensors.Tensor
			for _, x := range ts {
				if x.Name != conv1 {
					out = append(out, x)
				}
			}
			return out
		}, same[string], ErrMissingWeights, conv1},
		{"wrong shape", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == conv1 {
					ts[i].Shape = []int{ts[i].Shape[0] * 9, ts[i].Shape[1], 1, 1}
				}
			}
			return ts
		}, same[string], ErrInvalidWeights, conv1},
		{"NaN weight", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == conv1 {
					ts[i].F32[5] = float32(math.NaN())
				}
			}
			return ts
		}, same[string], ErrInvalidWeights, conv1},
		{"config wider than weights", same[[]safetensors.Tensor], func(s string) string {
			return strings.Replace(s, `"latent_channels": 4`, `"latent_channels": 8`, 1)
		}, ErrInvalidWeights, "encoder.conv_out.weight"},
		{"groups do not divide channels", same[[]safetensors.Tensor], func(s string) string {
			return strings.Replace(s, `"norm_num_groups": 4`, `"norm_num_groups": 3`, 1)
		}, ErrInvalidConfig, "norm_num_groups 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(rewrite(t, tc.edit, tc.cfg))
			if !errors.Is(err, tc.target) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Load: error %v, want %v mentioning %q", err, tc.target, tc.wantMsg)
			}
			t.Log(err)
		})
	}

	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("Load of an empty directory: error %v, want one naming config.json", err)
	}
	dir := rewrite(t, same[[]safetensors.Tensor], same[string])
	if err := os.Remove(filepath.Join(dir, "diffusion_pytorch_model.safetensors")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, ErrMissingWeights) {
		t.Errorf("Load without weights: error %v, want ErrMissingWeights", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("Load of a corrupt model.safetensors: error %v, want one naming the file", err)
	} else {
		t.Log(err)
	}
}

// TestLegacyAttentionNames loads vae-tiny with the attention weights renamed to diffusers' old
// query/key/value/proj_attn names and checks that it decodes exactly as before.
func TestLegacyAttentionNames(t *testing.T) {
	old := map[string]string{"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
	dir := rewrite(t, func(ts []safetensors.Tensor) []safetensors.Tensor {
		for i := range ts {
			for n, o := range old {
				if strings.Contains(ts[i].Name, ".attentions.0."+n+".") {
					ts[i].Name = strings.Replace(ts[i].Name, n, o, 1)
				}
			}
		}
		return ts
	}, same[string])
	legacy, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(fixtureDir("vae-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	z := make([]float32, 4*3*5)
	for i := range z {
		z[i] = float32(i%7) - 3
	}
	a, err := m.Decode(z, 1, 4, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := legacy.Decode(z, 1, 4, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	// Not bit-exact: a product split over workers may add its partial sums in a different order
	// from run to run. A misbound weight moves the output by far more than this.
	const rerunTol = 1e-5
	compare(t, "legacy names", b, a, rerunTol)
}

func TestNewRandom(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BlockOutChannels = []int{32, 64}
	cfg.NormNumGroups = 8
	m, err := NewRandom(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	mean, logvar, err := m.Encode(make([]float32, 3*8*6), 1, 3, 8, 6)
	if err != nil {
		t.Fatal(err)
	}
	if len(mean) != 4*4*3 || len(logvar) != len(mean) {
		t.Fatalf("mean %d, logvar %d values, want %d", len(mean), len(logvar), 4*4*3)
	}
	cfg.NormNumGroups = 5
	if _, err := NewRandom(cfg, 1); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewRandom with 5 groups over 32 channels: error %v, want ErrInvalidConfig", err)
	}
}

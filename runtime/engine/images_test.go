package engine

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/runtime/latent"
	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

const vaeTiny = "../../testdata/models/vae-tiny"

// vaeTol bounds |native − PyTorch| on vae-tiny's reference tensors.
const vaeTol = 1e-4

// compareClose reports the max abs error of got against want and the first index beyond tol.
func compareClose(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	maxAbs, first := 0.0, -1
	for i := range got {
		d := math.Abs(float64(got[i] - want[i]))
		maxAbs = max(maxAbs, d)
		if (d > tol || math.IsNaN(d)) && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		t.Errorf("%s: max abs error %.3g > %g; first mismatch at %d: got %v, want %v", name, maxAbs, tol, first, got[first], want[first])
	}
}

func numbersVal(v []float32) cty.Value {
	vals := make([]cty.Value, len(v))
	for i, x := range v {
		vals[i] = cty.NumberFloatVal(float64(x))
	}
	return cty.ListVal(vals)
}

// TestVAEStages: infer on a VAE model picks encode or decode from its inputs and matches
// PyTorch; latent.sample draws exactly latent.Sample's z (and the prior latent.Normal's ε/s);
// image.save writes a batch of two as one PNG row.
func TestVAEStages(t *testing.T) {
	ref, err := safetensors.Open(filepath.Join(vaeTiny, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	get := func(name string) []float32 {
		v, _, err := ref.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	abs, err := filepath.Abs(vaeTiny)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "decoded.png")
	cfg := load(t, fmt.Sprintf(`
backend "native" {
  plugin = "modelrt-native"
}
model "vae" {
  backend = backend.native
  path    = %q
  task    = "vae"
}
pipeline "p" {
  input "image" {
    type = list(number)
  }
  input "latent" {
    type = list(number)
  }
  stage "enc" {
    use   = "infer"
    model = model.vae
    inputs = {
      image = { dtype = "float32", shape = [2, 3, 16, 16], data = input.image }
    }
  }
  stage "dec" {
    use   = "infer"
    model = model.vae
    inputs = {
      latent = { dtype = "float32", shape = [2, 4, 8, 8], data = input.latent }
    }
  }
  stage "post" {
    use                  = "latent.sample"
    model                = model.vae
    mean                 = stage.enc.outputs["mean"]
    logvar               = stage.enc.outputs["logvar"]
    seed                 = 5
    apply_scaling_factor = true
  }
  stage "prior" {
    use                  = "latent.sample"
    model                = model.vae
    shape                = [1, 4, 2, 3]
    seed                 = 7
    apply_scaling_factor = true
  }
  stage "dec_mean" {
    use    = "vae.decode"
    model  = model.vae
    latent = stage.enc.outputs["mean"]
  }
  stage "save" {
    use   = "image.save"
    image = stage.dec_mean.image
    path  = %q
  }
  output "mean" {
    value = stage.enc.outputs["mean"]
  }
  output "logvar" {
    value = stage.enc.outputs["logvar"]
  }
  output "decoded" {
    value = stage.dec.outputs["image"]
  }
  output "post" {
    value = stage.post.latent
  }
  output "prior" {
    value = stage.prior.latent
  }
}
`, abs, out))
	e := newEngine(t, cfg)
	res, err := e.Run(context.Background(), "p", map[string]cty.Value{
		"image": numbersVal(get("image")), "latent": numbersVal(get("latent"))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tensor := func(name string) []float32 {
		tt, err := TensorOf(res.Outputs[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v, err := tt.Float32s()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return v
	}
	mean, logvar := tensor("mean"), tensor("logvar")
	compareClose(t, "mean", mean, get("mean"), vaeTol)
	compareClose(t, "logvar", logvar, get("logvar"), vaeTol)
	compareClose(t, "decoded", tensor("decoded"), get("decoded"), vaeTol)

	const s = 0.18215 // vae-tiny's scaling_factor
	z := latent.Sample(mean, logvar, 5)
	latent.Scale(z, s)
	compareClose(t, "posterior sample", tensor("post"), z, 0)
	eps := latent.Normal(24, 7)
	latent.Unscale(eps, s)
	compareClose(t, "prior sample", tensor("prior"), eps, 0)

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 32 || b.Dy() != 16 {
		t.Errorf("batch of two saved as %v, want one 32x16 row", b)
	}
}

// TestImageLoadEncode: image.load gives (1,3,H,W) in [-1,1], vae.encode accepts it, and an
// image whose size the VAE cannot divide is refused with the factor named.
func TestImageLoadEncode(t *testing.T) {
	abs, err := filepath.Abs(vaeTiny)
	if err != nil {
		t.Fatal(err)
	}
	glyph, err := filepath.Abs("../../examples/pipelines/vae-reconstruct/glyph.png")
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, fmt.Sprintf(`
backend "native" {
  plugin = "modelrt-native"
}
model "vae" {
  backend = backend.native
  path    = %q
  task    = "vae"
}
pipeline "p" {
  input "path" {
    type = string
  }
  stage "load" {
    use  = "image.load"
    path = input.path
  }
  stage "enc" {
    use   = "vae.encode"
    model = model.vae
    image = stage.load.image
  }
  output "image" {
    value = stage.load.image
  }
  output "latent" {
    value = stage.enc.latent
  }
}
`, abs))
	e := newEngine(t, cfg)
	res, err := e.Run(context.Background(), "p", map[string]cty.Value{"path": cty.StringVal(glyph)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := TensorOf(res.Outputs["image"])
	z, _ := TensorOf(res.Outputs["latent"])
	if !slices.Equal(img.Shape, []int64{1, 3, 32, 32}) || !slices.Equal(z.Shape, []int64{1, 4, 16, 16}) {
		t.Errorf("image %v, latent %v", img.Shape, z.Shape)
	}
	v, _ := img.Float32s()
	if lo, hi := slices.Min(v), slices.Max(v); lo < -1 || hi > 1 {
		t.Errorf("image values in [%v, %v], want within [-1, 1]", lo, hi)
	}

	odd := filepath.Join(t.TempDir(), "odd.png")
	f, err := os.Create(odd)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, image15()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = e.Run(context.Background(), "p", map[string]cty.Value{"path": cty.StringVal(odd)}, nil)
	if err == nil || !strings.Contains(err.Error(), "divisible by 2") {
		t.Errorf("15x15 image: %v", err)
	}
}

// TestMatchChannels holds the channel adaptation to a per-pixel naive reference.
func TestMatchChannels(t *testing.T) {
	rgb := []float32{ // (1,3,1,2)
		-1, 1, // R
		0, 1, // G
		1, 1, // B
	}
	gray, err := matchChannels(sdk.FromFloat32([]int64{1, 3, 1, 2}, rgb), 1)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := gray.Float32s()
	want := []float32{lumaR*-1 + lumaG*0 + lumaB*1, 1}
	compareClose(t, "luma", g, want, 1e-6)
	back, err := matchChannels(gray, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := back.Float32s()
	compareClose(t, "gray to rgb", b, []float32{want[0], 1, want[0], 1, want[0], 1}, 0)
	if _, err := matchChannels(sdk.FromFloat32([]int64{1, 2, 1, 1}, []float32{0, 0}), 3); err == nil {
		t.Error("2 → 3 channels: no error")
	}
}

func image15() *image.Gray { return image.NewGray(image.Rect(0, 0, 15, 15)) }

package main

import (
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/runtime/imageio"
	"github.com/modelrt/modelrt/runtime/latent"
	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// vaeTol bounds the difference of latents between backends and against PyTorch (float32
// convolutions summed in different orders).
const vaeTol = 1e-4

// pixelTol bounds the difference of 8-bit PNG pixels decoded from the same latent on two
// backends or against PyTorch: values within vaeTol may round to neighbouring levels.
const pixelTol = 1

// vaeBackends pairs each backend with the directory of the same weights it loads.
var vaeBackends = []struct{ backend, suffix string }{{"native", ""}, {"onnxrt", "-onnx"}}

func vaeFixture(name string) string { return filepath.Join("..", "..", "testdata", "models", name) }

// vaeRef reads tensors of a fixture's reference.safetensors.
func vaeRef(t *testing.T, name string, tensors ...string) ([][]float32, [][]int) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(vaeFixture(name), "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs [][]float32
	var ss [][]int
	for _, n := range tensors {
		v, s, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		vs, ss = append(vs, v), append(ss, s)
	}
	return vs, ss
}

func runVAE(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := modelrt(t, append([]string{"vae"}, args...)...)
	if err != nil {
		t.Fatalf("modelrt vae %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// pngPixels reads a PNG as 8-bit RGBA bytes.
func pngPixels(t *testing.T, path string) (*image.NRGBA, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, err
	}
	out := image.NewNRGBA(img.Bounds())
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			out.Set(x, y, img.At(x, y))
		}
	}
	return out, nil
}

// comparePixels fails when any byte differs by more than tol; it prints the largest difference
// and the first mismatch.
func comparePixels(t *testing.T, what string, got, want *image.NRGBA, tol int) {
	t.Helper()
	if got.Bounds() != want.Bounds() {
		t.Fatalf("%s: bounds %v, want %v", what, got.Bounds(), want.Bounds())
	}
	worst, first := 0, -1
	for i := range want.Pix {
		d := int(got.Pix[i]) - int(want.Pix[i])
		d = max(d, -d)
		worst = max(worst, d)
		if d > tol && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		t.Errorf("%s: max pixel diff %d (tol %d); first at pixel %d channel %d: %d vs %d", what, worst, tol, first/4, first%4, got.Pix[first], want.Pix[first])
	} else {
		t.Logf("%s: max pixel diff %d", what, worst)
	}
}

// gridOf renders a (B,C,H,W) batch the way the CLI writes it (a grid, cols = ceil(sqrt(B))).
func gridOf(t *testing.T, x []float32, shape []int) *image.NRGBA {
	t.Helper()
	p := filepath.Join(t.TempDir(), "want.png")
	if err := writeImages(p, sdk.FromFloat32(int64s(shape), x), 0); err != nil {
		t.Fatal(err)
	}
	img, err := pngPixels(t, p)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func compareLatents(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var worst float64
	first := -1
	for i := range want {
		d := math.Abs(float64(got[i] - want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		worst = max(worst, d)
		if d > tol && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		t.Errorf("%s: max abs err %.3g (tol %g); first mismatch [%d] got %g want %g", what, worst, tol, first, got[first], want[first])
	} else {
		t.Logf("%s: max abs err %.3g", what, worst)
	}
}

// TestVAEDecodeMatchesPyTorch decodes PyTorch's reference latent through both plugins and holds
// the PNG to PyTorch's decoded image.
func TestVAEDecodeMatchesPyTorch(t *testing.T) {
	for _, fx := range []string{"vae-tiny", "vae-rect"} {
		ref, shapes := vaeRef(t, fx, "latent", "decoded")
		dir := t.TempDir()
		lpath := filepath.Join(dir, "latent.safetensors")
		if err := latent.Save(lpath, &latent.File{Shape: [4]int(shapes[0]), Latent: ref[0], Mode: "prior", ScalingFactor: 1}); err != nil {
			t.Fatal(err)
		}
		want := gridOf(t, ref[1], shapes[1])
		for _, b := range vaeBackends {
			out := filepath.Join(dir, b.backend+".png")
			runVAE(t, "decode", lpath, "--model", vaeFixture(fx+b.suffix), "--backend", b.backend, "--out", out)
			got, err := pngPixels(t, out)
			if err != nil {
				t.Fatal(err)
			}
			comparePixels(t, fx+" decode on "+b.backend+" vs PyTorch", got, want, pixelTol)
		}
	}
}

// writePNG stores a (C,H,W) tensor as a PNG and returns the tensor the PNG decodes to (its
// 8-bit quantization).
func writePNG(t *testing.T, path string, x []float32, c, h, w int) []float32 {
	t.Helper()
	img, err := imageio.FromTensor(x, c, h, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := imageio.SavePNG(path, img); err != nil {
		t.Fatal(err)
	}
	q, err := imageio.ToTensor(nil, img, c)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestVAEEncodeAcrossBackends encodes the same PNG batch on both backends: mean and logvar agree
// within vaeTol, and the stored latent is mean + exp(0.5·logvar)·ε of the given seed, scaled
// when asked.
func TestVAEEncodeAcrossBackends(t *testing.T) {
	ref, shapes := vaeRef(t, "vae-tiny", "image")
	s := shapes[0]
	dir := t.TempDir()
	var paths []string
	plane := s[1] * s[2] * s[3]
	for i := range s[0] {
		p := filepath.Join(dir, fmt.Sprintf("img%d.png", i))
		writePNG(t, p, ref[0][i*plane:(i+1)*plane], s[1], s[2], s[3])
		paths = append(paths, p)
	}
	var files []*latent.File
	for _, b := range vaeBackends {
		out := filepath.Join(dir, b.backend+".safetensors")
		args := append([]string{"encode"}, paths...)
		stdout := runVAE(t, append(args, "--model", vaeFixture("vae-tiny"+b.suffix), "--backend", b.backend, "--out", out, "--seed", "5", "--scale")...)
		if !strings.Contains(stdout, "latent [2 4 8 8]") {
			t.Errorf("stdout %q does not name the latent shape", stdout)
		}
		lf, err := latent.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if lf.Shape != [4]int{2, 4, 8, 8} || !lf.Scaled || lf.ScalingFactor != 0.18215 || lf.Seed != 5 || lf.Mode != "sample" {
			t.Errorf("%s: latent file %v scaled %v factor %g seed %d mode %q", b.backend, lf.Shape, lf.Scaled, lf.ScalingFactor, lf.Seed, lf.Mode)
		}
		want := latent.Sample(lf.Mean, lf.Logvar, 5)
		latent.Scale(want, 0.18215)
		compareLatents(t, b.backend+" latent = scaled sample of mean, logvar", lf.Latent, want, 1e-6)
		files = append(files, lf)
	}
	compareLatents(t, "mean native vs onnxrt", files[1].Mean, files[0].Mean, vaeTol)
	compareLatents(t, "logvar native vs onnxrt", files[1].Logvar, files[0].Logvar, vaeTol)

	// decode undoes the scaling recorded in the file: the round trip through a scaled file
	// equals reconstruct with the same seed.
	dec := filepath.Join(dir, "dec.png")
	runVAE(t, "decode", filepath.Join(dir, "native.safetensors"), "--model", vaeFixture("vae-tiny"), "--out", dec)
	rec := filepath.Join(dir, "rec.png")
	runVAE(t, append(append([]string{"reconstruct"}, paths...), "--model", vaeFixture("vae-tiny"), "--out", rec, "--seed", "5")...)
	a, err := pngPixels(t, dec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pngPixels(t, rec)
	if err != nil {
		t.Fatal(err)
	}
	comparePixels(t, "decode(encode --scale) vs reconstruct", a, b, pixelTol)
}

// TestVAEReconstructAndSampleAcrossBackends: reconstruct (mean) of a non-square image, with
// --fit, and prior samples give the same PNGs on both backends.
func TestVAEReconstructAndSampleAcrossBackends(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "odd.png")
	// 18×26 (W×H) is not a multiple of vae-rect's f = 4; --fit takes it down to 16×24.
	x := make([]float32, 3*26*18)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.37))
	}
	writePNG(t, img, x, 3, 26, 18)
	var recs, samples []*image.NRGBA
	for _, b := range vaeBackends {
		rec := filepath.Join(dir, b.backend+"-rec.png")
		runVAE(t, "reconstruct", img, "--model", vaeFixture("vae-rect"+b.suffix), "--backend", b.backend, "--out", rec, "--mode", "mean", "--fit")
		smp := filepath.Join(dir, b.backend+"-sample.png")
		out := runVAE(t, "sample", "--model", vaeFixture("vae-rect"+b.suffix), "--backend", b.backend, "--out", smp, "--n", "3", "--seed", "11")
		if !strings.Contains(out, "3 image(s) 24×24") {
			t.Errorf("sample stdout %q", out)
		}
		for _, p := range []struct {
			path string
			dst  *[]*image.NRGBA
		}{{rec, &recs}, {smp, &samples}} {
			got, err := pngPixels(t, p.path)
			if err != nil {
				t.Fatal(err)
			}
			*p.dst = append(*p.dst, got)
		}
	}
	if recs[0].Bounds() != image.Rect(0, 0, 16, 24) {
		t.Errorf("reconstruction is %v, want 16×24", recs[0].Bounds())
	}
	if samples[0].Bounds() != image.Rect(0, 0, 48, 48) { // 3 images of sample_size 24 in a 2×2 grid
		t.Errorf("sample grid is %v, want 48×48", samples[0].Bounds())
	}
	comparePixels(t, "reconstruct onnxrt vs native", recs[1], recs[0], pixelTol)
	comparePixels(t, "sample onnxrt vs native", samples[1], samples[0], pixelTol)
}

func TestVAEBadInput(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.png")
	os.WriteFile(text, []byte("not an image"), 0o644)
	odd := filepath.Join(dir, "odd.png")
	writePNG(t, odd, make([]float32, 3*9*10), 3, 9, 10)
	// A latent with 5 channels for a 4-channel model.
	wrongC := filepath.Join(dir, "wrongc.safetensors")
	latent.Save(wrongC, &latent.File{Shape: [4]int{1, 5, 2, 2}, Latent: make([]float32, 20), ScalingFactor: 1})
	wrongRank := filepath.Join(dir, "rank.safetensors")
	safetensors.WriteFile(wrongRank, []safetensors.Tensor{{Name: "latent", DType: safetensors.F32, Shape: []int{4, 2, 2}, F32: make([]float32, 16)}}, nil)
	// Corrupt weights: vae-tiny's config with its weights file cut in half.
	corrupt := filepath.Join(dir, "corrupt")
	os.Mkdir(corrupt, 0o755)
	cfg, _ := os.ReadFile(filepath.Join(vaeFixture("vae-tiny"), "config.json"))
	os.WriteFile(filepath.Join(corrupt, "config.json"), cfg, 0o644)
	w, _ := os.ReadFile(filepath.Join(vaeFixture("vae-tiny"), "diffusion_pytorch_model.safetensors"))
	os.WriteFile(filepath.Join(corrupt, "diffusion_pytorch_model.safetensors"), w[:len(w)/2], 0o644)
	// Corrupt ONNX graph.
	badONNX := filepath.Join(dir, "bad-onnx")
	os.MkdirAll(filepath.Join(badONNX, "vae_decoder"), 0o755)
	os.WriteFile(filepath.Join(badONNX, "vae_decoder", "model.onnx"), []byte("garbage"), 0o644)

	tiny, out := vaeFixture("vae-tiny"), filepath.Join(dir, "out.png")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"undecodable image", []string{"encode", text, "--model", tiny, "--out", out}, []string{"notes.png", "cannot decode"}},
		{"size not a multiple", []string{"reconstruct", odd, "--model", tiny, "--out", out}, []string{"odd.png", "10×9", "multiples of its downsampling factor 2"}},
		{"size not a multiple onnxrt", []string{"reconstruct", odd, "--model", tiny + "-onnx", "--backend", "onnxrt", "--out", out}, []string{"odd.png", "10×9"}},
		{"bad --size", []string{"encode", odd, "--model", tiny, "--out", out, "--size", "12by12"}, []string{`--size "12by12"`}},
		{"latent channels", []string{"decode", wrongC, "--model", tiny, "--out", out}, []string{"wrongc.safetensors", "latent has 5 channels, model takes 4"}},
		{"latent channels onnxrt", []string{"decode", wrongC, "--model", tiny + "-onnx", "--backend", "onnxrt", "--out", out}, []string{"wrongc.safetensors", "5 channels", "takes 4"}},
		{"latent rank", []string{"decode", wrongRank, "--model", tiny, "--out", out}, []string{"rank.safetensors", "shape [4 2 2]"}},
		{"not a latent file", []string{"decode", text, "--model", tiny, "--out", out}, []string{"notes.png"}},
		{"corrupt weights", []string{"sample", "--model", corrupt, "--out", out}, []string{"diffusion_pytorch_model.safetensors"}},
		{"corrupt onnx", []string{"sample", "--model", badONNX, "--backend", "onnxrt", "--out", out}, []string{"model.onnx"}},
		{"no out", []string{"sample", "--model", tiny}, []string{"--out"}},
		{"bad mode", []string{"reconstruct", odd, "--model", tiny, "--out", out, "--mode", "median"}, []string{`--mode "median"`}},
		{"missing model", []string{"sample", "--model", filepath.Join(dir, "nosuch"), "--out", out}, []string{"nosuch"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := modelrt(t, append([]string{"vae"}, tc.args...)...)
			if err == nil {
				t.Fatal("succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr = %q, want it to contain %q", stderr, w)
				}
			}
		})
	}
}

// TestExportVAEThenDecode: `modelrt export` of a diffusers directory writes Optimum's split, and
// the onnxrt plugin decodes PyTorch's reference latent with it to PyTorch's image.
func TestExportVAEThenDecode(t *testing.T) {
	ref, shapes := vaeRef(t, "vae-lpb2", "latent", "decoded")
	dir := t.TempDir()
	out := filepath.Join(dir, "onnx")
	if _, stderr, err := modelrt(t, "export", "--model", vaeFixture("vae-lpb2"), "--out", out); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	lpath := filepath.Join(dir, "latent.safetensors")
	if err := latent.Save(lpath, &latent.File{Shape: [4]int(shapes[0]), Latent: ref[0], Mode: "prior", ScalingFactor: 1}); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "decoded.png")
	runVAE(t, "decode", lpath, "--model", out, "--backend", "onnxrt", "--out", png)
	got, err := pngPixels(t, png)
	if err != nil {
		t.Fatal(err)
	}
	comparePixels(t, "vae-lpb2 exported by modelrt, decoded on onnxrt vs PyTorch", got, gridOf(t, ref[1], shapes[1]), pixelTol)
}

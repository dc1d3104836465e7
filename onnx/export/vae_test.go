//go:build cgo

package export_test

import (
	"fmt"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelrt/modelrt/native/vae"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/onnx/internal/orttest"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// vaeAbsTol bounds |ONNX Runtime − reference| for the exported VAE graphs, against PyTorch and
// against native/vae: float32 convolutions and softmax summed in different orders.
const vaeAbsTol = 1e-4

// vaeFixtures are the AutoencoderKL fixtures of testdata/models (scripts/fixtures/vae_fixtures.py).
var vaeFixtures = []string{"vae-tiny", "vae-lpb2", "vae-rect"}

type vaeRef struct {
	image, mean, logvar, latent, decoded []float32
	imageShape, latentShape              []int64
}

func readVAERef(t testing.TB, dir string) *vaeRef {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &vaeRef{}
	get := func(name string) ([]float32, []int64) {
		v, s, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		s64 := make([]int64, len(s))
		for i, d := range s {
			s64[i] = int64(d)
		}
		return v, s64
	}
	r.image, r.imageShape = get("image")
	r.latent, r.latentShape = get("latent")
	r.mean, _ = get("mean")
	r.logvar, _ = get("logvar")
	r.decoded, _ = get("decoded")
	return r
}

// runVAEPart runs one part of Optimum's split on x and returns its only output.
func runVAEPart(t testing.TB, path, in, out string, shape []int64, x []float32) ([]float32, []int64) {
	t.Helper()
	s := orttest.Session(t, path, []string{in}, []string{out})
	outs := orttest.Run(t, s, []ort.Value{orttest.Tensor(t, shape, x)}, 1)
	tt := outs[0].(*ort.Tensor[float32])
	return append([]float32(nil), tt.GetData()...), tt.GetShape()
}

// splitMoments splits latent_parameters (B,2L,h,w) into mean and logvar (B,L,h,w), clamping
// logvar to [-30, 20] as diffusers' DiagonalGaussianDistribution does.
func splitMoments(p []float32, shape []int64) (mean, logvar []float32) {
	b, l2, plane := int(shape[0]), int(shape[1]), int(shape[2]*shape[3])
	l := l2 / 2
	for i := range b {
		row := p[i*l2*plane : (i+1)*l2*plane]
		mean = append(mean, row[:l*plane]...)
		for _, v := range row[l*plane:] {
			logvar = append(logvar, min(max(v, -30), 20))
		}
	}
	return mean, logvar
}

// TestExportVAEMatchesPyTorchAndNative exports every fixture with ExportVAE, runs both graphs in
// ONNX Runtime, and holds mean, logvar and the decoded image to the PyTorch reference and to
// native/vae on the same directory.
func TestExportVAEMatchesPyTorchAndNative(t *testing.T) {
	orttest.Init(t)
	for _, name := range vaeFixtures {
		for _, opset := range []int{14, 17} {
			src := fixtureDir(name)
			out := t.TempDir()
			if err := export.ExportVAE(src, out, export.Options{Opset: opset}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ref := readVAERef(t, src)
			params, pshape := runVAEPart(t, filepath.Join(out, export.VAEEncoderDir, export.ModelFile),
				export.VAEEncoderInput, export.VAEEncoderOutput, ref.imageShape, ref.image)
			mean, logvar := splitMoments(params, pshape)
			img, _ := runVAEPart(t, filepath.Join(out, export.VAEDecoderDir, export.ModelFile),
				export.VAEDecoderInput, export.VAEDecoderOutput, ref.latentShape, ref.latent)
			tag := fmt.Sprintf("%s/opset%d", name, opset)
			compareFloats(t, tag+" mean vs PyTorch", mean, ref.mean, vaeAbsTol)
			compareFloats(t, tag+" logvar vs PyTorch", logvar, ref.logvar, vaeAbsTol)
			compareFloats(t, tag+" decoded vs PyTorch", img, ref.decoded, vaeAbsTol)

			m, err := vae.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			s := ref.imageShape
			nm, nl, err := m.Encode(ref.image, int(s[0]), int(s[1]), int(s[2]), int(s[3]))
			if err != nil {
				t.Fatal(err)
			}
			l := ref.latentShape
			ni, err := m.Decode(ref.latent, int(l[0]), int(l[1]), int(l[2]), int(l[3]))
			if err != nil {
				t.Fatal(err)
			}
			compareFloats(t, tag+" mean vs native", mean, nm, vaeAbsTol)
			compareFloats(t, tag+" logvar vs native", logvar, nl, vaeAbsTol)
			compareFloats(t, tag+" decoded vs native", img, ni, vaeAbsTol)
		}
	}
}

// TestExportRandomVAEMatchesNative: WriteRandomVAE's directory loads natively and exports to
// graphs that agree with native/vae (the benchmark's setup, at a small size), for a config
// without quant convs or attention too.
func TestExportRandomVAEMatchesNative(t *testing.T) {
	orttest.Init(t)
	cfg := vae.DefaultConfig()
	cfg.BlockOutChannels = []int{8, 16}
	cfg.NormNumGroups = 4
	plain := cfg
	plain.UseQuantConv, plain.UsePostQuantConv, plain.MidBlockAddAttention = false, false, false
	for i, c := range []vae.Config{cfg, plain} {
		src, out := t.TempDir(), t.TempDir()
		if err := export.WriteRandomVAE(src, c, 7); err != nil {
			t.Fatal(err)
		}
		if err := export.ExportVAE(src, out, export.Options{}); err != nil {
			t.Fatal(err)
		}
		m, err := vae.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		img := make([]float32, 3*8*12)
		for j := range img {
			img[j] = float32(j%17)/8 - 1
		}
		nm, nl, err := m.Encode(img, 1, 3, 8, 12)
		if err != nil {
			t.Fatal(err)
		}
		params, pshape := runVAEPart(t, filepath.Join(out, export.VAEEncoderDir, export.ModelFile),
			export.VAEEncoderInput, export.VAEEncoderOutput, []int64{1, 3, 8, 12}, img)
		mean, logvar := splitMoments(params, pshape)
		compareFloats(t, "random mean", mean, nm, vaeAbsTol)
		compareFloats(t, "random logvar", logvar, nl, vaeAbsTol)
		ni, err := m.Decode(nm, 1, 4, 4, 6)
		if err != nil {
			t.Fatal(err)
		}
		img2, _ := runVAEPart(t, filepath.Join(out, export.VAEDecoderDir, export.ModelFile),
			export.VAEDecoderInput, export.VAEDecoderOutput, []int64{1, 4, 4, 6}, nm)
		compareFloats(t, "random decoded", img2, ni, vaeAbsTol)
		if i == 1 && len(ni) != 3*8*12 {
			t.Errorf("decoded %d values", len(ni))
		}
	}
}

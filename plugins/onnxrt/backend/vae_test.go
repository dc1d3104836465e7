package backend_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/internal/plugintest"
	"github.com/modelrt/modelrt/native/vae"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// vaeAbsTol bounds |plugin − PyTorch| for mean, logvar and decoded images: float32 convolutions
// summed in different orders.
const vaeAbsTol = 1e-4

// pluginPath is the modelrt-onnxrt binary TestMain builds: the tests talk to the real plugin
// process over gRPC, as the CLI does.
var pluginPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "onnxrt-plugin-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginPath, err = plugintest.ONNXRT.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if bench124M.dir != "" { // the 124M graph of the LM benchmarks (lm_bench_test.go), ~0.5 GB
		os.RemoveAll(bench124M.dir)
	}
	os.Exit(code)
}

func startPlugin(t *testing.T) *plugin.Plugin {
	t.Helper()
	p, err := plugin.Start(context.Background(), plugin.Config{Name: "onnxrt", Path: pluginPath, LogLevel: "warn"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func fixture(name string) string { return filepath.Join("..", "..", "..", "testdata", "models", name) }

type tensorRef struct {
	v     []float32
	shape []int64
}

func readRef(t *testing.T, dir string) map[string]tensorRef {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]tensorRef{}
	for _, n := range f.Names() {
		v, s, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		s64 := make([]int64, len(s))
		for i, d := range s {
			s64[i] = int64(d)
		}
		out[n] = tensorRef{v, s64}
	}
	return out
}

func infer(t *testing.T, p *plugin.Plugin, model, task, input string, x tensorRef) (map[string]*sdk.Tensor, error) {
	t.Helper()
	r, err := p.Infer(context.Background(), &sdk.InferRequest{Model: model, Params: map[string]string{sdk.ParamTask: task},
		Inputs: map[string]*sdk.Tensor{input: sdk.FromFloat32(x.shape, x.v)}})
	if err != nil {
		return nil, err
	}
	return r.Outputs, nil
}

func compare(t *testing.T, what string, got *sdk.Tensor, want tensorRef, tol float64) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: missing output", what)
	}
	if fmt.Sprint(got.Shape) != fmt.Sprint(want.shape) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.shape)
	}
	v, err := got.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	var maxAbs, maxRel float64
	first := -1
	for i := range want.v {
		d := math.Abs(float64(v[i]) - float64(want.v[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		maxAbs = max(maxAbs, d)
		if w := math.Abs(float64(want.v[i])); w > 0 {
			maxRel = max(maxRel, d/w)
		}
		if d > tol && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		t.Errorf("%s: max abs err %.3g (tol %g), max rel err %.3g; first mismatch [%d] got %g want %g", what, maxAbs, tol, maxRel, first, v[first], want.v[first])
	} else {
		t.Logf("%s: max abs err %.3g, max rel err %.3g", what, maxAbs, maxRel)
	}
}

// TestVAEMatchesPyTorch loads torch.onnx.export's split (scripts/fixtures/vae_onnx.py) and
// ExportVAE's split of the same weights into the real plugin, and holds vae-encode and
// vae-decode to the PyTorch reference.
func TestVAEMatchesPyTorch(t *testing.T) {
	p := startPlugin(t)
	for _, name := range []string{"vae-tiny", "vae-rect"} {
		exported := t.TempDir()
		if err := export.ExportVAE(fixture(name), exported, export.Options{}); err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct{ by, dir string }{{"torch.onnx", fixture(name + "-onnx")}, {"ExportVAE", exported}} {
			dir, tag := v.dir, name+" by "+v.by
			r, err := p.LoadModel(context.Background(), &sdk.LoadModelRequest{Name: tag, Path: dir})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := vae.ReadConfig(filepath.Join(fixture(name), "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			meta := r.Model.Metadata
			if r.Model.Task != sdk.TaskVAE || meta["latent_channels"] != fmt.Sprint(cfg.LatentChannels) ||
				meta["downsample_factor"] != fmt.Sprint(cfg.DownsampleFactor()) || meta["scaling_factor"] != "0.18215" {
				t.Errorf("%s: task %q metadata %v", tag, r.Model.Task, meta)
			}
			ref := readRef(t, fixture(name))
			out, err := infer(t, p, tag, sdk.TaskVAEEncode, "image", ref["image"])
			if err != nil {
				t.Fatal(err)
			}
			compare(t, tag+" mean", out["mean"], ref["mean"], vaeAbsTol)
			compare(t, tag+" logvar", out["logvar"], ref["logvar"], vaeAbsTol)
			out, err = infer(t, p, tag, sdk.TaskVAEDecode, "latent", ref["latent"])
			if err != nil {
				t.Fatal(err)
			}
			compare(t, tag+" decoded", out["image"], ref["decoded"], vaeAbsTol)
		}
	}
}

// TestVAELogvarClamped: the graphs return logvar unclamped (as Optimum's do); the plugin clamps
// it to [-30, 20] like diffusers. quant_conv's logvar biases are pushed to ±100 so that every
// logvar value lies outside the range.
func TestVAELogvarClamped(t *testing.T) {
	src := fixture("vae-tiny")
	f, err := safetensors.Open(filepath.Join(src, "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		v, s, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "quant_conv.bias" { // (2L): mean biases, then logvar biases
			v = append([]float32(nil), v...)
			for i := len(v) / 2; i < len(v); i++ {
				v[i] = float32(100 * (2*(i%2) - 1)) // +100 and -100 alternately
			}
		}
		ts = append(ts, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: s, F32: v})
	}
	f.Close()
	mod, out := t.TempDir(), t.TempDir()
	cfg, _ := os.ReadFile(filepath.Join(src, "config.json"))
	os.WriteFile(filepath.Join(mod, "config.json"), cfg, 0o644)
	if err := safetensors.WriteFile(filepath.Join(mod, vae.WeightFiles[0]), ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := export.ExportVAE(mod, out, export.Options{}); err != nil {
		t.Fatal(err)
	}
	p := startPlugin(t)
	if _, err := p.LoadModel(context.Background(), &sdk.LoadModelRequest{Name: "v", Path: out, Task: sdk.TaskVAE}); err != nil {
		t.Fatal(err)
	}
	ref := readRef(t, src)
	res, err := infer(t, p, "v", sdk.TaskVAEEncode, "image", ref["image"])
	if err != nil {
		t.Fatal(err)
	}
	lv, _ := res["logvar"].Float32s()
	plane := 8 * 8
	for i, v := range lv {
		c := i / plane % 4
		if want := []float32{-30, 20}[(4+c)%2]; v != want {
			t.Fatalf("logvar[%d] (channel %d) = %g, want %g", i, c, v, want)
		}
	}
	// The mean half is untouched: it equals the reference mean.
	compare(t, "mean beside clamped logvar", res["mean"], ref["mean"], vaeAbsTol)
}

// TestVAEBadInput: wrong shapes and a missing part are errors with the right code and a message
// naming the problem.
func TestVAEBadInput(t *testing.T) {
	p := startPlugin(t)
	ctx := context.Background()
	if _, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: "tiny", Path: fixture("vae-tiny-onnx")}); err != nil {
		t.Fatal(err)
	}
	decOnly := t.TempDir()
	os.MkdirAll(filepath.Join(decOnly, "vae_decoder"), 0o755)
	for _, f := range []string{"model.onnx", "config.json"} {
		data, err := os.ReadFile(filepath.Join(fixture("vae-tiny-onnx"), "vae_decoder", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(decOnly, "vae_decoder", f), data, 0o644)
	}
	if _, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: "dec", Path: decOnly}); err != nil {
		t.Fatal(err)
	}
	badGraph := t.TempDir()
	os.MkdirAll(filepath.Join(badGraph, "vae_encoder"), 0o755)
	os.WriteFile(filepath.Join(badGraph, "vae_encoder", "model.onnx"), []byte("not protobuf"), 0o644)
	if _, err := p.LoadModel(ctx, &sdk.LoadModelRequest{Name: "bad", Path: badGraph, Task: sdk.TaskVAE}); err == nil ||
		!strings.Contains(err.Error(), "model.onnx") {
		t.Errorf("garbage vae_encoder/model.onnx: %v, want an error naming model.onnx", err)
	}
	cases := []struct {
		name, model, task, input string
		shape                    []int64
		code                     sdk.Code
		want                     string
	}{
		{"latent channels", "tiny", sdk.TaskVAEDecode, "latent", []int64{1, 5, 2, 2}, sdk.CodeInvalidArgument, "5 channels"},
		{"image rank", "tiny", sdk.TaskVAEEncode, "image", []int64{3, 16, 16}, sdk.CodeInvalidArgument, "shape [3 16 16]"},
		{"image channels", "tiny", sdk.TaskVAEEncode, "image", []int64{1, 4, 16, 16}, sdk.CodeInvalidArgument, "4 channels"},
		{"no encoder", "dec", sdk.TaskVAEEncode, "image", []int64{1, 3, 16, 16}, sdk.CodeUnimplemented, "vae_encoder"},
		{"wrong input name", "tiny", sdk.TaskVAEDecode, "image", []int64{1, 4, 2, 2}, sdk.CodeInvalidArgument, `"latent" is missing`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := int64(1)
			for _, d := range tc.shape {
				n *= d
			}
			_, err := infer(t, p, tc.model, tc.task, tc.input, tensorRef{make([]float32, n), tc.shape})
			if sdk.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v (code %v), want code %v and %q", err, sdk.CodeOf(err), tc.code, tc.want)
			}
		})
	}
}

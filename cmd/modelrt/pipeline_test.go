package main

import (
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

const examples = "../../examples/pipelines/"

// runOutput is the part of `modelrt run --output json` the tests read.
type runOutput struct {
	Pipeline string         `json:"pipeline"`
	Outputs  map[string]any `json:"outputs"`
	TotalMS  float64        `json:"total_ms"`
	Stages   []struct {
		Stage           string  `json:"stage"`
		Use             string  `json:"use"`
		StartMS         float64 `json:"start_ms"`
		DurationMS      float64 `json:"duration_ms"`
		GeneratedTokens int     `json:"generated_tokens"`
	} `json:"stages"`
}

// runJSONOut runs a pipeline with --output json and decodes the result.
func runJSONOut(t *testing.T, args ...string) runOutput {
	t.Helper()
	out, stderr, err := modelrt(t, append(append([]string{"run"}, args...), "--output", "json")...)
	if err != nil {
		t.Fatalf("modelrt run %v: %v\n%s", args, err, stderr)
	}
	var r runOutput
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	for _, s := range r.Stages {
		if s.DurationMS <= 0 || s.StartMS < 0 || s.StartMS > r.TotalMS {
			t.Errorf("stage %s timing start %.3fms, duration %.3fms of %.3fms", s.Stage, s.StartMS, s.DurationMS, r.TotalMS)
		}
	}
	return r
}

// checkPNG asserts that path is a PNG of the given size.
func checkPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("%s is %dx%d, want %dx%d", path, b.Dx(), b.Dy(), w, h)
	}
}

// exportONNX writes gpt2-tiny as an ONNX model with past inputs and its tokenizer files.
func exportONNX(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, stderr, err := modelrt(t, "export", "--model", "../../testdata/models/gpt2-tiny", "--out", dir, "--with-past"); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	return dir
}

// TestExamplesValidate: every example directory validates against the real plugins' schemas.
func TestExamplesValidate(t *testing.T) {
	onnx := exportONNX(t)
	entries, err := os.ReadDir(examples)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, examples+e.Name())
		}
	}
	if len(dirs) < 6 {
		t.Fatalf("examples: %v", dirs)
	}
	for _, d := range dirs {
		args := []string{"validate", d}
		if filepath.Base(d) == "complete-onnxrt" {
			args = append(args, "-var", "model_dir="+onnx)
		}
		out, stderr, err := modelrt(t, args...)
		if err != nil || !strings.Contains(out, "valid") {
			t.Errorf("validate %s: %v\n%s%s", d, err, out, stderr)
		}
	}
}

// TestExampleCompleteNative runs the native completion example in both output modes: the
// streamed text is the continuation that the outputs report.
func TestExampleCompleteNative(t *testing.T) {
	r := runJSONOut(t, examples+"complete-native", "--input", "prompt=Once upon a time", "-var", "max_new_tokens=12")
	text, _ := r.Outputs["text"].(string)
	if !strings.HasPrefix(text, "Once upon a time") || len(text) <= len("Once upon a time") || r.Outputs["new_tokens"] != 12.0 {
		t.Errorf("outputs = %v", r.Outputs)
	}
	if len(r.Stages) != 3 || r.Stages[1].Use != "generate" || r.Stages[1].GeneratedTokens != 12 {
		t.Errorf("stages = %+v", r.Stages)
	}
	// Text mode: the continuation streams first, then the outputs; timings go to stderr.
	out, stderr, err := modelrt(t, "run", examples+"complete-native", "--input", "prompt=Once upon a time", "-var", "max_new_tokens=12")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	cont := strings.TrimPrefix(text, "Once upon a time")
	if want := "── stage gen (streaming) ──\n" + cont + "\n\n── outputs ──\ntext: " + text + "\nnew_tokens: 12\n"; out != want {
		t.Errorf("stdout = %q\nwant     %q", out, want)
	}
	if !strings.Contains(stderr, "loaded model gpt2 (1/1)") || !strings.Contains(stderr, "pipeline complete:") {
		t.Errorf("stderr lacks progress or timings:\n%s", stderr)
	}
}

// TestExampleDefault runs the pipeline `make run` uses.
func TestExampleDefault(t *testing.T) {
	grid := filepath.Join(t.TempDir(), "images.png")
	r := runJSONOut(t, examples+"default", "-var", "max_new_tokens=8", "--input", "grid="+grid)
	if r.Outputs["images"] != grid {
		t.Errorf("images output %v, want %s", r.Outputs["images"], grid)
	}
	checkPNG(t, grid, 4*64, 4*64)
	code, _ := r.Outputs["code"].(string)
	if !strings.HasPrefix(code, "package main\n\nimport \"fmt\"\n\nfunc main() {\n") || r.Stages[0].GeneratedTokens == 0 {
		t.Errorf("outputs = %v, stages = %+v", r.Outputs, r.Stages)
	}
}

// TestExampleCompleteONNX runs the onnxrt example on modelrt's own export of gpt2-tiny and holds
// its greedy text to the native backend's greedy text on the same weights; its logits pipeline
// runs raw tensors through a graph.
func TestExampleCompleteONNX(t *testing.T) {
	onnx := exportONNX(t)
	const prompt = "Hello, world"
	r := runJSONOut(t, examples+"complete-onnxrt", "-var", "model_dir="+onnx, "--pipeline", "complete",
		"--input", "prompt="+prompt, "--input", "max_new_tokens=10")
	out, stderr, err := modelrt(t, "generate", "--model", "../../testdata/models/gpt2-tiny", "--prompt", prompt,
		"--temperature", "0", "--max-new-tokens", "10", "--stop", "\n\n", "--json")
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, stderr)
	}
	var native struct{ Text string }
	if err := json.Unmarshal([]byte(out), &native); err != nil {
		t.Fatal(err)
	}
	if got := r.Outputs["text"]; got != prompt+native.Text {
		t.Errorf("onnxrt pipeline text %q\nnative generate    %q", got, prompt+native.Text)
	}

	// The logits pipeline on a row of the graph's PyTorch reference whose mask is all ones.
	ref, err := safetensors.Open("../../testdata/models/gpt2-odd-onnx-nocache-op14/reference.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	ids, shape, err := ref.Int64("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	mask, _, _ := ref.Int64("attention_mask")
	want, _, err := ref.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	T, V := shape[1], 384
	row := -1
	for b := range shape[0] {
		if !slices.Contains(mask[b*T:(b+1)*T], 0) {
			row = b
			break
		}
	}
	if row < 0 {
		t.Fatal("reference has no unpadded row")
	}
	idsArg := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(ids[row*T:(row+1)*T])), ", "), "[]")
	r = runJSONOut(t, examples+"complete-onnxrt", "-var", "model_dir="+onnx, "--pipeline", "logits", "--input", "ids=["+idsArg+"]")
	lg, _ := r.Outputs["logits"].(map[string]any)
	if lg["kind"] != "tensor" || lg["dtype"] != "float32" || fmt.Sprint(lg["shape"]) != fmt.Sprintf("[1 %d %d]", T, V) {
		t.Fatalf("logits = %v %v %v", lg["kind"], lg["dtype"], lg["shape"])
	}
	data, _ := lg["data"].([]any)
	if len(data) != T*V {
		t.Fatalf("logits data has %d values, want %d", len(data), T*V)
	}
	maxAbs, first := 0.0, -1
	for i, x := range data {
		d := math.Abs(x.(float64) - float64(want[row*T*V+i]))
		maxAbs = max(maxAbs, d)
		if d > logitsTol && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		t.Errorf("infer logits vs PyTorch: max abs error %.3g > %g; first mismatch at position %d, token %d", maxAbs, logitsTol, first/V, first%V)
	}
}

// logitsTol bounds |ONNX Runtime − PyTorch| on the logits of the gpt2-odd graph (float32, the
// difference is summation order), after a round trip through JSON's shortest float text.
const logitsTol = 1e-4

// TestExampleVAE runs the VAE reconstruction and prior sampling examples and the text-and-image
// chain on the demo models (the glyph VAE downsamples by 8); each writes PNGs of the expected
// size.
func TestExampleVAE(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec.png")
	r := runJSONOut(t, examples+"vae-reconstruct", "--input", "out="+rec)
	if r.Outputs["path"] != rec {
		t.Errorf("path = %v, want %s", r.Outputs["path"], rec)
	}
	checkPNG(t, rec, 32, 32)
	if lt, _ := r.Outputs["latent"].(map[string]any); fmt.Sprint(lt["shape"]) != "[1 4 4 4]" {
		t.Errorf("latent = %v", lt)
	}

	prior := filepath.Join(dir, "prior.png")
	runJSONOut(t, examples+"vae-prior", "--input", "out="+prior, "--input", "seed=7", "-var", "latent_size=[4, 6]")
	checkPNG(t, prior, 48, 32)

	chain, chainRec := filepath.Join(dir, "chain.png"), filepath.Join(dir, "chain-rec.png")
	r = runJSONOut(t, examples+"text-image-chain", "--input", "out="+chain, "--input", "reconstruction="+chainRec)
	if c, _ := r.Outputs["caption"].(string); !strings.HasPrefix(c, "func main() {") || r.Outputs["image"] != chain {
		t.Errorf("outputs = %v", r.Outputs)
	}
	checkPNG(t, chain, 32, 32)
	checkPNG(t, chainRec, 32, 32)
}

// writeConfig writes an HCL configuration into a temp directory and returns its path; GPT2 in
// src becomes the absolute gpt2-tiny directory.
func writeConfig(t *testing.T, src string) string {
	t.Helper()
	abs, err := filepath.Abs("../../testdata/models/gpt2-tiny")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pipeline.hcl")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(src, "GPT2", abs)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodConfig = `backend "native" {
  plugin = "modelrt-native"
}
model "gpt2" {
  backend = backend.native
  path    = "GPT2"
  task    = "causal-lm"
}
pipeline "p" {
  input "prompt" {
    type = string
  }
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = input.prompt
    max_new_tokens = 2
  }
  output "text" {
    value = stage.gen.text
  }
}
`

// TestPipelineBadInput: each problem is reported through the CLI with exit status 1, its
// summary, and the file:line:col of the offending text.
func TestPipelineBadInput(t *testing.T) {
	cases := []struct {
		name string
		verb string
		src  string // a replacement applied to goodConfig: "old|new"
		args []string
		want []string // substrings of stderr; "FILE" is the configuration's path
	}{
		{"syntax", "validate", "max_new_tokens = 2|max_new_tokens = = 2", nil,
			[]string{"Invalid expression", "FILE:17:22: error"}},
		{"unknown attribute", "validate", "max_new_tokens = 2|max_tokens = 2", nil,
			[]string{"Unsupported argument", "FILE:17:5: error", `"max_tokens"`}},
		{"unknown stage type", "validate", `use            = "generate"|use            = "generat"`, nil,
			[]string{"Unknown stage type", "FILE:14:22: error"}},
		{"missing stage", "validate", "value = stage.gen.text|value = stage.gne.text", nil,
			[]string{"Reference to undeclared stage", "FILE:20:13: error"}},
		{"wrong type", "validate", "max_new_tokens = 2|max_new_tokens = \"many\"", nil,
			[]string{"Incorrect attribute value type", "FILE:17:22: error"}},
		{"unknown backend config attribute", "validate", "plugin = \"modelrt-native\"|plugin = \"modelrt-native\"\n  config {\n    thread = 2\n  }", nil,
			[]string{"Unsupported argument", "FILE:4:5: error", `"thread"`}},
		{"plugin not found", "validate", "modelrt-native|modelrt-nosuch", nil,
			[]string{"Cannot get backend config schema", "FILE:2:12: error", "modelrt-nosuch"}},
		{"model path missing", "run", `path    = "GPT2"|path    = "no/such/model"`, []string{"--input", "prompt=x"},
			[]string{"Model path does not exist", "FILE:6:13: error"}},
		{"required input missing", "run", "", nil,
			[]string{"Missing required input", `"prompt"`, "FILE:10:3: error"}},
		{"bad input value", "run", "type = string|type = number", []string{"--input", "prompt=x"},
			[]string{"Invalid value for input", "FILE:11:12: error"}},
		{"unknown -var", "run", "", []string{"-var", "nope=1", "--input", "prompt=x"},
			[]string{"undeclared variable", `"nope"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := goodConfig
			if tc.src != "" {
				old, repl, _ := strings.Cut(tc.src, "|")
				if !strings.Contains(src, old) {
					t.Fatalf("test case: %q not in the configuration", old)
				}
				src = strings.Replace(src, old, repl, 1)
			}
			path := writeConfig(t, src)
			_, stderr, err := modelrt(t, append([]string{tc.verb, path}, tc.args...)...)
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit = %v, want status 1\n%s", err, stderr)
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "FILE", path); !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			// The snippet rendering shows the source line.
			if tc.name != "unknown -var" && !regexp.MustCompile(`(?m)^\s+\d+: `).MatchString(stderr) {
				t.Errorf("no source snippet in:\n%s", stderr)
			}
		})
	}
	// Every error at once: two unrelated problems in one file are both reported.
	src := strings.Replace(strings.Replace(goodConfig, "max_new_tokens = 2", "max_tokens = 2", 1), "stage.gen.text", "stage.nope.text", 1)
	_, stderr, _ := modelrt(t, "validate", writeConfig(t, src))
	if !strings.Contains(stderr, "2 error(s)") {
		t.Errorf("want both errors reported:\n%s", stderr)
	}
	// A good configuration validates, and run's errors beyond the configuration are plain.
	path := writeConfig(t, goodConfig)
	if out, stderr, err := modelrt(t, "validate", path); err != nil || !strings.Contains(out, "valid (1 pipeline(s): p;") {
		t.Errorf("validate good: %v\n%s%s", err, out, stderr)
	}
	if _, stderr, err := modelrt(t, "run", path, "--pipeline", "q"); err == nil || !strings.Contains(stderr, `--pipeline "q"`) {
		t.Errorf("unknown --pipeline: %v\n%s", err, stderr)
	}
	// --offline does not start plugins, --no-path-check does not look for models: a missing
	// plugin and a missing model directory both pass.
	src = strings.Replace(strings.Replace(goodConfig, "modelrt-native", "modelrt-nosuch", 1), `"GPT2"`, `"no/such/model"`, 1)
	if out, stderr, err := modelrt(t, "validate", "--offline", "--no-path-check", writeConfig(t, src)); err != nil || !strings.Contains(out, "valid") {
		t.Errorf("validate --offline --no-path-check: %v\n%s%s", err, out, stderr)
	}
}

// TestValidateBadFixtures: every bad fixture of the language fails validate with exit status 1
// and at least one diagnostic located at file:line:col in that fixture.
func TestValidateBadFixtures(t *testing.T) {
	const bad = "../../testdata/pipelines/bad/"
	entries, err := os.ReadDir(bad)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 15 {
		t.Fatalf("only %d bad fixtures", len(entries))
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			_, stderr, err := modelrt(t, "validate", bad+e.Name())
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit = %v, want status 1\n%s", err, stderr)
			}
			loc := regexp.MustCompile(`(?m)^  \S*` + regexp.QuoteMeta(e.Name()) + `\S*:\d+:\d+: error: `)
			if !loc.MatchString(stderr) {
				t.Errorf("no file:line:col error line for %s in:\n%s", e.Name(), stderr)
			}
		})
	}
}

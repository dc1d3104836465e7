package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/internal/plugintest"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// binDir holds modelrt and the plugins, built once by TestMain: the tests run the real binaries.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelrt-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if err := plugintest.Build(dir, plugintest.CLI, plugintest.Native, plugintest.TestBackend, plugintest.ONNXRT); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// modelrt runs the CLI with the test plugin directory and returns stdout, stderr.
func modelrt(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "modelrt"), args...)
	cmd.Env = append(os.Environ(), "MODELRT_PLUGIN_DIR="+binDir)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func TestPluginsListsBackends(t *testing.T) {
	out, stderr, err := modelrt(t, "plugins", "--json")
	if err != nil {
		t.Fatalf("modelrt plugins: %v\n%s", err, stderr)
	}
	var rows []struct {
		Name     string
		Version  string
		Protocol int
		Tasks    []string
		Error    string
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	found := map[string]bool{}
	for _, r := range rows {
		found[r.Name] = true
		if r.Error != "" {
			t.Errorf("%s: %s", r.Name, r.Error)
		}
		if r.Name == "native" && (r.Protocol != 1 || !slices.Contains(r.Tasks, "causal-lm")) {
			t.Errorf("native = %+v", r)
		}
	}
	if !found["testbackend"] || !found["native"] {
		t.Errorf("plugins = %s; want testbackend and native", out)
	}
	text, _, err := modelrt(t, "plugins")
	if err != nil || !strings.Contains(text, "testbackend") || !strings.Contains(text, "v1") {
		t.Errorf("table output = %q, %v", text, err)
	}
}

// TestGenerateGreedyMatchesPyTorch runs `modelrt generate` through the native plugin process and
// holds its greedy continuation of "Hello" to the one PyTorch computed for the same weights.
func TestGenerateGreedyMatchesPyTorch(t *testing.T) {
	model := "../../testdata/models/gpt2-tiny"
	ref, err := safetensors.Open(filepath.Join(model, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want, _, err := ref.Int64("greedy_hello_ids")
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := modelrt(t, "generate", "--model", model, "--prompt", "Hello", "--temperature", "0",
		"--max-new-tokens", fmt.Sprint(len(want)-1), "--json")
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, stderr)
	}
	var got struct {
		IDs              []int64 `json:"ids"`
		Text             string  `json:"text"`
		PromptTokens     int     `json:"prompt_tokens"`
		GeneratedTokens  int     `json:"generated_tokens"`
		PrefillMS        float64 `json:"prefill_ms"`
		DecodeTokensPerS float64 `json:"decode_tokens_per_s"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	if !slices.Equal(got.IDs, want) {
		t.Errorf("greedy ids = %v\nPyTorch     = %v", got.IDs, want)
	}
	if got.PromptTokens != 1 || got.GeneratedTokens != len(want)-1 || got.Text == "" || got.DecodeTokensPerS <= 0 {
		t.Errorf("json = %+v", got)
	}
	// Streaming text mode prints the prompt and the same continuation.
	text, stderr, err := modelrt(t, "generate", "--model", model, "--prompt", "Hello", "--temperature", "0", "--max-new-tokens", fmt.Sprint(len(want)-1))
	if err != nil || text != "Hello"+got.Text+"\n" {
		t.Errorf("text mode = %q (%v, %s), want %q", text, err, stderr, "Hello"+got.Text+"\n")
	}
}

func TestGenerateBadInput(t *testing.T) {
	model := "../../testdata/models/gpt2-tiny"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"empty prompt", []string{"--model", model, "--prompt", ""}, "exactly one of --prompt"},
		{"no model", []string{"--prompt", "x"}, "--model"},
		{"missing model dir", []string{"--model", "/nonexistent/model", "--ids", "1,2"}, "/nonexistent/model"},
		{"id beyond vocab", []string{"--model", model, "--ids", "50257"}, "InvalidArgument"},
		{"bad ids", []string{"--model", model, "--ids", "1,x"}, `item 2 "x"`},
		{"bad temperature", []string{"--model", model, "--prompt", "x", "--temperature", "-1"}, "temperature"},
		{"unknown backend", []string{"--model", model, "--prompt", "x", "--backend", "nosuch"}, "modelrt-nosuch"},
		{"prompt beyond context", []string{"--model", model, "--prompt", strings.Repeat("a b ", 40)}, "context"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := modelrt(t, append([]string{"generate"}, tc.args...)...)
			if err == nil {
				t.Fatal("succeeded, want an error")
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tc.want)
			}
		})
	}
}

func generateIDs(t *testing.T, args ...string) []int64 {
	t.Helper()
	out, stderr, err := modelrt(t, append([]string{"generate", "--temperature", "0", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("generate %v: %v\n%s", args, err, stderr)
	}
	var got struct {
		IDs []int64 `json:"ids"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	return got.IDs
}

// TestGenerateAcrossBackends: the same weights give the same greedy tokens on the native
// backend and on ONNX Runtime, for every ONNX convention in the fixtures (PyTorch's exports) and
// for modelrt's own exporter.
func TestGenerateAcrossBackends(t *testing.T) {
	models := "../../testdata/models/"
	ids := []string{"--ids", "5,17,300,2", "--max-new-tokens", "10"}
	want := generateIDs(t, append([]string{"--model", models + "gpt2-odd", "--backend", "native"}, ids...)...)
	for _, d := range []string{"gpt2-odd-onnx-optimum-op14", "gpt2-odd-onnx-optimum-op17", "gpt2-odd-onnx-stacked-op14", "gpt2-odd-onnx-nocache-op14"} {
		if got := generateIDs(t, append([]string{"--model", models + d, "--backend", "onnxrt"}, ids...)...); !slices.Equal(got, want) {
			t.Errorf("%s on onnxrt: %v\nnative:  %v", d, got, want)
		}
	}
	// modelrt export → onnxrt reproduces PyTorch's greedy continuation of "Hello".
	ref, err := safetensors.Open(models + "gpt2-tiny/reference.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	hello, _, err := ref.Int64("greedy_hello_ids")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, stderr, err := modelrt(t, "export", "--model", models+"gpt2-tiny", "--out", out, "--with-past"); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	got := generateIDs(t, "--model", out, "--backend", "onnxrt", "--prompt", "Hello", "--max-new-tokens", fmt.Sprint(len(hello)-1))
	if !slices.Equal(got, hello) {
		t.Errorf("exported gpt2-tiny on onnxrt: %v\nPyTorch: %v", got, hello)
	}
	if text, _, err := modelrt(t, "inspect", filepath.Join(out, "model.onnx")); err != nil || !strings.Contains(text, "past_key_values.0.key") {
		t.Errorf("inspect: %v\n%s", err, text)
	}
}

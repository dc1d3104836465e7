package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelrt/modelrt/internal/plugintest"
)

// casesDir holds the repository's case files.
const casesDir = "../testdata/conformance"

// binDir holds the plugin binaries that needPlugins builds once (not in TestMain: fuzz
// workers and loader tests need none); plugins lists those that built, and buildErrs why the
// others did not.
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
	plugins   []PluginSpec
	buildErrs = map[string]string{}
)

// needPlugins builds the plugin binaries on first use.
func needPlugins(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() { buildErr = buildPlugins(binDir) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// ci reports whether the tests run in CI, where every backend must build and run.
func ci() bool { return os.Getenv("CI") == "true" }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelrt-conformance-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		return m.Run()
	}()
	os.Exit(code)
}

// buildPlugins builds modelrt-native, modelrt-onnxrt (when its sources exist: it needs cgo and
// ONNX Runtime) and the test plugins. Outside CI a backend that does not build is skipped with
// its reason; in CI it is an error.
func buildPlugins(dir string) error {
	type build struct {
		name     string
		bin      plugintest.Binary
		optional bool
	}
	builds := []build{
		{"native", plugintest.Native, false},
		{"onnxrt", plugintest.ONNXRT, true},
		{"toylm", plugintest.Binary{Name: "modelrt-toylm", Pkg: "conformance/testdata/toyplugin"}, false},
	}
	for _, b := range builds {
		pkg, err := b.bin.Dir()
		if err != nil {
			return err
		}
		if srcs, _ := filepath.Glob(filepath.Join(pkg, "*.go")); len(srcs) == 0 {
			if b.optional && !ci() {
				buildErrs[b.name] = "no Go files in " + b.bin.Pkg
				continue
			}
			return fmt.Errorf("build %s: no Go files in %s", b.name, b.bin.Pkg)
		}
		out, err := b.bin.Build(dir)
		if err != nil {
			if b.optional && !ci() {
				buildErrs[b.name] = err.Error()
				continue
			}
			return err
		}
		if b.name != "toylm" {
			plugins = append(plugins, PluginSpec{Name: b.name, Path: out})
		}
	}
	return nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runPlugins starts the plugins, runs the cases on them with every check, logs the table and
// returns the report and the table.
func runPlugins(t *testing.T, cases []*Case, specs []PluginSpec, timeout time.Duration) (*Report, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	targets, stop, err := StartPlugins(ctx, specs, testLogger(t), "warn")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	rep := Run(ctx, cases, targets, Options{Logger: testLogger(t)})
	var b strings.Builder
	WriteTable(&b, rep)
	t.Log("\n" + b.String())
	return rep, b.String()
}

// TestRepositoryCases runs every case of testdata/conformance on every backend that built,
// with all checks, and fails on any FAIL row. Every case must be applicable to at least one
// backend, and in CI every backend must run at least one case.
func TestRepositoryCases(t *testing.T) {
	needPlugins(t)
	for name, why := range buildErrs {
		t.Logf("backend %s not run: %s (it must build when CI=true)", name, why)
	}
	cases, err := LoadDir(casesDir)
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := runPlugins(t, cases, plugins, 10*time.Minute)

	applicable := map[string]int{}
	ran := map[string]int{}
	for _, r := range rep.Rows {
		if r.Result == NotApplicable {
			continue
		}
		applicable[r.Case]++
		ran[r.Backend]++
		if r.Result == Fail {
			t.Errorf("%s on %s: %s", r.Case, r.Backend, r.Reason)
		}
	}
	for _, c := range cases {
		switch {
		case applicable[c.Name] > 0:
		case len(buildErrs) > 0:
			t.Logf("case %s ran on no backend; a backend that did not build may be the one for it", c.Name)
		default:
			t.Errorf("case %s (%s) ran on no backend: every backend found its model directory unusable", c.Name, c.File)
		}
	}
	for _, p := range plugins {
		if ran[p.Name] == 0 {
			t.Errorf("backend %s ran no case", p.Name)
		}
	}
	// The dual directory is what makes the cross-backend comparison happen.
	if len(plugins) > 1 {
		cross := false
		for _, r := range rep.Rows {
			for _, c := range r.Checks {
				cross = cross || strings.HasPrefix(c.Name, "cross:")
			}
		}
		if !cross {
			t.Errorf("no case ran on two backends, so nothing was compared across backends")
		}
	}
	// Every generate case runs the continuous-batching check.
	batching := 0
	for _, r := range rep.Rows {
		for _, c := range r.Checks {
			if c.Name == "batching" && c.Result == Pass {
				batching++
				t.Logf("%s on %s: batching: %s", r.Case, r.Backend, c.Detail)
			}
		}
	}
	if batching == 0 {
		t.Errorf("no generate case passed the batching check")
	}
}

// plainExport is a plain torch.onnx.export of GPT-2 (gpt2-odd's weights): input_ids → logits,
// no attention_mask, no past (scripts/fixtures/gpt2_onnx.py).
const plainExport = "gpt2-odd-onnx-plain-op14"

// TestPlainExportOnONNXRuntime runs the repository's cases of the plain export through the
// onnxrt plugin. The expected values pass; the padding check, which a graph without an
// attention_mask cannot express, is n/a with the reason (it used to FAIL on the backend's
// refusal of a padded mask), and every row passes.
func TestPlainExportOnONNXRuntime(t *testing.T) {
	needPlugins(t)
	var onnxrt []PluginSpec
	for _, p := range plugins {
		if p.Name == "onnxrt" {
			onnxrt = append(onnxrt, p)
		}
	}
	if len(onnxrt) == 0 {
		t.Skipf("the onnxrt backend did not build (with CI=true that fails the build): %s", buildErrs["onnxrt"])
	}
	all, err := LoadDir(casesDir)
	if err != nil {
		t.Fatal(err)
	}
	var cases []*Case
	for _, c := range all {
		if strings.HasPrefix(c.Name, plainExport+"-") {
			cases = append(cases, c)
		}
	}
	if len(cases) != 2 {
		t.Fatalf("%d cases of %s in %s, want its -logits and -generate", len(cases), plainExport, casesDir)
	}
	rep, table := runPlugins(t, cases, onnxrt, 5*time.Minute)
	for _, r := range rep.Rows {
		if r.Result == NotApplicable && strings.HasPrefix(r.Reason, "cannot load the model") && !ci() {
			t.Skipf("onnxrt cannot load %s here (is the ONNX Runtime library installed? scripts/install-onnxruntime.sh): %s", plainExport, r.Reason)
		}
	}
	want := map[string]map[string]Result{
		plainExport + "-logits":   {"expected": Pass, "kv-cache": Pass, "batch": Pass, "padding": NotApplicable, "reload": Pass},
		plainExport + "-generate": {"expected": Pass, "kv-cache": Pass, "seed": Pass, "reload": Pass, "batching": Pass},
	}
	const reason = "padding cannot be expressed: the model declares no attention_mask input (its inputs: input_ids)"
	for _, r := range rep.Rows {
		if r.Result != Pass {
			t.Errorf("%s: %s (%s), want pass", r.Case, r.Result, r.Reason)
		}
		got := map[string]Result{}
		for _, c := range r.Checks {
			got[c.Name] = c.Result
			if c.Result == NotApplicable && c.Detail != reason {
				t.Errorf("%s: check %s n/a because %q, want %q", r.Case, c.Name, c.Detail, reason)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want[r.Case]) {
			t.Errorf("%s: checks %v, want %v", r.Case, got, want[r.Case])
		}
	}
	if rep.Failed() || !strings.Contains(table, "padding: "+reason) {
		t.Errorf("the report fails or does not give the n/a reason")
	}
}

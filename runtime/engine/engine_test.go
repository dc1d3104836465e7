package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/internal/plugintest"
	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// pluginDir holds the native plugin, built once by TestMain: the engine is tested against the
// real plugin process.
var pluginDir string

const gpt2Tiny = "../../testdata/models/gpt2-tiny"

// logitsTol bounds |native − PyTorch| on gpt2-tiny's reference logits (F16 weights widened to
// F32 on both sides; the difference is summation order).
const logitsTol = 1e-4

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelrt-engine-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	if err := plugintest.Build(dir, plugintest.Native); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// load loads HCL source written into a temp directory beside nothing else; model paths are
// absolute so the file can live anywhere.
func load(t testing.TB, src string) *pipelines.Config {
	t.Helper()
	abs, err := filepath.Abs(gpt2Tiny)
	if err != nil {
		t.Fatal(err)
	}
	src = strings.ReplaceAll(src, "GPT2_TINY", abs)
	path := filepath.Join(t.TempDir(), "p.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := pipelines.Load(path, pipelines.LoadOptions{})
	if diags.HasErrors() {
		t.Fatalf("load: %s", diags.Error())
	}
	return cfg
}

func newEngine(t *testing.T, cfg *pipelines.Config, only ...string) *Engine {
	t.Helper()
	e, err := New(context.Background(), cfg, Options{PluginDirs: []string{pluginDir}, Pipelines: only})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

const header = `
backend "native" {
  plugin = "modelrt-native"
  config {
    threads = 1
  }
}
model "gpt2" {
  backend = backend.native
  path    = "GPT2_TINY"
  task    = "causal-lm"
}
`

// textObserver records streamed text per stage and the stage events.
type textObserver struct {
	mu     sync.Mutex
	text   map[string]string
	starts []string
	ends   map[string]StageTiming
	onText func()
}

func newTextObserver() *textObserver {
	return &textObserver{text: map[string]string{}, ends: map[string]StageTiming{}}
}

func (o *textObserver) OnStageStart(stage, use string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.starts = append(o.starts, stage)
}

func (o *textObserver) OnStageEnd(stage string, t StageTiming, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ends[stage] = t
}

func (o *textObserver) OnText(stage string, row int, delta string) {
	o.mu.Lock()
	o.text[stage] += delta
	f := o.onText
	o.mu.Unlock()
	if f != nil {
		f()
	}
}

func reference(t *testing.T) *safetensors.File {
	t.Helper()
	ref, err := safetensors.Open(filepath.Join(gpt2Tiny, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return ref
}

// TestGreedyMatchesPyTorch: tokenize → generate → detokenize through the native plugin gives
// PyTorch's greedy continuation of "Hello", streams the same text the stage outputs, and
// reports a timing for every stage.
func TestGreedyMatchesPyTorch(t *testing.T) {
	want, _, err := reference(t).Int64("greedy_hello_ids")
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, header+fmt.Sprintf(`
pipeline "p" {
  input "prompt" {
    type = string
  }
  stage "ids" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = input.prompt
  }
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    input_ids      = stage.ids.ids
    max_new_tokens = %d
  }
  stage "text" {
    use       = "detokenize"
    tokenizer = model.gpt2
    ids       = stage.gen.ids
  }
  output "ids" {
    value = stage.gen.ids
  }
  output "text" {
    value = stage.text.text
  }
  output "new" {
    value = stage.gen.text
  }
}
`, len(want)-1))
	e := newEngine(t, cfg)
	obs := newTextObserver()
	res, err := e.Run(context.Background(), "p", map[string]cty.Value{"prompt": cty.StringVal("Hello")}, obs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pipelines.AsTokenIDs(res.Outputs["ids"])
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := make([]int, len(want)) // the reference file's int64 ids, as the host's int ids
	for i, id := range want {
		wantIDs[i] = int(id)
	}
	if !slices.Equal(got, wantIDs) {
		t.Errorf("greedy ids = %v\nPyTorch     = %v", got, want)
	}
	newText := res.Outputs["new"].AsString()
	if obs.text["gen"] != newText || newText == "" {
		t.Errorf("streamed %q, stage text %q", obs.text["gen"], newText)
	}
	if text := res.Outputs["text"].AsString(); text != "Hello"+newText {
		t.Errorf("detokenized %q, want %q", text, "Hello"+newText)
	}
	if len(res.Stages) != 3 || res.Stages[1].Stage != "gen" || res.Stages[1].Generate == nil ||
		res.Stages[1].Generate.GeneratedTokens != len(want)-1 || res.Stages[2].Start < res.Stages[1].Start+res.Stages[1].Duration {
		t.Errorf("timings = %+v", res.Stages)
	}
	if !slices.Equal(obs.starts, []string{"ids", "gen", "text"}) || len(obs.ends) != 3 {
		t.Errorf("observer starts %v, ends %v", obs.starts, obs.ends)
	}
}

// TestInferLiteralLogits: an infer stage with literal tensors returns PyTorch's logits.
func TestInferLiteralLogits(t *testing.T) {
	ref := reference(t)
	ids, _, err := ref.Int64("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	mask, _, err := ref.Int64("attention_mask")
	if err != nil {
		t.Fatal(err)
	}
	want, shape, err := ref.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, header+`
pipeline "p" {
  input "ids" {
    type = list(number)
  }
  input "mask" {
    type = list(number)
  }
  stage "fwd" {
    use   = "infer"
    model = model.gpt2
    inputs = {
      input_ids      = { dtype = "int64", shape = [2, 5], data = input.ids }
      attention_mask = { dtype = "int64", shape = [2, 5], data = input.mask }
    }
  }
  output "logits" {
    value = stage.fwd.outputs["logits"]
  }
}
`)
	e := newEngine(t, cfg)
	res, err := e.Run(context.Background(), "p", map[string]cty.Value{
		"ids": pipelines.TokenIDsVal(ids), "mask": pipelines.TokenIDsVal(mask)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lt, err := TensorOf(res.Outputs["logits"])
	if err != nil {
		t.Fatal(err)
	}
	got, err := lt.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lt.Shape, []int64{int64(shape[0]), int64(shape[1]), int64(shape[2])}) {
		t.Fatalf("logits shape %v, want %v", lt.Shape, shape)
	}
	// Positions the mask pads out are not compared: their logits are arbitrary.
	V := shape[2]
	maxAbs, first := 0.0, -1
	for i := range got {
		if mask[i/V] == 0 {
			continue
		}
		d := math.Abs(float64(got[i] - want[i]))
		if d > maxAbs {
			maxAbs = d
		}
		if d > logitsTol && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		t.Errorf("logits max abs error %.3g > %g; first mismatch at flat index %d (row %d, pos %d, token %d): got %v, want %v",
			maxAbs, logitsTol, first, first/V/shape[1], first/V%shape[1], first%V, got[first], want[first])
	}
}

// TestConcurrentStagesAndSeeds: two independent generate stages run in one pipeline; a sampled
// stage with a fixed seed is reproducible across runs and concurrent Runs of one Engine.
func TestConcurrentStagesAndSeeds(t *testing.T) {
	cfg := load(t, header+`
pipeline "p" {
  input "seed" {
    type = number
  }
  stage "a" {
    use            = "generate"
    model          = model.gpt2
    prompt         = "The cat"
    max_new_tokens = 6
    sampling {
      temperature = 1.0
      seed        = input.seed
    }
  }
  stage "b" {
    use            = "generate"
    model          = model.gpt2
    prompt         = "The dog"
    max_new_tokens = 6
    sampling {
      temperature = 1.0
      top_k       = 50
      seed        = input.seed
    }
  }
  output "both" {
    value = "${stage.a.text}|${stage.b.text}"
  }
}
`)
	e := newEngine(t, cfg)
	in := map[string]cty.Value{"seed": cty.NumberIntVal(3)}
	const runs = 3
	outs := make([]string, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			res, err := e.Run(context.Background(), "p", in, nil)
			errs[i] = err
			if err == nil {
				outs[i] = res.Outputs["both"].AsString()
			}
		})
	}
	wg.Wait()
	for i := range runs {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if outs[i] != outs[0] {
			t.Errorf("run %d = %q, run 0 = %q: the same seed must give the same text", i, outs[i], outs[0])
		}
	}
	res, err := e.Run(context.Background(), "p", map[string]cty.Value{"seed": cty.NumberIntVal(4)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outputs["both"].AsString() == outs[0] {
		t.Errorf("seeds 3 and 4 gave the same text %q", outs[0])
	}
}

// TestCancelClosesSessions: cancelling during generation stops the run with context.Canceled
// and leaves no session open in the backend.
func TestCancelClosesSessions(t *testing.T) {
	cfg := load(t, header+`
pipeline "p" {
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    prompt         = "Hello"
    max_new_tokens = 50
    sampling {
      temperature = 1.0
      seed        = 1
    }
  }
  output "text" {
    value = stage.gen.text
  }
}
`)
	e := newEngine(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	obs := newTextObserver()
	obs.onText = cancel
	_, err := e.Run(ctx, "p", nil, obs)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	b, err := e.Backend("gpt2")
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.(sdk.StatsReporter).Stats(context.Background(), &sdk.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.OpenSessions != 0 {
		t.Errorf("%d sessions open after a cancelled run", st.OpenSessions)
	}
}

// TestRunErrors: a missing required input is a diagnostic at its declaration; a stage failing
// in the backend is a StageError naming the stage; unknown pipelines are ErrUnknown.
func TestRunErrors(t *testing.T) {
	cfg := load(t, header+`
pipeline "p" {
  input "ids" {
    type = list(number)
  }
  stage "gen" {
    use            = "generate"
    model          = model.gpt2
    input_ids      = input.ids
    max_new_tokens = 2
  }
  output "ids" {
    value = stage.gen.ids
  }
}
`)
	e := newEngine(t, cfg)
	_, err := e.Run(context.Background(), "p", nil, nil)
	var de *DiagnosticsError
	if !errors.As(err, &de) || !strings.Contains(de.Diags[0].Summary, "Missing required input") || de.Diags[0].Subject.Start.Line != 15 {
		t.Errorf("missing input: %v", err)
	}
	_, err = e.Run(context.Background(), "p", map[string]cty.Value{"ids": pipelines.TokenIDsVal([]int64{1, 99999})}, nil)
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "gen" || sdk.CodeOf(err) != sdk.CodeInvalidArgument {
		t.Errorf("id beyond vocabulary: %v (code %v)", err, sdk.CodeOf(err))
	}
	if _, err := e.Run(context.Background(), "nope", nil, nil); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown pipeline: %v", err)
	}
	if _, err := e.Tokenizer("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown model: %v", err)
	}
	if ms := e.Models(); len(ms) != 1 || ms[0].Info.Metadata["vocab_size"] != "50257" {
		t.Errorf("Models() = %+v", ms)
	}
	if bs := e.Backends(); len(bs) != 1 || bs[0].State != "running" || bs[0].Restarts != 0 {
		t.Errorf("Backends() = %+v", bs)
	}
}

// TestNewErrors: a plugin that cannot be found and an unknown config attribute fail New with
// the backend named, and a bad Pipelines restriction is ErrUnknown.
func TestNewErrors(t *testing.T) {
	cfg := load(t, strings.Replace(header, "modelrt-native", "modelrt-nosuch", 1))
	if _, err := New(context.Background(), cfg, Options{PluginDirs: []string{pluginDir}}); err == nil || !strings.Contains(err.Error(), `backend "native"`) {
		t.Errorf("missing plugin: %v", err)
	}
	cfg = load(t, header)
	if _, err := New(context.Background(), cfg, Options{PluginDirs: []string{pluginDir}, Pipelines: []string{"x"}}); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown pipeline: %v", err)
	}
	// Schemas reports the native plugin's config schema, and an error for a missing plugin.
	schemas := Schemas(context.Background(), SchemaOptions{PluginDirs: []string{pluginDir}})
	s, err := schemas("modelrt-native")
	if err != nil || len(s.Attributes) == 0 || s.Attributes[0].Name != "threads" {
		t.Errorf("native schema = %+v, %v", s, err)
	}
	if _, err := schemas("modelrt-nosuch"); err == nil {
		t.Error("schema of a missing plugin: no error")
	}
}

// TestCatalogueImplemented: every stage type of the language has an implementation here.
func TestCatalogueImplemented(t *testing.T) {
	for _, name := range pipelines.StageTypeNames() {
		if stageImpls[name] == nil {
			t.Errorf("stage type %q has no implementation", name)
		}
	}
	for name := range stageImpls {
		if pipelines.Catalogue[name] == nil {
			t.Errorf("implementation %q is not in the catalogue", name)
		}
	}
}

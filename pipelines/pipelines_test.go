package pipelines

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/sdk"
)

const completeNative = fixtures + "good/complete-native"

func loadGood(t *testing.T, dir string, opts LoadOptions) *Config {
	t.Helper()
	cfg, diags := Load(dir, opts)
	if len(diags) > 0 {
		t.Fatalf("Load(%s):\n%s", dir, render(t, diags, cfg.Files))
	}
	return cfg
}

func TestBindInputsMissingRequired(t *testing.T) {
	cfg := loadGood(t, completeNative, LoadOptions{})
	p := cfg.Pipelines["complete"]
	_, diags := p.BindInputs(map[string]string{})
	wantOne(t, diags, cfg.Files, "Missing required input",
		`Pipeline "complete" needs a value for input "prompt" (it has no default)`, "good/complete-native/pipeline.hcl:28:3")
}

func TestBindInputsBadValue(t *testing.T) {
	cfg := loadGood(t, completeNative, LoadOptions{})
	p := cfg.Pipelines["complete"]
	_, diags := p.BindInputs(map[string]string{"prompt": "Hi", "seed": "seven"})
	wantOne(t, diags, cfg.Files, "Invalid value for input",
		`Input "seed" of pipeline "complete": --input seed="seven": a number is required`, "good/complete-native/pipeline.hcl:33:15")

	_, diags = p.BindInputs(map[string]string{"prompt": "Hi", "sed": "1"})
	wantOne(t, diags, cfg.Files, "Value for undeclared input", `Did you mean "seed"?`, "good/complete-native/pipeline.hcl:25:1")

	_, diags = p.BindInputValues(map[string]cty.Value{"prompt": cty.ListValEmpty(cty.String)})
	wantOne(t, diags, cfg.Files, "Invalid value for input", "string required", "good/complete-native/pipeline.hcl:29:19")
}

func TestBindInputs(t *testing.T) {
	cfg := loadGood(t, completeNative, LoadOptions{})
	got, diags := cfg.Pipelines["complete"].BindInputs(map[string]string{"prompt": "Hello"})
	if diags.HasErrors() {
		t.Fatalf("BindInputs: %s", diags.Error())
	}
	want := map[string]cty.Value{"prompt": cty.StringVal("Hello"), "seed": cty.NumberIntVal(1)}
	if !reflect.DeepEqual(keys(got), keys(want)) {
		t.Fatalf("bound %v, want %v", keys(got), keys(want))
	}
	for k, w := range want {
		if !got[k].RawEquals(w) {
			t.Errorf("input %s = %#v, want %#v", k, got[k], w)
		}
	}
}

func TestVars(t *testing.T) {
	cfg, diags := Load(completeNative, LoadOptions{Vars: map[string]string{"max_new_tokens": "lots"}})
	wantOne(t, diags, cfg.Files, "Invalid value for variable", `-var max_new_tokens="lots": a number is required`,
		"good/complete-native/pipeline.hcl:11:13")

	cfg, diags = Load(completeNative, LoadOptions{Vars: map[string]string{"max_new_token": "3"}})
	wantOne(t, diags, cfg.Files, "Value for undeclared variable", `Did you mean "max_new_tokens"?`, "<no subject>")

	cfg = loadGood(t, completeNative, LoadOptions{Vars: map[string]string{"max_new_tokens": "3"}})
	if v := cfg.Variables["max_new_tokens"].Value; !v.RawEquals(cty.NumberIntVal(3)) {
		t.Errorf("var.max_new_tokens = %#v, want 3", v)
	}

	// Non-primitive types parse as HCL; locals see the bound value.
	cfg = loadGood(t, fixtures+"good/vae-prior", LoadOptions{Vars: map[string]string{"latent_size": "[4, 6]"}})
	want := cty.TupleVal([]cty.Value{cty.NumberIntVal(1), cty.NumberIntVal(4), cty.NumberIntVal(4), cty.NumberIntVal(6)})
	if v := cfg.Locals["shape"].Value; !v.RawEquals(want) {
		t.Errorf("local.shape = %#v, want %#v", v, want)
	}
	cfg, diags = Load(fixtures+"good/vae-prior", LoadOptions{Vars: map[string]string{"latent_size": "[4, "}})
	wantOne(t, diags, cfg.Files, "Invalid value for variable", "not a valid list(number) expression", "good/vae-prior/pipeline.hcl:5:13")
}

func TestModelPathCheckOff(t *testing.T) {
	_, diags := Load(fixtures+"bad/model_path.hcl", LoadOptions{NoPathCheck: true})
	if len(diags) > 0 {
		t.Fatalf("NoPathCheck still reports: %s", diags.Error())
	}
}

// src is a configuration written inline, loaded as if it were
// testdata/pipelines/inline.hcl.
func loadSrc(src string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	return LoadSource(fixtures+"inline.hcl", []byte(src), opts)
}

func TestBackendSchemas(t *testing.T) {
	cases := []struct {
		name, src, summary, detail, at string
	}{
		{"plugin error", `backend "x" { plugin = "modelrt-missing" }`, "Cannot get backend config schema",
			`Plugin "modelrt-missing" of backend "x" did not report its config schema: file does not exist.`, "inline.hcl:1:24"},
		{"wrong type", `backend "x" {
  plugin = "modelrt-onnxrt"
  config { intra_op_threads = "two" }
}`, "Incorrect attribute value type", `Inappropriate value for attribute "intra_op_threads": a number is required.`, "inline.hcl:3:31"},
		{"missing required", `backend "x" {
  plugin = "required"
  config { other = 1 }
}`, "Missing required argument", `The argument "device" is required`, "inline.hcl:3:12"},
		{"no config block", `backend "x" { plugin = "required" }`, "Missing backend config",
			`Plugin "required" of backend "x" requires a config block with: device.`, "inline.hcl:1:1"},
		{"invalid schema", `backend "x" { plugin = "invalid" }`, "Invalid backend config schema",
			`attribute "a": type "strng"`, "inline.hcl:1:24"},
		{"reference", `backend "x" {
  plugin = "modelrt-native"
  config { threads = var.threads }
}`, "Reference to undeclared variable", `No variable named "threads" is declared.`, "inline.hcl:3:22"},
	}
	schemas := func(plugin string) (*sdk.ConfigSchema, error) {
		switch plugin {
		case "required":
			return &sdk.ConfigSchema{Attributes: []sdk.ConfigAttribute{{Name: "device", Type: "string", Required: true}, {Name: "other", Type: "number"}}}, nil
		case "invalid":
			return &sdk.ConfigSchema{Attributes: []sdk.ConfigAttribute{{Name: "a", Type: "strng"}}}, nil
		}
		return testSchemas(plugin)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, diags := loadSrc(c.src, LoadOptions{BackendSchemas: schemas})
			wantOne(t, diags, cfg.Files, c.summary, c.detail, c.at)
		})
	}

	cfg, diags := loadSrc(`backend "x" {
  plugin = "modelrt-onnxrt"
  config {
    intra_op_threads    = 1 + 1
    execution_providers = ["cpu"]
  }
}`, LoadOptions{BackendSchemas: schemas})
	if len(diags) > 0 {
		t.Fatal(diags.Error())
	}
	js, err := cfg.Backends["x"].ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"execution_providers":["cpu"],"intra_op_threads":2}`; string(js) != want {
		t.Errorf("config JSON %s, want %s", js, want)
	}
}

func TestBackendPluginPath(t *testing.T) {
	cfg, diags := loadSrc(`backend "a" { plugin = "./bin/my-backend" }
backend "b" { plugin = "modelrt-native" }`, LoadOptions{})
	if len(diags) > 0 {
		t.Fatal(diags.Error())
	}
	abs, _ := filepath.Abs(fixtures + "bin/my-backend")
	if got := cfg.Backends["a"].PluginPath; got != abs {
		t.Errorf("PluginPath %q, want %q", got, abs)
	}
	if got := cfg.Backends["b"].PluginPath; got != "" {
		t.Errorf("PluginPath of a plugin name %q, want empty", got)
	}
}

// gpt2Prelude declares a backend and a GPT-2 model for inline configurations
// (six lines, so that the pipeline below it starts on line 7).
const gpt2Prelude = `backend "n" { plugin = "modelrt-native" }
model "gpt2" {
  backend = backend.n
  path    = "../models/gpt2-tiny"
  task    = "causal-lm"
}
`

func TestStaticChecks(t *testing.T) {
	model := gpt2Prelude
	cases := []struct {
		name, src, summary, detail, at string
	}{
		{"reference root", model + `pipeline "p" {
  stage "s" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = inputs.x
  }
}`, "Unknown reference", `There is no value named "inputs". References start with one of: var, local, path, model, backend, input, stage. Did you mean "input"?`, "inline.hcl:11:17"},
		{"not allowed", `locals { x = stage.a.b }`, "Reference not allowed here",
			"stage.* cannot be used in a local value; only var, local, path are available there.", "inline.hcl:1:14"},
		{"model as string", model + `pipeline "p" {
  stage "s" {
    use       = "tokenize"
    tokenizer = "gpt2"
    text      = "x"
  }
}`, "Incorrect attribute value type", "a reference to a model block is required, like model.gpt2", "inline.hcl:10:17"},
		{"range", model + `pipeline "p" {
  stage "s" {
    use    = "generate"
    model  = model.gpt2
    prompt = "x"
    sampling { top_p = 1.5 }
  }
}`, "Invalid value for sampling attribute", `Inappropriate value for sampling attribute "top_p": must be at most 1, got 1.5.`, "inline.hcl:12:24"},
		{"whole", model + `pipeline "p" {
  stage "s" {
    use            = "generate"
    model          = model.gpt2
    prompt         = "x"
    max_new_tokens = 2.5
  }
}`, "Invalid value for stage input", "a whole number is required, got 2.5", "inline.hcl:12:22"},
		{"two sampling blocks", model + `pipeline "p" {
  stage "s" {
    use    = "generate"
    model  = model.gpt2
    prompt = "x"
    sampling { seed = 1 }
    sampling { seed = 2 }
  }
}`, `Duplicate sampling block "sampling"`, `within stage "s" (one per stage)`, "inline.hcl:13:5"},
		{"both alternatives", model + `pipeline "p" {
  stage "s" {
    use       = "generate"
    model     = model.gpt2
    prompt    = "x"
    input_ids = [1, 2]
  }
}`, "Conflicting stage inputs", "takes exactly one of input_ids | prompt; input_ids is already set", "inline.hcl:11:5"},
		{"half alternative", `backend "n" { plugin = "modelrt-native" }
model "vae" {
  backend = backend.n
  path    = "../models/vae-tiny"
  task    = "vae"
}
pipeline "p" {
  stage "enc" {
    use   = "vae.encode"
    model = model.vae
    image = stage.load.image
  }
  stage "load" {
    use  = "image.load"
    path = "x.png"
  }
  stage "z" {
    use   = "latent.sample"
    model = model.vae
    mean  = stage.enc.mean
  }
}`, "Missing stage input", `logvar must be set together with mean`, "inline.hcl:20:5"},
		{"unknown function", model + `pipeline "p" {
  output "o" { value = uppper("x") }
}`, "Call to unknown function", `There is no function named "uppper". Did you mean "upper"?`, "inline.hcl:8:24"},
		{"use not literal", model + `pipeline "p" {
  input "kind" {}
  stage "s" { use = input.kind }
}`, "Invalid stage type", "use must be a literal string", "inline.hcl:9:21"},
		{"stage without output", model + `pipeline "p" {
  stage "a" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = "x"
  }
  output "o" { value = stage.a }
}`, "Invalid stage reference", "must name one of the stage's outputs, like stage.a.ids", "inline.hcl:13:24"},
		{"unknown task", `backend "n" { plugin = "modelrt-native" }
model "m" {
  backend = backend.n
  path    = "../models/vae-tiny"
  task    = "diffusion"
}`, "Unknown model task", `Task "diffusion" is not one of "causal-lm", "vae", "graph".`, "inline.hcl:5:13"},
		{"backend not a reference", `backend "n" { plugin = "modelrt-native" }
model "m" {
  backend = "n"
  path    = "../models/vae-tiny"
  task    = "vae"
}`, "Invalid backend reference", "like backend.onnxrt", "inline.hcl:3:13"},
		{"self cycle", model + `pipeline "p" {
  stage "a" {
    use       = "detokenize"
    tokenizer = model.gpt2
    ids       = [strlen(stage.a.text)]
  }
}`, "Cycle between stages", `stage "a" → stage "a"`, "inline.hcl:11:25"},
		{"invalid default", `variable "n" {
  type    = number
  default = "x"
}`, "Invalid default value for variable", `The default of variable "n" does not match its type: a number is required.`, "inline.hcl:3:13"},
		{"duplicate local", `locals { a = 1 }
locals { a = 2 }`, `Duplicate local value "a"`, "already declared at ../testdata/pipelines/inline.hcl:1:10", "inline.hcl:2:10"},
		{"options", `backend "n" { plugin = "modelrt-native" }
model "m" {
  backend = backend.n
  path    = "../models/vae-tiny"
  task    = "vae"
  options = { tile = [64, 64], precision = "float32" }
}`, "Invalid model options", "option values must be strings, numbers or bools; tile is not", "inline.hcl:6:13"},
		{"chat template syntax", chatModel("gpt2-tiny", "causal-lm", "{{range .Messages}}{{.Content}}"),
			"Invalid chat template", `Model "m": template: m:1: unexpected EOF.`, "inline.hcl:6:19"},
		{"chat template field", chatModel("gpt2-tiny", "causal-lm", "{{.BOS}}"),
			"Invalid chat template", `can't evaluate field BOS`, "inline.hcl:6:19"},
		{"chat template on vae", chatModel("vae-tiny", "vae", "x"),
			"Chat template on a non-causal-lm model", `Model "m" is a vae model`, "inline.hcl:6:19"},
		{"invalid name", `pipeline "a b" {}`, "Invalid name", `"a b" is not a valid pipeline name`, "inline.hcl:1:10"},
		{"max_batch", `backend "n" { plugin = "modelrt-native" }
model "m" {
  backend   = backend.n
  path      = "../models/gpt2-tiny"
  task      = "causal-lm"
  max_batch = 2.5
}`, "Invalid model attribute", `Model "m": max_batch must be a whole number from 1 to 256, got 2.5.`, "inline.hcl:6:15"},
		{"keep_alive negative", keepAliveModel(`"-5m"`), "Invalid keep_alive", `Model "m": keep_alive -5m0s: must be from 0 to 8760h0m0s.`, "inline.hcl:6:16"},
		{"keep_alive seconds", keepAliveModel(`-1`), "Invalid keep_alive", `Model "m": keep_alive = -1: must be from 0 to 31536000 seconds.`, "inline.hcl:6:16"},
		{"keep_alive type", keepAliveModel(`true`), "Invalid keep_alive", `Model "m": keep_alive is a bool: it must be a duration`, "inline.hcl:6:16"},
		{"keep_alive unit", keepAliveModel(`"5"`), "Invalid keep_alive", `Model "m": keep_alive "5" must be a duration`, "inline.hcl:6:16"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, diags := loadSrc(c.src, LoadOptions{})
			wantOne(t, diags, cfg.Files, c.summary, c.detail, c.at)
		})
	}
}

func TestStageGraph(t *testing.T) {
	cfg := loadGood(t, fixtures+"good/text-image-chain", LoadOptions{})
	p := cfg.Pipelines["caption_and_image"]
	var order []string
	for _, s := range p.Stages {
		order = append(order, s.Name+"<"+strings.Join(s.DependsOn, ","))
	}
	if want := []string{"gen<", "z<gen", "direct<z", "save<direct"}; !reflect.DeepEqual(order, want) {
		t.Errorf("stages %v, want %v", order, want)
	}
	if got := p.ModelNames(); !reflect.DeepEqual(got, []string{"gpt2", "vae"}) {
		t.Errorf("ModelNames %v, want [gpt2 vae]", got)
	}
	if got := p.BackendNames(); !reflect.DeepEqual(got, []string{"native"}) {
		t.Errorf("BackendNames %v, want [native]", got)
	}
	cfg = loadGood(t, fixtures+"good/complete-onnxrt", LoadOptions{})
	if got := cfg.Pipelines["logits"].ModelNames(); !reflect.DeepEqual(got, []string{"gpt2_graph"}) {
		t.Errorf("logits ModelNames %v, want [gpt2_graph]", got)
	}

	// Two independent branches joined at the end: declaration order is kept
	// among independent stages, and the waves put the branches side by side.
	cfg, diags := loadSrc(gpt2Prelude+`pipeline "p" {
  stage "join" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = "${stage.left.text}${stage.right.text}"
  }
  stage "left" {
    use       = "detokenize"
    tokenizer = model.gpt2
    ids       = stage.ids.ids
  }
  stage "right" {
    use       = "detokenize"
    tokenizer = model.gpt2
    ids       = [1, 2]
  }
  stage "ids" {
    use       = "tokenize"
    tokenizer = model.gpt2
    text      = "x"
  }
}`, LoadOptions{})
	if len(diags) > 0 {
		t.Fatal(render(t, diags, cfg.Files))
	}
	p = cfg.Pipelines["p"]
	var names []string
	for _, s := range p.Stages {
		names = append(names, s.Name)
	}
	if want := []string{"ids", "left", "right", "join"}; !reflect.DeepEqual(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
	if got := p.Stage("join").DependsOn; !reflect.DeepEqual(got, []string{"left", "right"}) {
		t.Errorf("join depends on %v, want [left right]", got)
	}
	var waves []string
	for _, w := range p.Waves() {
		var ns []string
		for _, s := range w {
			ns = append(ns, s.Name)
		}
		waves = append(waves, strings.Join(ns, "+"))
	}
	if want := []string{"ids+right", "left", "join"}; !reflect.DeepEqual(waves, want) {
		t.Errorf("waves %v, want %v", waves, want)
	}
}

func TestTopoOrder(t *testing.T) {
	cases := []struct {
		nodes  []string
		deps   map[string][]string
		order  []string
		cycles [][]string
	}{
		{[]string{"a", "b", "c"}, nil, []string{"a", "b", "c"}, nil},
		{[]string{"a", "b", "c"}, map[string][]string{"a": {"c"}, "b": {"a"}}, []string{"c", "a", "b"}, nil},
		{[]string{"a"}, map[string][]string{"a": {"a"}}, []string{"a"}, [][]string{{"a", "a"}}},
		{[]string{"a", "b", "c", "d"}, map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"c"}},
			[]string{"c", "b", "a", "d"}, [][]string{{"a", "b", "c", "a"}}},
		{[]string{"a", "b", "c", "d"}, map[string][]string{"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}},
			[]string{"b", "a", "d", "c"}, [][]string{{"a", "b", "a"}, {"c", "d", "c"}}},
	}
	for i, c := range cases {
		order, cycles := topoOrder(c.nodes, c.deps)
		if !reflect.DeepEqual(order, c.order) || !reflect.DeepEqual(cycles, c.cycles) {
			t.Errorf("case %d: order %v cycles %v, want %v %v", i, order, cycles, c.order, c.cycles)
		}
	}
}

func TestEvalStage(t *testing.T) {
	cfg := loadGood(t, completeNative, LoadOptions{})
	p := cfg.Pipelines["complete"]
	inputs, diags := p.BindInputs(map[string]string{"prompt": "Hello", "seed": "7"})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	ids := cty.ListVal([]cty.Value{cty.NumberIntVal(15496)})
	v := Values{Inputs: inputs, Stages: map[string]map[string]cty.Value{"ids": {"ids": ids}}}

	tok, diags := EvalStage(p.Stage("ids"), v)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if !tok["text"].RawEquals(cty.StringVal("Hello")) || tok["tokenizer"].GetAttr("name").AsString() != "gpt2" {
		t.Errorf("tokenize got %#v", tok)
	}

	gen, diags := EvalStage(p.Stage("gen"), v)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	checks := map[string]cty.Value{
		"input_ids":      ids,
		"max_new_tokens": cty.NumberIntVal(16),
		"prompt":         cty.NullVal(cty.String),
		"stop":           cty.NullVal(cty.List(cty.String)),
	}
	for k, w := range checks {
		if !gen[k].RawEquals(w) {
			t.Errorf("generate %s = %#v, want %#v", k, gen[k], w)
		}
	}
	s := gen["sampling"]
	for k, w := range map[string]cty.Value{
		"temperature": cty.NumberFloatVal(0.8), "top_k": cty.NumberIntVal(40), "top_p": cty.NumberFloatVal(0.95),
		"repetition_penalty": cty.NumberFloatVal(1), "seed": cty.NumberIntVal(7),
	} {
		if got := s.GetAttr(k); !got.Equals(w).True() {
			t.Errorf("sampling.%s = %#v, want %#v", k, got, w)
		}
	}
	if m := gen["model"]; m.GetAttr("path").AsString() != cfg.Models["gpt2"].Path || m.GetAttr("task").AsString() != TaskCausalLM {
		t.Errorf("model ref %#v", m)
	}

	// A stage whose dependency has not run yet, and a run-time value of the
	// wrong type.
	_, diags = EvalStage(p.Stage("text"), v)
	wantOne(t, diags, cfg.Files, "Value not available", "stage.gen.ids has no value yet", "good/complete-native/pipeline.hcl:59:17")
	v.Stages["gen"] = map[string]cty.Value{"ids": cty.StringVal("not ids"), "text": cty.StringVal("")}
	_, diags = EvalStage(p.Stage("text"), v)
	wantOne(t, diags, cfg.Files, "Incorrect attribute value type", "list of number required", "good/complete-native/pipeline.hcl:59:17")

	v.Stages["gen"] = map[string]cty.Value{"ids": ids, "text": cty.StringVal("!")}
	v.Stages["text"] = map[string]cty.Value{"text": cty.StringVal("Hello!")}
	outs, diags := EvalOutputs(p, v)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if !outs["text"].RawEquals(cty.StringVal("Hello!")) || !outs["new_tokens"].RawEquals(cty.NumberIntVal(0)) {
		t.Errorf("outputs %#v", outs)
	}
}

func TestEvalStageCapsules(t *testing.T) {
	cfg := loadGood(t, fixtures+"good/vae-reconstruct", LoadOptions{})
	p := cfg.Pipelines["reconstruct"]
	inputs, diags := p.BindInputs(map[string]string{"image": "cat.png"})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	type img struct{ w, h int }
	payload := &img{8, 8}
	v := Values{Inputs: inputs, Stages: map[string]map[string]cty.Value{"load": {"image": cty.CapsuleVal(Image, payload)}}}
	enc, diags := EvalStage(p.Stage("enc"), v)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if got := enc["image"].EncapsulatedValue(); got != payload {
		t.Errorf("image payload %v, want %v", got, payload)
	}
	// A tensor where an image belongs.
	v.Stages["load"]["image"] = cty.CapsuleVal(Tensor, payload)
	_, diags = EvalStage(p.Stage("enc"), v)
	wantOne(t, diags, cfg.Files, "Incorrect attribute value type", "image required", "good/vae-reconstruct/pipeline.hcl:28:13")

	z, diags := EvalStage(p.Stage("z"), Values{Inputs: inputs, Stages: map[string]map[string]cty.Value{
		"enc": {"mean": cty.CapsuleVal(Tensor, payload), "logvar": cty.CapsuleVal(Tensor, payload), "latent": cty.CapsuleVal(Tensor, payload)}}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if !z["apply_scaling_factor"].RawEquals(cty.False) || !z["seed"].RawEquals(cty.NumberIntVal(0)) || !z["shape"].IsNull() {
		t.Errorf("latent.sample got %#v", z)
	}
}

func TestFunctions(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin.txt"), []byte{0xff, 0xfe}, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MODELRT_TEST_GREETING", "hello")
	cases := []struct{ expr, want, err string }{
		{`file("p.txt")`, "hi", ""},
		{`file("./sub/../p.txt")`, "hi", ""},
		{`file("link.txt")`, "", "link.txt"},
		{`file("` + outside + `")`, "", "absolute path"},
		{`file("../x")`, "", "leaves the configuration directory"},
		{`file("missing.txt")`, "", `no file "missing.txt"`},
		{`file("bin.txt")`, "", "not valid UTF-8"},
		{`env("MODELRT_TEST_GREETING")`, "hello", ""},
		{`env("MODELRT_TEST_UNSET", "dflt")`, "dflt", ""},
		{`env("MODELRT_TEST_UNSET")`, "", "is not set"},
		{`env("PATH", "x")`, "", "starts with MODELRT_"},
		{`join(",", [upper("a"), format("%03d", 7)])`, "A,007", ""},
		{`jsonencode({a = [1, 2]})`, `{"a":[1,2]}`, ""},
		{`format("%d %d %d", length("héllo"), length([1, 2]), length({a = 1}))`, "5 2 1", ""},
		{`try(tostring(file("missing.txt")), "fallback")`, "fallback", ""},
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		cfg, diags := LoadSource(filepath.Join(dir, "f.hcl"), []byte("locals {\n  v = "+c.expr+"\n}\n"), LoadOptions{})
		if c.err != "" {
			if !diags.HasErrors() || !strings.Contains(diags.Error(), c.err) {
				t.Errorf("%s: diagnostics %v, want one containing %q", c.expr, diags, c.err)
			}
			continue
		}
		if diags.HasErrors() {
			t.Errorf("%s: %s", c.expr, diags.Error())
			continue
		}
		if got := cfg.Locals["v"].Value; !got.RawEquals(cty.StringVal(c.want)) {
			t.Errorf("%s = %#v, want %q", c.expr, got, c.want)
		}
	}
}

func TestWriteDiagnosticsReadsFiles(t *testing.T) {
	diags := Validate(fixtures+"bad/cycle.hcl", LoadOptions{})
	out := render(t, diags, nil)
	for _, want := range []string{"Error: Cycle between stages", "cycle.hcl line 15", "15:     ids       = stage.b.ids"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCatalogueConsistent(t *testing.T) {
	for _, st := range catalogue() {
		for _, alt := range st.Alternatives {
			for _, n := range alt {
				if p := st.Input(n); p == nil || p.Required {
					t.Errorf("%s: alternative %q must be an optional input", st.Name, n)
				}
			}
		}
		params := append([]Param(nil), st.Inputs...)
		for _, b := range st.Blocks {
			params = append(params, b.Params...)
		}
		for _, p := range params {
			if p.Default != cty.NilVal && !p.Default.Type().Equals(p.Type) {
				t.Errorf("%s.%s: default of type %s, want %s", st.Name, p.Name, TypeName(p.Default.Type()), TypeName(p.Type))
			}
			if p.Default != cty.NilVal {
				if err := p.checkValue(p.Default); err != nil {
					t.Errorf("%s.%s: default violates its constraints: %v", st.Name, p.Name, err)
				}
			}
			for _, task := range p.Tasks {
				if !slices.Contains(Tasks, task) {
					t.Errorf("%s.%s: unknown task %q", st.Name, p.Name, task)
				}
			}
		}
		if len(st.Outputs) == 0 {
			t.Errorf("%s: no outputs", st.Name)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	empty := t.TempDir()
	_, diags := Load(empty, LoadOptions{})
	if len(diags) != 1 || diags[0].Summary != "No configuration files" {
		t.Errorf("empty directory: %v", diags)
	}
	_, diags = Load(filepath.Join(empty, "nope.hcl"), LoadOptions{})
	if len(diags) != 1 || diags[0].Summary != "Cannot read configuration" {
		t.Errorf("missing file: %v", diags)
	}
}

// TestEvalStageConcurrent evaluates independent stages at once, as an
// engine running a wave does; run with -race to check that evaluation only
// reads the Config.
func TestEvalStageConcurrent(t *testing.T) {
	cfg := loadGood(t, completeNative, LoadOptions{})
	p := cfg.Pipelines["complete"]
	inputs, _ := p.BindInputs(map[string]string{"prompt": "Hello"})
	ids := cty.ListVal([]cty.Value{cty.NumberIntVal(1)})
	v := Values{Inputs: inputs, Stages: map[string]map[string]cty.Value{
		"ids": {"ids": ids}, "gen": {"ids": ids, "text": cty.StringVal("x")}}}
	errs := make(chan error, 3*8)
	for i := 0; i < 8; i++ {
		for _, name := range []string{"ids", "gen", "text"} {
			go func() {
				_, diags := EvalStage(p.Stage(name), v)
				if diags.HasErrors() {
					errs <- diags
					return
				}
				errs <- nil
			}()
		}
	}
	for i := 0; i < 3*8; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// chatModel is a configuration of one model with a chat_template.
func chatModel(dir, task, tmpl string) string {
	return fmt.Sprintf(`backend "n" { plugin = "modelrt-native" }
model "m" {
  backend       = backend.n
  path          = "../models/%s"
  task          = %q
  chat_template = %q
}`, dir, task, tmpl)
}

func keepAliveModel(v string) string {
	return fmt.Sprintf(`backend "n" { plugin = "modelrt-native" }
model "m" {
  backend    = backend.n
  path       = "../models/gpt2-tiny"
  task       = "causal-lm"
  keep_alive = %s
}`, v)
}

// TestKeepAlive: keep_alive reaches the Model as a duration, from a string or a number of
// seconds; "0" and absent are 0 (keep loaded).
func TestKeepAlive(t *testing.T) {
	for v, want := range map[string]time.Duration{`"300ms"`: 300 * time.Millisecond, `"5m"`: 5 * time.Minute,
		`"1h30m"`: 90 * time.Minute, `"0"`: 0, `0`: 0, `2.5`: 2500 * time.Millisecond} {
		cfg, diags := loadSrc(keepAliveModel(v), LoadOptions{})
		if diags.HasErrors() {
			t.Fatalf("keep_alive = %s: %v", v, diags)
		}
		if got := cfg.Models["m"].KeepAlive; got != want {
			t.Errorf("keep_alive = %s: %v, want %v", v, got, want)
		}
	}
	cfg, diags := loadSrc(`backend "n" { plugin = "modelrt-native" }
model "m" {
  backend = backend.n
  path    = "../models/gpt2-tiny"
  task    = "causal-lm"
}`, LoadOptions{})
	if diags.HasErrors() || cfg.Models["m"].KeepAlive != 0 {
		t.Errorf("absent keep_alive: %v %v", cfg.Models["m"].KeepAlive, diags)
	}
}

// TestSchedulingAttributes: max_batch and prefill_chunk reach the Model; absent, they are 0.
func TestSchedulingAttributes(t *testing.T) {
	cfg, diags := loadSrc(`backend "n" { plugin = "modelrt-native" }
model "m" {
  backend       = backend.n
  path          = "../models/gpt2-tiny"
  task          = "causal-lm"
  max_batch     = 4
  prefill_chunk = 16
}
model "d" {
  backend = backend.n
  path    = "../models/gpt2-tiny"
  task    = "causal-lm"
}`, LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if m, d := cfg.Models["m"], cfg.Models["d"]; m.MaxBatch != 4 || m.PrefillChunk != 16 || d.MaxBatch != 0 || d.PrefillChunk != 0 {
		t.Errorf("m: max_batch %d prefill_chunk %d (want 4, 16); d: %d, %d (want 0, 0)", m.MaxBatch, m.PrefillChunk, d.MaxBatch, d.PrefillChunk)
	}
}

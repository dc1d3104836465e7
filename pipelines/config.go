package pipelines

import (
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Config is one loaded configuration: every .hcl file of a directory (or a
// single file) merged. Load returns a non-nil Config even when it reports
// errors, so that Files can render the diagnostics; a Config with errors
// must not be run.
type Config struct {
	// Dir is the absolute directory of the configuration; relative model
	// paths and file() arguments resolve against it.
	Dir string
	// Files maps each parsed file name to its parsed form, for
	// WriteDiagnostics' source snippets.
	Files map[string]*hcl.File

	Variables map[string]*Variable
	Locals    map[string]*Local
	Backends  map[string]*Backend
	Models    map[string]*Model
	Pipelines map[string]*Pipeline

	funcs map[string]function.Function
}

// PipelineNames lists the configuration's pipelines, sorted.
func (c *Config) PipelineNames() []string {
	names := make([]string, 0, len(c.Pipelines))
	for n := range c.Pipelines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Variable is a `variable "name" { type, default, description }` block.
type Variable struct {
	Name        string
	Description string
	Type        cty.Type
	// Default is cty.NilVal when the variable is required.
	Default cty.Value
	// Value is the bound value: from LoadOptions.Vars, else Default.
	Value     cty.Value
	DeclRange hcl.Range
	TypeRange hcl.Range
}

// Local is one attribute of a `locals { }` block.
type Local struct {
	Name  string
	Expr  hcl.Expression
	Value cty.Value
	Range hcl.Range
}

// Backend is a `backend "name" { plugin = "...", config { ... } }` block.
type Backend struct {
	Name string
	// Plugin is the plugin as written: a name the engine looks up
	// ("modelrt-onnxrt") or a path.
	Plugin string
	// PluginPath is the absolute path of Plugin when Plugin is a path (it
	// contains a slash; relative to the configuration directory), else "".
	PluginPath  string
	PluginRange hcl.Range
	// ConfigBody is the config block's body, nil without one.
	ConfigBody hcl.Body
	// Config is the decoded config block: an object typed by the plugin's
	// schema when LoadOptions.BackendSchemas provided one, else the object of
	// its attributes as written. cty.EmptyObjectVal without a config block.
	Config    cty.Value
	DeclRange hcl.Range
}

// Model is a `model "name" { backend, path, task, options }` block.
type Model struct {
	Name        string
	BackendName string
	Backend     *Backend
	// Path is the absolute model directory (or file).
	Path string
	Task string
	// Options is the options attribute's value, an object of strings,
	// numbers and bools, or null; OptionStrings gives it as the backend
	// receives it.
	Options cty.Value
	// ChatTemplate is the chat_template attribute parsed (causal-lm models only); nil when
	// the model declares none (DefaultChatTemplate applies).
	ChatTemplate *ChatTemplate
	// MaxBatch and PrefillChunk are the max_batch and prefill_chunk attributes of a causal-lm
	// model (0: absent): how many generations share one step of its continuous-batching
	// scheduler, and how many prompt tokens a generation feeds per step (runtime/batch).
	MaxBatch, PrefillChunk int
	// KeepAlive is the keep_alive attribute: how long the model may sit idle before the daemon
	// unloads it (the next request that needs it loads it again). 0, the default: keep it
	// loaded.
	KeepAlive time.Duration
	DeclRange hcl.Range
	PathRange hcl.Range
}

// Pipeline is a `pipeline "name" { description, input, stage, output }`
// block.
type Pipeline struct {
	Name        string
	Description string
	// Inputs and Outputs are in declaration order.
	Inputs []*Input
	// Stages are in a topological order: every stage after the stages it
	// depends on (declaration order among independent stages).
	Stages    []*Stage
	Outputs   []*Output
	DeclRange hcl.Range

	cfg *Config
}

// Input returns the pipeline input called name, or nil.
func (p *Pipeline) Input(name string) *Input {
	for _, in := range p.Inputs {
		if in.Name == name {
			return in
		}
	}
	return nil
}

// Stage returns the stage called name, or nil.
func (p *Pipeline) Stage(name string) *Stage {
	for _, s := range p.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ModelNames lists the models the pipeline's stages and outputs refer to,
// sorted: what an engine must load to run it. Models can only be reached
// through model.<name> references in a pipeline (locals and variables
// cannot hold them), so this is complete.
func (p *Pipeline) ModelNames() []string {
	seen := map[string]bool{}
	for _, r := range p.refs() {
		if r.Kind == RefModel {
			seen[r.Name] = true
		}
	}
	return keys(seen)
}

// BackendNames lists the backends the pipeline needs, sorted: those of its
// models and any it refers to directly.
func (p *Pipeline) BackendNames() []string {
	seen := map[string]bool{}
	for _, m := range p.ModelNames() {
		if b := p.cfg.Models[m].BackendName; b != "" {
			seen[b] = true
		}
	}
	for _, r := range p.refs() {
		if r.Kind == RefBackend {
			seen[r.Name] = true
		}
	}
	return keys(seen)
}

func (p *Pipeline) refs() []Reference {
	var out []Reference
	for _, s := range p.Stages {
		out = append(out, s.Refs...)
	}
	for _, o := range p.Outputs {
		out = append(out, o.Refs...)
	}
	return out
}

// Waves groups the stages into levels: every stage of a wave depends only on
// stages of earlier waves, so the stages of one wave may run concurrently.
// An engine that schedules on DependsOn directly can start a stage as soon
// as its own dependencies finish; Waves is the simpler barrier schedule.
func (p *Pipeline) Waves() [][]*Stage {
	level := map[string]int{}
	var waves [][]*Stage
	for _, s := range p.Stages {
		l := 0
		for _, d := range s.DependsOn {
			if level[d]+1 > l {
				l = level[d] + 1
			}
		}
		level[s.Name] = l
		for len(waves) <= l {
			waves = append(waves, nil)
		}
		waves[l] = append(waves[l], s)
	}
	return waves
}

// Input is an `input "name" { type, default, description }` block of a
// pipeline.
type Input struct {
	Name        string
	Description string
	Type        cty.Type
	// Default is cty.NilVal when the input is required.
	Default   cty.Value
	DeclRange hcl.Range
	TypeRange hcl.Range
}

// Required reports whether a run must give the input a value.
func (in *Input) Required() bool { return in.Default == cty.NilVal }

// Stage is a `stage "name" { use = "...", ... }` block. Its attributes are
// not evaluated at load time: the engine calls EvalStage once the stages in
// DependsOn have produced their outputs.
type Stage struct {
	Name string
	Use  string
	// Type is the catalogue entry for Use.
	Type *StageType
	// Attributes are the stage's inputs as written, keyed by name.
	Attributes hcl.Attributes
	// Blocks are the nested blocks (sampling) keyed by type; their bodies'
	// attributes are in BlockAttributes.
	Blocks          map[string]*hcl.Block
	BlockAttributes map[string]hcl.Attributes
	// Refs are every reference the stage's expressions make.
	Refs []Reference
	// DependsOn names the stages this one reads outputs of, in pipeline
	// order.
	DependsOn []string
	DeclRange hcl.Range
	UseRange  hcl.Range

	pipeline *Pipeline
}

// Pipeline returns the pipeline the stage belongs to.
func (s *Stage) Pipeline() *Pipeline { return s.pipeline }

// Output is an `output "name" { value, description }` block of a pipeline.
type Output struct {
	Name        string
	Description string
	Expr        hcl.Expression
	Refs        []Reference
	DeclRange   hcl.Range
}

// Values holds the run-time values that stage and output expressions read:
// the pipeline's bound inputs (`input.x`) and the outputs of the stages that
// already ran (`stage.s.out`).
type Values struct {
	Inputs map[string]cty.Value
	Stages map[string]map[string]cty.Value
}

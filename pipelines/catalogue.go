package pipelines

import (
	"fmt"
	"math/big"
	"reflect"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/sdk"
)

// Image is the cty type of an image flowing between stages. It is a capsule
// whose payload the engine owns: wrap with cty.CapsuleVal(Image, ptr) (any
// pointer) and unwrap with v.EncapsulatedValue(). pipelines never looks
// inside, so it does not depend on the engine's image representation.
var Image = cty.Capsule("image", reflect.TypeOf((*any)(nil)).Elem())

// Tensor is the cty type of a tensor (latents, VAE moments, raw graph
// outputs) flowing between stages; a capsule like Image.
var Tensor = cty.Capsule("tensor", reflect.TypeOf((*any)(nil)).Elem())

// ModelRef is the type of `model.<name>`: an object that carries the model's
// name so the engine can look the loaded model up, plus its task, resolved
// path and backend name, readable in expressions (model.gpt2.path).
var ModelRef = cty.Object(map[string]cty.Type{
	"kind": cty.String, "name": cty.String, "task": cty.String,
	"path": cty.String, "backend": cty.String,
})

// BackendRef is the type of `backend.<name>`.
var BackendRef = cty.Object(map[string]cty.Type{
	"kind": cty.String, "name": cty.String, "plugin": cty.String,
})

// TokenIDs is the type of token id sequences: a list of whole numbers.
var TokenIDs = cty.List(cty.Number)

// Model tasks a model block may declare: the SDK's (docs/sdk.md#tasks-and-tensors; a "vae"
// model serves both vae-encode and vae-decode).
const (
	TaskCausalLM = sdk.TaskCausalLM
	TaskVAE      = sdk.TaskVAE
	TaskGraph    = sdk.TaskGraph
)

// Tasks lists the valid values of a model block's task attribute.
var Tasks = []string{TaskCausalLM, TaskVAE, TaskGraph}

// Param describes one typed input or output of a stage type, or one
// attribute of a nested block.
type Param struct {
	Name        string
	Type        cty.Type
	Required    bool
	Description string
	// Default is applied by EvalStage when the attribute is absent; cty.NilVal
	// means the value is null when absent.
	Default cty.Value
	// Tasks, for a ModelRef parameter, lists the model tasks accepted; empty
	// means any task.
	Tasks []string
	// Whole requires a number to be an integer; Min and Max bound it (nil:
	// unbounded), MinOpen excludes Min itself. They make the catalogue
	// documentable as data.
	Whole    bool
	Min, Max *float64
	MinOpen  bool
	// ObjectOrMap marks a cty.DynamicPseudoType parameter that must be an
	// object or map of values (infer's inputs).
	ObjectOrMap bool
}

// BlockParam describes a nested block of a stage (generate's sampling).
// At most one such block is allowed.
type BlockParam struct {
	Name        string
	Description string
	Params      []Param
}

// StageType is one entry of the stage catalogue: what a stage with
// `use = Name` accepts and produces.
type StageType struct {
	Name        string
	Description string
	Inputs      []Param
	Blocks      []BlockParam
	Outputs     []Param
	// Alternatives lists groups of optional inputs of which exactly one group
	// must be set in full (generate: input_ids | prompt).
	Alternatives [][]string
}

// Input returns the input parameter called name, or nil.
func (t *StageType) Input(name string) *Param { return findParam(t.Inputs, name) }

// Output returns the output parameter called name, or nil.
func (t *StageType) Output(name string) *Param { return findParam(t.Outputs, name) }

// Block returns the nested block parameter called name, or nil.
func (t *StageType) Block(name string) *BlockParam {
	for i := range t.Blocks {
		if t.Blocks[i].Name == name {
			return &t.Blocks[i]
		}
	}
	return nil
}

// OutputNames lists the stage type's output names in catalogue order.
func (t *StageType) OutputNames() []string {
	names := make([]string, len(t.Outputs))
	for i, o := range t.Outputs {
		names[i] = o.Name
	}
	return names
}

// outputType is the object type of `stage.<name>` for a stage of this type.
func (t *StageType) outputType() cty.Type {
	attrs := make(map[string]cty.Type, len(t.Outputs))
	for _, o := range t.Outputs {
		attrs[o.Name] = o.Type
	}
	return cty.Object(attrs)
}

// schema is the body schema of a stage of this type, without `use`.
func (t *StageType) schema() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, p := range t.Inputs {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: p.Name, Required: p.Required})
	}
	for _, b := range t.Blocks {
		s.Blocks = append(s.Blocks, hcl.BlockHeaderSchema{Type: b.Name})
	}
	return s
}

func (b *BlockParam) schema() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, p := range b.Params {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: p.Name, Required: p.Required})
	}
	return s
}

func findParam(ps []Param, name string) *Param {
	for i := range ps {
		if ps[i].Name == name {
			return &ps[i]
		}
	}
	return nil
}

func num(f float64) *float64 { return &f }

// Catalogue is the set of stage types a pipeline may `use`, keyed by name.
// It is data: the engine dispatches on StageType.Name, EvalStage type-checks
// against it, and docs/pipelines.md is generated from it (CatalogueMarkdown).
var Catalogue = map[string]*StageType{}

func init() {
	for _, t := range catalogue() {
		Catalogue[t.Name] = t
	}
}

func catalogue() []*StageType {
	tokenizer := Param{Name: "tokenizer", Type: ModelRef, Required: true, Tasks: []string{TaskCausalLM},
		Description: "model whose directory holds the tokenizer files"}
	return []*StageType{
		{
			Name:        "tokenize",
			Description: "Encodes text into token ids with a model's tokenizer (GPT-2 byte-level BPE).",
			Inputs: []Param{
				tokenizer,
				{Name: "text", Type: cty.String, Required: true, Description: "text to encode"},
			},
			Outputs: []Param{{Name: "ids", Type: TokenIDs, Description: "token ids"}},
		},
		{
			Name:        "detokenize",
			Description: "Decodes token ids into text with a model's tokenizer.",
			Inputs: []Param{
				tokenizer,
				{Name: "ids", Type: TokenIDs, Required: true, Description: "token ids to decode"},
			},
			Outputs: []Param{{Name: "text", Type: cty.String, Description: "decoded text"}},
		},
		{
			Name: "generate",
			Description: "Autoregressive decoding with a causal-lm model: one backend forward pass per token " +
				"(KV cache kept by the backend), sampling on the host. Without a sampling block decoding is greedy.",
			Inputs: []Param{
				{Name: "model", Type: ModelRef, Required: true, Tasks: []string{TaskCausalLM}, Description: "the causal-lm model"},
				{Name: "input_ids", Type: TokenIDs, Description: "prompt as token ids"},
				{Name: "prompt", Type: cty.String, Description: "prompt as text, tokenized with the model's tokenizer"},
				{Name: "max_new_tokens", Type: cty.Number, Default: cty.NumberIntVal(64), Whole: true, Min: num(1),
					Description: "number of tokens to generate at most"},
				{Name: "stop", Type: cty.List(cty.String),
					Description: "stop sequences: generation ends when the generated text contains one (it is kept out of text)"},
			},
			Blocks: []BlockParam{{
				Name:        "sampling",
				Description: "sampling parameters; absent means greedy (argmax) decoding",
				Params: []Param{
					{Name: "temperature", Type: cty.Number, Default: cty.NumberFloatVal(1), Min: num(0),
						Description: "logits are divided by it; 0 means greedy"},
					{Name: "top_k", Type: cty.Number, Default: cty.NumberIntVal(0), Whole: true, Min: num(0),
						Description: "keep the k most likely tokens; 0 disables"},
					{Name: "top_p", Type: cty.Number, Default: cty.NumberFloatVal(1), Min: num(0), Max: num(1),
						Description: "nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 disables"},
					{Name: "repetition_penalty", Type: cty.Number, Default: cty.NumberFloatVal(1), Min: num(0), MinOpen: true,
						Description: "CTRL-style penalty on already generated tokens; 1 disables"},
					{Name: "seed", Type: cty.Number, Whole: true, Min: num(0),
						Description: "random seed; unset means a different draw on each run"},
				},
			}},
			Outputs: []Param{
				{Name: "ids", Type: TokenIDs, Description: "prompt ids followed by the generated ids"},
				{Name: "text", Type: cty.String, Description: "the generated text only (prompt excluded)"},
			},
			Alternatives: [][]string{{"input_ids"}, {"prompt"}},
		},
		{
			Name:        "image.load",
			Description: "Reads a PNG or JPEG file into an image (C,H,W, values in [-1,1] for the VAE).",
			Inputs: []Param{
				{Name: "path", Type: cty.String, Required: true,
					Description: "image file; relative paths are relative to the working directory (use path.root for the configuration's)"},
			},
			Outputs: []Param{{Name: "image", Type: Image, Description: "the decoded image"}},
		},
		{
			Name:        "image.save",
			Description: "Writes an image as PNG.",
			Inputs: []Param{
				{Name: "image", Type: Image, Required: true, Description: "image to write"},
				{Name: "path", Type: cty.String, Required: true, Description: "destination file, relative to the working directory"},
				{Name: "columns", Type: cty.Number, Whole: true, Min: num(1),
					Description: "a batch of images is written as one grid of this many columns; unset = one row"},
			},
			Outputs: []Param{{Name: "path", Type: cty.String, Description: "the path written"}},
		},
		{
			Name:        "vae.encode",
			Description: "Runs a VAE encoder: image → the moments of the latent distribution.",
			Inputs: []Param{
				{Name: "model", Type: ModelRef, Required: true, Tasks: []string{TaskVAE}, Description: "the VAE model"},
				{Name: "image", Type: Image, Required: true, Description: "image, height and width multiples of the VAE's downsampling factor"},
			},
			Outputs: []Param{
				{Name: "mean", Type: Tensor, Description: "mean, (B,L,H/f,W/f)"},
				{Name: "logvar", Type: Tensor, Description: "log variance, (B,L,H/f,W/f)"},
				{Name: "latent", Type: Tensor, Description: "the distribution's mode (= mean), unscaled; use latent.sample for a draw"},
			},
		},
		{
			Name:        "vae.decode",
			Description: "Runs a VAE decoder: latent → image.",
			Inputs: []Param{
				{Name: "model", Type: ModelRef, Required: true, Tasks: []string{TaskVAE}, Description: "the VAE model"},
				{Name: "latent", Type: Tensor, Required: true, Description: "latent, (B,L,h,w), unscaled"},
			},
			Outputs: []Param{{Name: "image", Type: Image, Description: "decoded image, (C,h·f,w·f)"}},
		},
		{
			Name: "latent.sample",
			Description: "Draws a latent: from the posterior N(mean, exp(logvar)) given mean and logvar, " +
				"or from the prior N(0, I) given a shape. With apply_scaling_factor, the model's scaling_factor s " +
				"(config.json) maps between the VAE's latent space and the diffusion space: posterior z = (mean + exp(½·logvar)·ε)·s, " +
				"prior z = ε/s (ready for vae.decode).",
			Inputs: []Param{
				{Name: "model", Type: ModelRef, Required: true, Tasks: []string{TaskVAE},
					Description: "the VAE model (latent channels, scaling_factor)"},
				{Name: "mean", Type: Tensor, Description: "posterior mean from vae.encode"},
				{Name: "logvar", Type: Tensor, Description: "posterior log variance from vae.encode"},
				{Name: "shape", Type: cty.List(cty.Number), Description: "prior sample shape [B, L, h, w]"},
				{Name: "seed", Type: cty.Number, Whole: true, Min: num(0), Description: "random seed; unset means a different draw on each run"},
				{Name: "apply_scaling_factor", Type: cty.Bool, Default: cty.False, Description: "apply the model's scaling_factor as above"},
			},
			Outputs:      []Param{{Name: "latent", Type: Tensor, Description: "the sampled latent"}},
			Alternatives: [][]string{{"mean", "logvar"}, {"shape"}},
		},
		{
			Name: "infer",
			Description: "One forward pass of any model with raw named tensors (task graph on the onnxrt backend, " +
				"or any task a backend serves), so a custom backend needs no new stage code.",
			Inputs: []Param{
				{Name: "model", Type: ModelRef, Required: true, Description: "any model"},
				{Name: "inputs", Type: cty.DynamicPseudoType, Required: true, ObjectOrMap: true,
					Description: "named input tensors: `{ name = value }`, each a tensor from another stage, numbers nested in lists " +
						"(the nesting is the shape: `[stage.ids.ids]` is (1,T); int64 when all whole, else float32), " +
						"or `{ dtype = \"float32\", shape = [..], data = [..] }` (see DecodeTensorArg)"},
			},
			Outputs: []Param{{Name: "outputs", Type: cty.Map(Tensor), Description: "named output tensors"}},
		},
		imageGenerateStage(),
	}
}

// StageTypeNames lists the catalogue's names, sorted.
func StageTypeNames() []string {
	names := make([]string, 0, len(Catalogue))
	for n := range Catalogue {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TypeName renders a cty type the way a pipeline author writes it.
func TypeName(ty cty.Type) string {
	switch {
	case ty.Equals(ModelRef):
		return "model"
	case ty.Equals(BackendRef):
		return "backend"
	case ty.Equals(Image):
		return "image"
	case ty.Equals(Tensor):
		return "tensor"
	case ty.IsMapType() && ty.ElementType().Equals(Tensor):
		return "map(tensor)"
	case ty == cty.DynamicPseudoType:
		return "any"
	}
	return typeexpr.TypeString(ty)
}

// constraintText renders a parameter's value constraints for documentation
// and diagnostics ("whole number ≥ 1").
func (p *Param) constraintText() string {
	var parts []string
	if p.Whole {
		parts = append(parts, "whole")
	}
	if p.Min != nil {
		op := "≥"
		if p.MinOpen {
			op = ">"
		}
		parts = append(parts, fmt.Sprintf("%s %g", op, *p.Min))
	}
	if p.Max != nil {
		parts = append(parts, fmt.Sprintf("≤ %g", *p.Max))
	}
	if len(p.Tasks) > 0 {
		parts = append(parts, "task "+strings.Join(p.Tasks, "|"))
	}
	if p.ObjectOrMap {
		parts = append(parts, "object or map")
	}
	return strings.Join(parts, ", ")
}

// checkValue applies the constraints a cty conversion cannot express. v is
// already converted to p.Type; unknown and null values pass.
func (p *Param) checkValue(v cty.Value) error {
	if !v.IsKnown() || v.IsNull() {
		return nil
	}
	switch {
	case p.Type.Equals(ModelRef):
		if v.GetAttr("kind").AsString() != "model" {
			return fmt.Errorf("a model reference is required, like model.gpt2")
		}
		if len(p.Tasks) > 0 {
			task := v.GetAttr("task").AsString()
			for _, t := range p.Tasks {
				if t == task {
					return nil
				}
			}
			return fmt.Errorf("model %q has task %q; this needs a model with task %s",
				v.GetAttr("name").AsString(), task, strings.Join(quoteAll(p.Tasks), " or "))
		}
	case p.Type == cty.Number:
		f := v.AsBigFloat()
		if p.Whole && !f.IsInt() {
			return fmt.Errorf("a whole number is required, got %s", f.Text('g', -1))
		}
		if p.Min != nil {
			c := f.Cmp(big.NewFloat(*p.Min))
			if c < 0 || (p.MinOpen && c == 0) {
				what := "at least"
				if p.MinOpen {
					what = "greater than"
				}
				return fmt.Errorf("must be %s %g, got %s", what, *p.Min, f.Text('g', -1))
			}
		}
		if p.Max != nil && f.Cmp(big.NewFloat(*p.Max)) > 0 {
			return fmt.Errorf("must be at most %g, got %s", *p.Max, f.Text('g', -1))
		}
	case p.ObjectOrMap:
		ty := v.Type()
		if !ty.IsObjectType() && !ty.IsMapType() {
			return fmt.Errorf("an object of named values is required, like { input_ids = stage.ids.ids }")
		}
	}
	return nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// CatalogueMarkdown renders the stage catalogue as the Markdown tables of
// docs/pipelines.md (a test keeps the two equal).
func CatalogueMarkdown() string {
	var b strings.Builder
	row := func(p Param, required string) {
		c := p.constraintText()
		if c != "" {
			c = " (" + c + ")"
		}
		def := ""
		if p.Default != cty.NilVal {
			def = fmt.Sprintf(" Default `%s`.", valueString(p.Default))
		}
		fmt.Fprintf(&b, "| `%s` | `%s`%s | %s | %s.%s |\n", p.Name, TypeName(p.Type), c, required, p.Description, def)
	}
	for _, t := range catalogue() {
		fmt.Fprintf(&b, "### `%s`\n\n%s\n\n", t.Name, t.Description)
		b.WriteString("| input | type | required | description |\n|---|---|---|---|\n")
		for _, p := range t.Inputs {
			req := "no"
			if p.Required {
				req = "yes"
			}
			for _, alt := range t.Alternatives {
				for _, n := range alt {
					if n == p.Name {
						req = "one of"
					}
				}
			}
			row(p, req)
		}
		for _, bl := range t.Blocks {
			fmt.Fprintf(&b, "| `%s { }` | block | no | %s. |\n", bl.Name, bl.Description)
			for _, p := range bl.Params {
				p.Name = bl.Name + "." + p.Name
				row(p, "no")
			}
		}
		if len(t.Alternatives) > 0 {
			var alts []string
			for _, alt := range t.Alternatives {
				alts = append(alts, "`"+strings.Join(alt, "` + `")+"`")
			}
			fmt.Fprintf(&b, "\nExactly one of: %s.\n", strings.Join(alts, " | "))
		}
		b.WriteString("\n| output | type | description |\n|---|---|---|\n")
		for _, p := range t.Outputs {
			fmt.Fprintf(&b, "| `%s` | `%s` | %s. |\n", p.Name, TypeName(p.Type), p.Description)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// valueString renders a small constant for docs and messages.
func valueString(v cty.Value) string {
	switch {
	case v.IsNull():
		return "null"
	case v.Type() == cty.String:
		return fmt.Sprintf("%q", v.AsString())
	case v.Type() == cty.Number:
		return v.AsBigFloat().Text('g', -1)
	case v.Type() == cty.Bool:
		if v.True() {
			return "true"
		}
		return "false"
	}
	return v.GoString()
}

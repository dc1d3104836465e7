package pipelines

import (
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// EvalContext builds the evaluation context of every expression of the
// configuration — the one place that decides what expressions can read (it
// only reads c, so independent stages may be evaluated concurrently):
//
//	var.<name>      bound variable values
//	local.<name>    local values (those evaluated so far while loading)
//	model.<name>    ModelRef objects {kind = "model", name, task, path, backend}
//	backend.<name>  BackendRef objects {kind = "backend", name, plugin}
//	path.root       the configuration directory; path.cwd the working directory
//	input.<name>    v.Inputs (pipelines only; v may be nil)
//	stage.<s>.<o>   v.Stages (pipelines only)
//
// and the function set of functions().
func (c *Config) EvalContext(v *Values) *hcl.EvalContext {
	vars := map[string]cty.Value{}
	vals := map[string]cty.Value{}
	for n, x := range c.Variables {
		if x.Value != cty.NilVal {
			vals[n] = x.Value
		}
	}
	vars["var"] = cty.ObjectVal(vals)

	vals = map[string]cty.Value{}
	for n, l := range c.Locals {
		if l.Value != cty.NilVal {
			vals[n] = l.Value
		}
	}
	vars["local"] = cty.ObjectVal(vals)

	vals = map[string]cty.Value{}
	for n, m := range c.Models {
		vals[n] = m.ref()
	}
	vars["model"] = cty.ObjectVal(vals)

	vals = map[string]cty.Value{}
	for n, b := range c.Backends {
		vals[n] = b.ref()
	}
	vars["backend"] = cty.ObjectVal(vals)

	cwd, err := os.Getwd()
	if err != nil {
		cwd = "."
	}
	vars["path"] = cty.ObjectVal(map[string]cty.Value{"root": cty.StringVal(c.Dir), "cwd": cty.StringVal(cwd)})

	if v != nil {
		vars["input"] = cty.ObjectVal(v.Inputs)
		stages := map[string]cty.Value{}
		for n, outs := range v.Stages {
			stages[n] = cty.ObjectVal(outs)
		}
		vars["stage"] = cty.ObjectVal(stages)
	}
	return &hcl.EvalContext{Variables: vars, Functions: c.funcs}
}

func (m *Model) ref() cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"kind": cty.StringVal("model"), "name": cty.StringVal(m.Name), "task": cty.StringVal(m.Task),
		"path": cty.StringVal(m.Path), "backend": cty.StringVal(m.BackendName),
	})
}

func (b *Backend) ref() cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"kind": cty.StringVal("backend"), "name": cty.StringVal(b.Name), "plugin": cty.StringVal(b.Plugin),
	})
}

// EvalStage evaluates a stage's attributes once the stages it depends on
// have run: v must hold the bound inputs and the outputs of every stage in
// s.DependsOn. The result maps every input of the stage type to its value
// converted to the catalogue type (absent optional inputs: their default, or
// null) and every nested block to an object of its attributes (null when the
// block is absent). Type and constraint violations are diagnostics pointing
// at the attribute.
func EvalStage(s *Stage, v Values) (map[string]cty.Value, hcl.Diagnostics) {
	if s.Type == nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unknown stage type",
			Detail: fmt.Sprintf("Stage %q uses %q, which is not in the catalogue.", s.Name, s.Use), Subject: s.UseRange.Ptr()}}
	}
	if diags := checkAvailable(s.Refs, v); diags.HasErrors() {
		return nil, diags
	}
	return evalStage(s, s.pipeline.cfg.EvalContext(&v), false)
}

// checkAvailable reports references to inputs or stage outputs that v does
// not hold: a scheduling bug in the caller, reported rather than evaluated
// as a confusing "unsupported attribute".
func checkAvailable(refs []Reference, v Values) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, r := range refs {
		var ok bool
		switch r.Kind {
		case RefInput:
			_, ok = v.Inputs[r.Name]
		case RefStage:
			_, ok = v.Stages[r.Name][r.Attr]
		default:
			continue
		}
		if !ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Value not available",
				Detail: fmt.Sprintf("%s has no value yet: it must be bound or computed before this expression is evaluated.", r), Subject: r.Range.Ptr()})
		}
	}
	return diags
}

// evalStage evaluates and type-checks a stage against its catalogue entry.
// static is the validation mode: inputs and stage outputs are unknown values
// of their declared types, so only type errors surface; at run time
// (static false) every value must also be known.
func evalStage(s *Stage, ctx *hcl.EvalContext, static bool) (map[string]cty.Value, hcl.Diagnostics) {
	out := make(map[string]cty.Value, len(s.Type.Inputs)+len(s.Type.Blocks))
	diags := evalParams(s.Type.Inputs, s.Attributes, ctx, static, "stage input", out)
	for _, bp := range s.Type.Blocks {
		attrs := make(map[string]cty.Type, len(bp.Params))
		for _, p := range bp.Params {
			attrs[p.Name] = p.Type
		}
		if s.Blocks[bp.Name] == nil {
			out[bp.Name] = cty.NullVal(cty.Object(attrs))
			continue
		}
		vals := make(map[string]cty.Value, len(bp.Params))
		diags = append(diags, evalParams(bp.Params, s.BlockAttributes[bp.Name], ctx, static, bp.Name+" attribute", vals)...)
		out[bp.Name] = cty.ObjectVal(vals)
	}
	return out, diags
}

func evalParams(params []Param, attrs hcl.Attributes, ctx *hcl.EvalContext, static bool, what string, out map[string]cty.Value) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for i := range params {
		p := &params[i]
		attr := attrs[p.Name]
		if attr == nil {
			if p.Default != cty.NilVal {
				out[p.Name] = p.Default
			} else {
				out[p.Name] = cty.NullVal(p.Type)
			}
			continue
		}
		v, d := evalAs(attr, p.Type, ctx, what)
		diags = append(diags, d...)
		if d.HasErrors() {
			out[p.Name] = cty.UnknownVal(p.Type)
			continue
		}
		if err := p.checkValue(v); err != nil {
			diags = append(diags, attrDiag(attr, nil, "Invalid value for "+what,
				fmt.Sprintf("Inappropriate value for %s %q: %s.", what, p.Name, err)))
		} else if !static && !v.IsWhollyKnown() {
			diags = append(diags, attrDiag(attr, ctx, "Value not available",
				fmt.Sprintf("The value of %s %q is not known yet.", what, p.Name)))
		}
		out[p.Name] = v
	}
	return diags
}

// evalAs evaluates an attribute and converts it to ty; cty.DynamicPseudoType
// accepts any value.
func evalAs(attr *hcl.Attribute, ty cty.Type, ctx *hcl.EvalContext, what string) (cty.Value, hcl.Diagnostics) {
	v, diags := attr.Expr.Value(ctx)
	if diags.HasErrors() {
		return cty.DynamicVal, diags
	}
	if ty == cty.DynamicPseudoType {
		return v, diags
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		msg := errText(err)
		if ty.Equals(ModelRef) {
			// cty would say "object required": name what the object is.
			msg = "a reference to a model block is required, like model.gpt2"
		}
		return cty.DynamicVal, append(diags, attrDiag(attr, ctx, "Incorrect attribute value type",
			fmt.Sprintf("Inappropriate value for %s %q: %s.", what, attr.Name, msg)))
	}
	return cv, diags
}

// errText is a cty conversion error as a clause ("string required, but have
// list of number"); capsule types read "image required".
func errText(err error) string { return strings.TrimSuffix(err.Error(), ".") }

func attrDiag(attr *hcl.Attribute, ctx *hcl.EvalContext, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: summary, Detail: detail,
		Subject: attr.Expr.Range().Ptr(), Context: hcl.RangeBetween(attr.NameRange, attr.Expr.Range()).Ptr(),
		Expression: attr.Expr, EvalContext: ctx,
	}
}

// EvalOutputs evaluates the pipeline's output blocks once every stage ran.
func EvalOutputs(p *Pipeline, v Values) (map[string]cty.Value, hcl.Diagnostics) {
	out := make(map[string]cty.Value, len(p.Outputs))
	var diags hcl.Diagnostics
	ctx := p.cfg.EvalContext(&v)
	for _, o := range p.Outputs {
		if d := checkAvailable(o.Refs, v); d.HasErrors() {
			diags = append(diags, d...)
			continue
		}
		val, d := o.Expr.Value(ctx)
		diags = append(diags, d...)
		out[o.Name] = val
	}
	return out, diags
}

// staticValues are the values of validation: every input and every stage
// output is an unknown value of its declared type, so that evaluating an
// expression checks its types without running anything.
func staticValues(p *Pipeline, stages map[string]*Stage) Values {
	v := Values{Inputs: map[string]cty.Value{}, Stages: map[string]map[string]cty.Value{}}
	for _, in := range p.Inputs {
		v.Inputs[in.Name] = cty.UnknownVal(in.Type)
	}
	for n, s := range stages {
		outs := map[string]cty.Value{}
		if s.Type != nil {
			for _, o := range s.Type.Outputs {
				outs[o.Name] = cty.UnknownVal(o.Type)
			}
		}
		v.Stages[n] = outs
	}
	// A stage of an unknown type (already reported) has unknown outputs of
	// any type, so that its readers report nothing more.
	for _, r := range p.refs() {
		if r.Kind == RefStage && stages[r.Name] != nil && stages[r.Name].Type == nil {
			v.Stages[r.Name][r.Attr] = cty.DynamicVal
		}
	}
	return v
}

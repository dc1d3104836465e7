package pipelines

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// BindInputs binds command-line input values (`--input name=value`) to the
// pipeline's inputs. Text converts to each input's type as -var values do.
// A required input without a value is a diagnostic naming it and pointing at
// its declaration; a value for an undeclared input is a diagnostic too.
func (p *Pipeline) BindInputs(raw map[string]string) (map[string]cty.Value, hcl.Diagnostics) {
	vals := make(map[string]cty.Value, len(raw))
	var diags hcl.Diagnostics
	for _, name := range keys(raw) {
		in := p.Input(name)
		if in == nil {
			continue // reported by bind
		}
		v, err := parseRaw(raw[name], in.Type, "<value for input."+name+">")
		if err != nil {
			diags = append(diags, invalidInput(p, in, fmt.Sprintf("--input %s=%q: %s", name, raw[name], err)))
			continue
		}
		vals[name] = v
	}
	present := make(map[string]bool, len(raw))
	for n := range raw {
		present[n] = true
	}
	return p.bind(vals, present, diags)
}

// BindInputValues binds already typed values (from an API request) to the
// pipeline's inputs, converting each to its input's type.
func (p *Pipeline) BindInputValues(given map[string]cty.Value) (map[string]cty.Value, hcl.Diagnostics) {
	vals := make(map[string]cty.Value, len(given))
	present := make(map[string]bool, len(given))
	var diags hcl.Diagnostics
	for _, name := range keys(given) {
		present[name] = true
		in := p.Input(name)
		if in == nil {
			continue
		}
		v, err := convert.Convert(given[name], in.Type)
		if err != nil {
			diags = append(diags, invalidInput(p, in, errText(err)))
			continue
		}
		vals[name] = v
	}
	return p.bind(vals, present, diags)
}

func invalidInput(p *Pipeline, in *Input, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for input",
		Detail:  fmt.Sprintf("Input %q of pipeline %q: %s. The input is declared here.", in.Name, p.Name, detail),
		Subject: in.TypeRange.Ptr()}
}

func (p *Pipeline) bind(vals map[string]cty.Value, present map[string]bool, diags hcl.Diagnostics) (map[string]cty.Value, hcl.Diagnostics) {
	var names []string
	for _, in := range p.Inputs {
		names = append(names, in.Name)
	}
	for _, n := range keys(present) {
		if p.Input(n) == nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Value for undeclared input",
				Detail:  fmt.Sprintf("A value was given for input %q, but pipeline %q declares no such input.%s", n, p.Name, suggest(n, names)),
				Subject: p.DeclRange.Ptr()})
		}
	}
	for _, in := range p.Inputs {
		if present[in.Name] {
			continue
		}
		if in.Required() {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing required input",
				Detail:  fmt.Sprintf("Pipeline %q needs a value for input %q (it has no default): give it with --input %s=...", p.Name, in.Name, in.Name),
				Subject: in.DeclRange.Ptr()})
			continue
		}
		vals[in.Name] = in.Default
	}
	return vals, diags
}

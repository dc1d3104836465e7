package pipelines

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/modelrt/modelrt/sdk"
)

// ConfigSpec converts a backend's config schema (sdk.ConfigSchema, as the plugin's Describe
// reports it) to the hcldec spec that decodes a config block, so that unknown attributes,
// missing required ones and wrong types are reported by hcldec with their source ranges.
func ConfigSpec(s *sdk.ConfigSchema) (hcldec.ObjectSpec, error) {
	spec := hcldec.ObjectSpec{}
	for _, a := range s.Attributes {
		if !hclsyntax.ValidIdentifier(a.Name) {
			return nil, fmt.Errorf("attribute name %q is not an identifier", a.Name)
		}
		if _, dup := spec[a.Name]; dup {
			return nil, fmt.Errorf("attribute %q declared twice", a.Name)
		}
		expr, diags := hclsyntax.ParseExpression([]byte(a.Type), "<schema>", hcl.InitialPos)
		if diags.HasErrors() {
			return nil, fmt.Errorf("attribute %q: type %q: %s", a.Name, a.Type, diags[0].Detail)
		}
		ty, diags := typeexpr.TypeConstraint(expr)
		if diags.HasErrors() {
			return nil, fmt.Errorf("attribute %q: type %q: %s", a.Name, a.Type, diags[0].Detail)
		}
		spec[a.Name] = &hcldec.AttrSpec{Name: a.Name, Type: ty, Required: a.Required}
	}
	return spec, nil
}

// backendConfig decodes a backend's config block: against the plugin's
// schema when there is one, else as the object of its attributes.
func (l *loader) backendConfig(be *Backend, block *hcl.Block, schema *sdk.ConfigSchema, sc *scope) cty.Value {
	var body hcl.Body = hcl.EmptyBody()
	if block != nil {
		body = block.Body
	}
	if schema == nil {
		if block == nil {
			return cty.EmptyObjectVal
		}
		attrs, diags := body.JustAttributes()
		if !l.add(diags) {
			return cty.DynamicVal
		}
		vals := map[string]cty.Value{}
		for _, a := range sortedAttrs(attrs) {
			if _, d := sc.refs(a.Expr.Variables()); !l.add(d) {
				return cty.DynamicVal
			}
			v, d := a.Expr.Value(l.cfg.EvalContext(nil))
			l.add(d)
			vals[a.Name] = v
		}
		return cty.ObjectVal(vals)
	}
	spec, err := ConfigSpec(schema)
	if err != nil {
		l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid backend config schema",
			Detail:  fmt.Sprintf("Plugin %q of backend %q reported an invalid config schema: %s.", be.Plugin, be.Name, err),
			Subject: be.PluginRange.Ptr()}})
		return cty.DynamicVal
	}
	if block == nil {
		var required []string
		for _, a := range schema.Attributes {
			if a.Required {
				required = append(required, a.Name)
			}
		}
		if len(required) > 0 {
			l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Missing backend config",
				Detail: fmt.Sprintf("Plugin %q of backend %q requires a config block with: %s.",
					be.Plugin, be.Name, strings.Join(required, ", ")),
				Subject: be.DeclRange.Ptr()}})
			return cty.DynamicVal
		}
	}
	if _, d := sc.refs(hcldec.Variables(body, spec)); !l.add(d) {
		return cty.DynamicVal
	}
	v, diags := hcldec.Decode(body, spec, l.cfg.EvalContext(nil))
	l.add(diags)
	return v
}

// ConfigJSON returns the decoded config block as a JSON object, the form
// that crosses the plugin boundary (sdk.ConfigureRequest). Attributes the
// block leaves out are omitted rather than sent as null.
func (b *Backend) ConfigJSON() ([]byte, error) {
	if !b.Config.IsWhollyKnown() || b.Config.IsNull() {
		return nil, fmt.Errorf("pipelines: backend %q: %w", b.Name, ErrNotKnown)
	}
	set := map[string]cty.Value{}
	for it := b.Config.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if !v.IsNull() {
			set[k.AsString()] = v
		}
	}
	obj := cty.ObjectVal(set)
	return ctyjson.Marshal(obj, obj.Type())
}

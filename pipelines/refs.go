package pipelines

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// RefKind is the root name of a reference.
type RefKind string

// Reference roots. path is `path.root` (the configuration directory) and
// `path.cwd` (the working directory).
const (
	RefVar     RefKind = "var"
	RefLocal   RefKind = "local"
	RefModel   RefKind = "model"
	RefBackend RefKind = "backend"
	RefPath    RefKind = "path"
	RefInput   RefKind = "input"
	RefStage   RefKind = "stage"
)

// Reference is one checked reference found in an expression.
type Reference struct {
	Kind RefKind
	// Name is the referenced block or value: the variable, local, model,
	// backend, input or stage name, or path's attribute.
	Name string
	// Attr is the second step: a stage's output name, or a model or
	// backend attribute; "" when absent.
	Attr  string
	Range hcl.Range
}

// String renders the reference as written (stage.ids.ids).
func (r Reference) String() string {
	s := string(r.Kind) + "." + r.Name
	if r.Attr != "" {
		s += "." + r.Attr
	}
	return s
}

var (
	configRoots   = []RefKind{RefVar, RefLocal, RefPath}
	modelRoots    = []RefKind{RefVar, RefLocal, RefPath, RefBackend}
	pipelineRoots = []RefKind{RefVar, RefLocal, RefPath, RefModel, RefBackend, RefInput, RefStage}
)

// scope checks references against what a place of the configuration may
// read: configuration-level blocks see var, local and path; pipelines also
// see models, backends, their inputs and stages.
type scope struct {
	cfg      *Config
	pipeline *Pipeline
	// stages maps the pipeline's stage names while it is being decoded
	// (Pipeline.Stages is ordered only after all references are known).
	stages map[string]*Stage
	roots  []RefKind
	where  string // "a local value", for messages
}

func (sc *scope) allowed(k RefKind) bool {
	for _, r := range sc.roots {
		if r == k {
			return true
		}
	}
	return false
}

// stepName returns the name a traversal step selects: attribute access or a
// string index (stage["ids"]).
func stepName(t hcl.Traverser) (string, bool) {
	switch s := t.(type) {
	case hcl.TraverseAttr:
		return s.Name, true
	case hcl.TraverseIndex:
		if s.Key.IsKnown() && !s.Key.IsNull() && s.Key.Type() == cty.String {
			return s.Key.AsString(), true
		}
	}
	return "", false
}

// refs checks every traversal and returns the references they make. A
// traversal that names something undeclared yields an error diagnostic
// whose Subject is the offending part of the reference.
func (sc *scope) refs(travs []hcl.Traversal) ([]Reference, hcl.Diagnostics) {
	var out []Reference
	var diags hcl.Diagnostics
	for _, t := range travs {
		r, d := sc.ref(t)
		diags = append(diags, d...)
		if !d.HasErrors() {
			out = append(out, r)
		}
	}
	return out, diags
}

func (sc *scope) ref(t hcl.Traversal) (Reference, hcl.Diagnostics) {
	root := RefKind(t.RootName())
	rootRange := t[0].SourceRange()
	errAt := func(rng hcl.Range, summary, detail string) (Reference, hcl.Diagnostics) {
		return Reference{}, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()}}
	}
	var known bool
	for _, k := range pipelineRoots {
		known = known || k == root
	}
	if !known {
		return errAt(rootRange, "Unknown reference",
			fmt.Sprintf("There is no value named %q. References start with one of: %s.%s",
				root, joinKinds(sc.roots), suggest(string(root), kindNames(sc.roots))))
	}
	if !sc.allowed(root) {
		return errAt(rootRange, "Reference not allowed here",
			fmt.Sprintf("%s.* cannot be used in %s; only %s are available there.", root, sc.where, joinKinds(sc.roots)))
	}
	if len(t) < 2 {
		return errAt(rootRange, "Invalid reference",
			fmt.Sprintf("A reference to %q needs a name after it, like %s.", root, example(root)))
	}
	name, ok := stepName(t[1])
	if !ok {
		return errAt(t[1].SourceRange(), "Invalid reference",
			fmt.Sprintf("The name after %q must be an attribute name, like %s.", root, example(root)))
	}
	r := Reference{Kind: root, Name: name, Range: t.SourceRange()}
	nameRange := hcl.RangeBetween(rootRange, t[1].SourceRange())
	var attrRange hcl.Range
	if len(t) > 2 {
		if a, ok := stepName(t[2]); ok {
			r.Attr = a
			attrRange = t[2].SourceRange()
		}
	}
	undeclared := func(what string, names []string) (Reference, hcl.Diagnostics) {
		return errAt(nameRange, "Reference to undeclared "+what,
			fmt.Sprintf("No %s named %q is declared.%s", what, name, suggest(name, names)))
	}
	switch root {
	case RefVar:
		if sc.cfg.Variables[name] == nil {
			return undeclared("variable", keys(sc.cfg.Variables))
		}
	case RefLocal:
		if sc.cfg.Locals[name] == nil {
			return undeclared("local value", keys(sc.cfg.Locals))
		}
	case RefPath:
		if name != "root" && name != "cwd" {
			return errAt(nameRange, "Unsupported path attribute",
				fmt.Sprintf("path has the attributes root (the configuration directory) and cwd (the working directory), not %q.", name))
		}
	case RefBackend:
		if sc.cfg.Backends[name] == nil {
			return undeclared("backend", keys(sc.cfg.Backends))
		}
	case RefModel:
		if sc.cfg.Models[name] == nil {
			return undeclared("model", keys(sc.cfg.Models))
		}
		if len(t) > 2 && !ModelRef.HasAttribute(r.Attr) {
			return errAt(t[2].SourceRange(), "Unsupported model attribute",
				fmt.Sprintf("A model reference has the attributes name, task, path and backend, not %q.", r.Attr))
		}
	case RefInput:
		if sc.pipeline.Input(name) == nil {
			var names []string
			for _, in := range sc.pipeline.Inputs {
				names = append(names, in.Name)
			}
			return errAt(nameRange, "Reference to undeclared input",
				fmt.Sprintf("Pipeline %q declares no input named %q.%s", sc.pipeline.Name, name, suggest(name, names)))
		}
	case RefStage:
		s := sc.stages[name]
		if s == nil {
			return errAt(nameRange, "Reference to undeclared stage",
				fmt.Sprintf("Pipeline %q has no stage named %q.%s", sc.pipeline.Name, name, suggest(name, keys(sc.stages))))
		}
		if r.Attr == "" {
			return errAt(r.Range, "Invalid stage reference",
				fmt.Sprintf("A stage reference must name one of the stage's outputs, like stage.%s.%s.", name, firstOutput(s)))
		}
		if s.Type != nil && s.Type.Output(r.Attr) == nil {
			return errAt(attrRange, "Unsupported stage output",
				fmt.Sprintf("Stage %q (use = %q) has no output %q; its outputs are: %s.%s",
					name, s.Use, r.Attr, strings.Join(s.Type.OutputNames(), ", "), suggest(r.Attr, s.Type.OutputNames())))
		}
	}
	return r, nil
}

func firstOutput(s *Stage) string {
	if s.Type != nil && len(s.Type.Outputs) > 0 {
		return s.Type.Outputs[0].Name
	}
	return "output"
}

func example(k RefKind) string {
	switch k {
	case RefStage:
		return "stage.ids.ids"
	case RefPath:
		return "path.root"
	case RefModel:
		return "model.gpt2"
	case RefBackend:
		return "backend.onnxrt"
	}
	return string(k) + ".name"
}

func kindNames(ks []RefKind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

func joinKinds(ks []RefKind) string { return strings.Join(kindNames(ks), ", ") }

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// suggest returns " Did you mean "x"?" for the closest name within a small
// edit distance, or "".
func suggest(given string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := levenshtein.Distance(given, n, nil); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

package server

import (
	"fmt"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/modelrt/modelrt/pipelines"
)

// pathGuard records which inputs of a pipeline reach the file system: an input read by the
// path of an image.load or image.save stage, or by an argument of file() or env(). A request
// may not set them (they keep the configuration's values), so no request value ever names a
// file. A pipeline whose paths depend on stage outputs — values a request could steer
// through a model — is not served at all.
//
// An input that is exactly the path of image.load stages, and reaches no other file, may
// instead carry an uploaded image: the server writes it to a file of its own and binds the
// input to that file (uploads.go).
type pathGuard struct {
	locked  map[string]string // input → why
	refused string            // why the pipeline is not served, or ""
	images  map[string]bool   // locked inputs that may carry an uploaded image
}

// pathAttrs are the stage attributes that name files.
var pathAttrs = map[string][]string{"image.load": {"path"}, "image.save": {"path"}}

// fsFunctions read the file system or the environment.
var fsFunctions = []string{"file", "env", "templatefile", "fileexists", "filebase64"}

func guardPaths(p *pipelines.Pipeline) *pathGuard {
	g := &pathGuard{locked: map[string]string{}, images: map[string]bool{}}
	// names handles one expression whose value names a file: the inputs it reads are locked,
	// a stage output it reads refuses the pipeline. It returns the inputs.
	names := func(where string, expr hcl.Expression) []string {
		var inputs []string
		for _, tr := range expr.Variables() {
			switch tr.RootName() {
			case "input":
				if n := inputName(tr); n != "" {
					if _, seen := g.locked[n]; !seen {
						g.locked[n] = where
					}
					inputs = append(inputs, n)
				}
			case "stage":
				if g.refused == "" {
					g.refused = where + " depends on stage outputs"
				}
			}
		}
		return inputs
	}
	notImage := map[string]bool{}
	fsCalls := func(where string, expr hcl.Expression) {
		node, ok := expr.(hclsyntax.Node)
		if !ok {
			return
		}
		_ = hclsyntax.VisitAll(node, func(n hclsyntax.Node) hcl.Diagnostics {
			if fc, ok := n.(*hclsyntax.FunctionCallExpr); ok && slices.Contains(fsFunctions, fc.Name) {
				for _, a := range fc.Args {
					for _, in := range names(fmt.Sprintf("%s (an argument of %s())", where, fc.Name), a) {
						notImage[in] = true
					}
				}
			}
			return nil
		})
	}
	for _, s := range p.Stages {
		for _, attr := range pathAttrs[s.Use] {
			a := s.Attributes[attr]
			if a == nil {
				continue
			}
			direct := ""
			if s.Use == "image.load" {
				direct = directInput(a.Expr)
			}
			for _, in := range names(fmt.Sprintf("the %s of stage %q (%s)", attr, s.Name, s.Use), a.Expr) {
				if in == direct {
					g.images[in] = true
				} else {
					notImage[in] = true
				}
			}
		}
		for name, a := range s.Attributes {
			fsCalls(fmt.Sprintf("attribute %s of stage %q", name, s.Name), a.Expr)
		}
		for block, attrs := range s.BlockAttributes {
			for name, a := range attrs {
				fsCalls(fmt.Sprintf("attribute %s.%s of stage %q", block, name, s.Name), a.Expr)
			}
		}
	}
	for _, o := range p.Outputs {
		fsCalls(fmt.Sprintf("output %q", o.Name), o.Expr)
	}
	for in := range notImage {
		delete(g.images, in)
	}
	return g
}

// inputName returns NAME for a traversal input.NAME…, else "".
func inputName(tr hcl.Traversal) string {
	if tr.RootName() != "input" || len(tr) < 2 {
		return ""
	}
	if a, ok := tr[1].(hcl.TraverseAttr); ok {
		return a.Name
	}
	return ""
}

// directInput returns NAME when expr is exactly input.NAME.
func directInput(expr hcl.Expression) string {
	if st, ok := expr.(*hclsyntax.ScopeTraversalExpr); ok && len(st.Traversal) == 2 {
		return inputName(st.Traversal)
	}
	return ""
}

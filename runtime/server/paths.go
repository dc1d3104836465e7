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
type pathGuard struct {
	locked  map[string]string // input → why
	refused string            // why the pipeline is not served, or ""
}

// pathAttrs are the stage attributes that name files.
var pathAttrs = map[string][]string{"image.load": {"path"}, "image.save": {"path"}}

// fsFunctions read the file system or the environment.
var fsFunctions = []string{"file", "env", "templatefile", "fileexists", "filebase64"}

func guardPaths(p *pipelines.Pipeline) *pathGuard {
	g := &pathGuard{locked: map[string]string{}}
	check := func(where string, expr hcl.Expression) {
		for _, tr := range expr.Variables() {
			switch tr.RootName() {
			case "input":
				if len(tr) > 1 {
					if a, ok := tr[1].(hcl.TraverseAttr); ok {
						if _, seen := g.locked[a.Name]; !seen {
							g.locked[a.Name] = where
						}
					}
				}
			case "stage":
				if g.refused == "" {
					g.refused = fmt.Sprintf("%s depends on stage outputs", where)
				}
			}
		}
	}
	// fsCalls finds the arguments of file-system functions inside any expression.
	fsCalls := func(where string, expr hcl.Expression) {
		node, ok := expr.(hclsyntax.Node)
		if !ok {
			return
		}
		_ = hclsyntax.VisitAll(node, func(n hclsyntax.Node) hcl.Diagnostics {
			if fc, ok := n.(*hclsyntax.FunctionCallExpr); ok && slices.Contains(fsFunctions, fc.Name) {
				for _, a := range fc.Args {
					check(fmt.Sprintf("%s (an argument of %s())", where, fc.Name), a)
				}
			}
			return nil
		})
	}
	for _, s := range p.Stages {
		for _, name := range pathAttrs[s.Use] {
			if a := s.Attributes[name]; a != nil {
				check(fmt.Sprintf("the %s of stage %q (%s)", name, s.Name, s.Use), a.Expr)
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
	return g
}

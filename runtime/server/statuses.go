package server

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
)

// noRoute answers a request no route took: 405 with Allow when the path is served with other
// methods, 404 otherwise.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, method)
		}
	}
	if len(allow) == 0 {
		writeError(w, r, errorf(http.StatusNotFound, "not_found", "no route for %s %s", r.Method, r.URL.Path))
		return
	}
	if slices.Contains(allow, http.MethodGet) {
		allow = append(allow, http.MethodHead)
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, r, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s %s: this route takes %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
}

// checkV2InputNames refuses inputs the model does not take (the tensors it declares, or its
// task's contract), naming the ones it does.
func checkV2InputNames(m *engine.Model, inputs []v2Tensor) error {
	specs, _ := modelSpecs(m)
	if len(specs) == 0 {
		return nil
	}
	var names []string
	for _, sp := range specs {
		names = append(names, sp.Name)
	}
	for _, in := range inputs {
		if !slices.Contains(names, in.Name) {
			return badInput(in.Name, "model %q takes no such input (its inputs: %s)", m.Name, strings.Join(names, ", "))
		}
	}
	return nil
}

// clientGone marks a failed read of a request body that is the client's doing: the connection
// closed or reset before the body was in. It is counted as 499 (statusClientClosed), not as a
// bad request.
type clientGone struct{ err error }

func (e *clientGone) Error() string {
	return "the client went away while sending its body: " + e.err.Error()
}
func (e *clientGone) Unwrap() error { return e.err }

// bodyReadError classifies an error of the body's own reader (not a JSON error).
func bodyReadError(err error) error {
	if err == nil || err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	var mbe *http.MaxBytesError
	var ntl *numberTooLong
	if errors.As(err, &mbe) || errors.As(err, &ntl) {
		return err
	}
	return &clientGone{err: err}
}

// redactSavedPaths replaces the files image.save stages wrote, in the outputs that return
// them, by their base names: the server's directories are none of a client's business.
func redactSavedPaths(p *pipelines.Pipeline, resp *pipelineResponse) {
	for _, o := range p.Outputs {
		for _, tr := range o.Expr.Variables() {
			if tr.RootName() != "stage" || len(tr) < 3 {
				continue
			}
			st, ok1 := tr[1].(hcl.TraverseAttr)
			out, ok2 := tr[2].(hcl.TraverseAttr)
			if s := p.Stage(st.Name); ok1 && ok2 && s != nil && s.Use == "image.save" && out.Name == "path" {
				if v, ok := resp.Outputs[o.Name].(string); ok {
					resp.Outputs[o.Name] = filepath.Base(v)
				}
			}
		}
	}
}

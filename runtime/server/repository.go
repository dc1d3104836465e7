package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/modelrt/modelrt/runtime/engine"
)

// KServe's (Triton's) model repository extension, REST form: the index of the models the
// configuration declares with their state, and load and unload of one model. The repository is
// the configuration files: a model is known when a model block declares it, load (re)loads it
// in its backend as the block says, unload frees it there. The gRPC form is in grpc.go
// (RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload).

// repositoryRequest is the body of the three routes, all optional: {"ready": bool} for the
// index, {"parameters": {...}} for load and unload.
type repositoryRequest struct {
	Ready      bool                       `json:"ready"`
	Parameters map[string]json.RawMessage `json:"parameters"`
}

// repositoryEntry is one model of the index.
type repositoryEntry struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
}

// Repository operations (what parseRepositoryRequest checks the parameters against).
const (
	opIndex  = "index"
	opLoad   = "load"
	opUnload = "unload"
)

// parseRepositoryRequest decodes the body of a repository request: empty, or one JSON object
// with the fields of the operation. Load takes no parameters (Triton's "config" and "file:"
// overrides change a model's files; here the configuration files say what a model is);
// unload takes Triton's "unload_dependents" (a boolean: nothing depends on a model but the
// pipelines, which stay declared and fail while it is unloaded).
func parseRepositoryRequest(op string, body []byte) (*repositoryRequest, error) {
	req := &repositoryRequest{}
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	bad := func(format string, args ...any) (*repositoryRequest, error) {
		return nil, errorf(http.StatusBadRequest, "invalid_request", format, args...)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		var se *json.SyntaxError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return bad("malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &ute):
			return bad("%s: want %s, have a JSON %s", ute.Field, jsonTypeName(ute.Type.String()), ute.Value)
		}
		return bad("the %s request body: %v", op, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("trailing data after the JSON value")
	}
	if op == opIndex && req.Parameters != nil {
		return bad("parameters: the index takes none (only \"ready\")")
	}
	if op != opIndex && req.Ready {
		return bad("ready: only the index takes it")
	}
	for _, k := range slices.Sorted(maps.Keys(req.Parameters)) {
		v := req.Parameters[k]
		switch {
		case op == opLoad && (k == "config" || strings.HasPrefix(k, "file:")):
			return bad("parameters.%s: modelrt loads a model as its model block declares it; edit the configuration and send SIGHUP to change it", k)
		case op == opUnload && k == "unload_dependents":
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return bad("parameters.unload_dependents: want a boolean")
			}
		default:
			return bad("parameters.%s: not a parameter of %s", k, op)
		}
	}
	return req, nil
}

// readRepositoryRequest reads and parses the body of a repository request (within the body
// limit).
func readRepositoryRequest(r *http.Request, op string) (*repositoryRequest, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the request body exceeds the limit of %d bytes", mbe.Limit)
		}
		return nil, errorf(http.StatusBadRequest, "invalid_request", "reading the request body: %v", err)
	}
	return parseRepositoryRequest(op, body)
}

func entryOf(ms engine.ModelStatus) repositoryEntry {
	return repositoryEntry{Name: ms.Name, Version: "1", State: string(ms.State), Reason: ms.Reason}
}

// repositoryIndex lists the models of the configuration (version "1", as the rest of v2), or
// with "ready": true only the loaded ones.
func repositoryIndex(e *engine.Engine, ready bool) []repositoryEntry {
	out := []repositoryEntry{}
	for _, ms := range e.Index() {
		if !ready || ms.State == engine.StateReady {
			out = append(out, entryOf(ms))
		}
	}
	return out
}

func (s *Server) repositoryIndex(w http.ResponseWriter, r *http.Request, st *state) {
	labels(w, "repository")
	req, err := readRepositoryRequest(r, opIndex)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, repositoryIndex(st.e, req.Ready))
}

// repositoryModel resolves the {model} of a load or unload: a model the configuration
// declares, or a 404 naming it.
func repositoryModel(e *engine.Engine, name string) error {
	if e.Model(name) != nil {
		return nil
	}
	var names []string
	for _, m := range e.Models() {
		names = append(names, fmt.Sprintf("%q", m.Name))
	}
	return errorf(http.StatusNotFound, "model_not_found", "model %q is not declared in the configuration (it declares %s)", name, strings.Join(names, ", "))
}

func (s *Server) repositoryLoad(w http.ResponseWriter, r *http.Request, st *state) {
	s.repositoryChange(w, r, st, opLoad, st.e.Load)
}

func (s *Server) repositoryUnload(w http.ResponseWriter, r *http.Request, st *state) {
	s.repositoryChange(w, r, st, opUnload, st.e.Unload)
}

// repositoryChange runs a load or an unload and answers with the model's index entry. Both
// wait (within the request timeout): a load for the model to be READY, an unload for the
// requests holding it to finish and the backend to free it.
func (s *Server) repositoryChange(w http.ResponseWriter, r *http.Request, st *state, op string, change func(ctx context.Context, name string) error) {
	lb := labels(w, "repository")
	ctx, cancel := s.withTimeout(w, r)
	defer cancel()
	name := r.PathValue("model")
	if _, err := readRepositoryRequest(r, op); err != nil {
		writeError(w, r, err)
		return
	}
	if err := repositoryModel(st.e, name); err != nil {
		writeError(w, r, err)
		return
	}
	lb.target = name
	if err := change(ctx, name); err != nil {
		writeError(w, r, err)
		return
	}
	ms, _ := st.e.Status(name)
	s.log.Info("repository "+op, "model", name, "state", ms.State)
	writeJSON(w, http.StatusOK, entryOf(ms))
}

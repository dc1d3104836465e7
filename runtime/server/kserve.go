package server

import (
	"context"
	"net/http"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/sdk"
)

// KServe's Open Inference Protocol v2 (the REST form): health, server and model metadata, and
// infer with JSON tensors. Any declared model can be called: a graph model with the tensors it
// declares, a causal-lm model with input_ids (and attention_mask) → logits of every position
// (a full forward pass, no session), a vae model with "image" (encode) or "latent" (decode).

type v2InferRequest struct {
	ID         string            `json:"id"`
	Parameters map[string]any    `json:"parameters"`
	Inputs     []v2Tensor        `json:"inputs"`
	Outputs    []v2RequestOutput `json:"outputs"`
}

type v2Spec struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// forwardedParams are the request parameters passed to the backend: the ones the tensor
// contract defines. Others (a backend's private switches) are not reachable from the network.
var forwardedParams = []string{sdk.ParamLogits, sdk.ParamTask}

func (s *Server) v2Server(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": "modelrt", "version": s.opts.Version, "extensions": []string{"binary_tensor_data", "model_repository"}})
}

func (s *Server) v2Live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"live": true})
}

func (s *Server) v2Ready(w http.ResponseWriter, r *http.Request) {
	if !s.ready(s.Engine()) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]bool{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}

// v2Lookup resolves {model} (and checks {version}: modelrt serves one version of each model,
// "1", and accepts it or none).
func v2Lookup(e *engine.Engine, r *http.Request) (*engine.Model, error) {
	return v2LookupName(e, r.PathValue("model"), r.PathValue("version"))
}

func v2LookupName(e *engine.Engine, name, v string) (*engine.Model, error) {
	m := e.Model(name)
	if m == nil {
		return nil, errorf(http.StatusNotFound, "model_not_found", "model %q is not served here", name)
	}
	if v != "" && v != "1" {
		return nil, errorf(http.StatusNotFound, "model_not_found", "model %q has no version %q (modelrt serves version 1)", name, v)
	}
	return m, nil
}

func (s *Server) v2Model(w http.ResponseWriter, r *http.Request, st *state) {
	m, err := v2Lookup(st.e, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	in, out := modelSpecs(m)
	// The backend's facts (context length, latent channels, downsampling factor, ...) tell a
	// client what shapes to send.
	params := map[string]any{"task": m.Task}
	for k, v := range m.Info.Metadata {
		params[k] = v
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": m.Name, "versions": []string{"1"}, "platform": "modelrt/" + m.BackendName,
		"inputs": in, "outputs": out, "parameters": params,
	})
}

// modelSpecs returns the tensors a model declares, or the task's contract when the backend
// declared none.
func modelSpecs(m *engine.Model) (in, out []v2Spec) {
	conv := func(specs []sdk.TensorSpec) []v2Spec {
		r := []v2Spec{}
		for _, t := range specs {
			r = append(r, v2Spec{Name: t.Name, Datatype: v2Type(t.DType), Shape: t.Shape})
		}
		return r
	}
	in, out = conv(m.Info.Inputs), conv(m.Info.Outputs)
	if len(in) > 0 || len(out) > 0 {
		return in, out
	}
	switch m.Task {
	case pipelines.TaskCausalLM:
		return []v2Spec{{"input_ids", "INT64", []int64{-1, -1}}, {"attention_mask", "INT64", []int64{-1, -1}}},
			[]v2Spec{{"logits", "FP32", []int64{-1, -1, -1}}}
	case pipelines.TaskVAE:
		return []v2Spec{{"image", "FP32", []int64{-1, -1, -1, -1}}, {"latent", "FP32", []int64{-1, -1, -1, -1}}},
			[]v2Spec{{"mean", "FP32", []int64{-1, -1, -1, -1}}, {"logvar", "FP32", []int64{-1, -1, -1, -1}}, {"image", "FP32", []int64{-1, -1, -1, -1}}}
	}
	return in, out
}

func (s *Server) v2ModelReady(w http.ResponseWriter, r *http.Request, st *state) {
	m, err := v2Lookup(st.e, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ready := s.modelReady(st, m)
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"name": m.Name, "ready": ready})
}

// modelReady: not draining, the model loaded (or loaded on demand: keep_alive unloaded it)
// and its backend running.
func (s *Server) modelReady(st *state, m *engine.Model) bool {
	if ms, ok := st.e.Status(m.Name); !ok || !(ms.State == engine.StateReady || ms.OnDemand) {
		return false
	}
	for _, b := range st.e.Backends() {
		if b.Name == m.BackendName && b.State != "running" {
			return false
		}
	}
	return !s.draining.Load()
}

func (s *Server) v2Infer(w http.ResponseWriter, r *http.Request, st *state) {
	lb := labels(w, "infer")
	ctx, cancel := s.withTimeout(w, r)
	defer cancel()
	var req v2InferRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	m, err := v2Lookup(st.e, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	lb.target = m.Name
	err = s.v2Run(ctx, st, m, &req, func(i int) (*sdk.Tensor, error) { return req.Inputs[i].toTensor() },
		func(res *sdk.InferResponse) error { return s.writeV2Response(ctx, w, m, &req, res) })
	if err != nil && !lb.wroteHeader {
		writeError(w, r, err)
	} else if err != nil {
		lb.outcome = classify(err).status
	}
}

// v2Run is one v2 infer of either protocol (REST here, gRPC in grpc.go): req names the input
// tensors and their shapes, which are checked before admission; tensor(i) converts the data of
// input i, and answer sends the backend's response, both within the model's slot.
func (s *Server) v2Run(ctx context.Context, st *state, m *engine.Model, req *v2InferRequest,
	tensor func(i int) (*sdk.Tensor, error), answer func(*sdk.InferResponse) error) error {
	if len(req.Inputs) == 0 {
		return errorf(http.StatusBadRequest, "invalid_request", "inputs: at least one tensor is required")
	}
	if err := checkV2InputNames(m, req.Inputs); err != nil {
		return err
	}
	if err := s.checkLogitsSize(m, req); err != nil {
		return err
	}
	if err := s.checkV2Images(m, req.Inputs); err != nil {
		return err
	}
	backend, err := st.e.Backend(m.Name)
	if err != nil {
		return err
	}
	// The tensors are parsed, and the response built and sent, within the slot, holding the
	// model.
	release, err := s.admitHold(ctx, st, []string{m.Name})
	if err != nil {
		return err
	}
	defer release()
	inputs := make(map[string]*sdk.Tensor, len(req.Inputs))
	for i, in := range req.Inputs {
		if _, dup := inputs[in.Name]; dup {
			return badInput(in.Name, "given twice")
		}
		t, err := tensor(i)
		if err != nil {
			return err
		}
		inputs[in.Name] = t
	}
	ireq := &sdk.InferRequest{Model: m.Name, Inputs: inputs, Params: map[string]string{}}
	for _, k := range forwardedParams {
		if v, ok := req.Parameters[k].(string); ok {
			ireq.Params[k] = v
		}
	}
	if m.Task == pipelines.TaskVAE {
		ireq.Params[sdk.ParamTask] = sdk.VAETask(ireq)
	}
	for _, o := range req.Outputs {
		ireq.Outputs = append(ireq.Outputs, o.Name)
	}
	res, err := backend.Infer(ctx, ireq)
	if err != nil {
		return err
	}
	return answer(res)
}

package server

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/sdk"
)

// DefaultMaxResponseBytes bounds one response built in memory: a v2 answer of input_ids
// [8,64] of a GPT-2 is 291 MB of JSON logits.
const DefaultMaxResponseBytes = 64 << 20

// errResponseTooLarge: a response would exceed Options.MaxResponseBytes.
var errResponseTooLarge = errors.New("server: response too large")

// v2RequestOutput is an output a v2 request asks for, with the binary tensor data extension's
// "binary_data" parameter.
type v2RequestOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters"`
}

// wantBinary reports whether output name goes in binary: its own "binary_data" parameter, else
// the request's "binary_data_output".
func wantBinary(params map[string]any, outs []v2RequestOutput, name string) bool {
	for _, o := range outs {
		if o.Name == name {
			if b, ok := o.Parameters["binary_data"].(bool); ok {
				return b
			}
		}
	}
	b, _ := params["binary_data_output"].(bool)
	return b
}

// writeV2Response answers a v2 infer with the outputs asked for (all when none is named), in
// JSON or binary, within Options.MaxResponseBytes. It runs while the request still holds its
// model's slot, so that responses being built and sent count against the model's limits, and
// it stops sending when the request's context ends (the client is gone or the time is up).
func (s *Server) writeV2Response(ctx context.Context, w http.ResponseWriter, m *engine.Model, req *v2InferRequest, res *sdk.InferResponse) error {
	names, err := v2OutputNames(m, req, res)
	if err != nil {
		return err
	}
	limit := s.opts.MaxResponseBytes
	tooLarge := func() error { return responseTooLarge(m, limit) }
	resp := struct {
		ModelName    string     `json:"model_name"`
		ModelVersion string     `json:"model_version"`
		ID           string     `json:"id,omitempty"`
		Outputs      []v2Tensor `json:"outputs"`
	}{ModelName: m.Name, ModelVersion: "1", ID: req.ID, Outputs: []v2Tensor{}}
	var binary [][]byte
	size := 0
	for _, name := range names {
		t := res.Outputs[name]
		if err := t.Validate(); err != nil {
			return errorf(http.StatusInternalServerError, "internal", "model %q: output %q: %v", m.Name, name, err)
		}
		o := v2Tensor{Name: name, Shape: t.Shape, Datatype: v2Type(t.DType)}
		if o.Shape == nil {
			o.Shape = []int64{}
		}
		if wantBinary(req.Parameters, req.Outputs, name) {
			o.Parameters = map[string]any{"binary_data_size": len(t.Data)}
			binary = append(binary, t.Data)
			size += len(t.Data)
		} else {
			data, err := appendDataLimit(nil, t, limit-size)
			if errors.Is(err, errResponseTooLarge) {
				return tooLarge()
			}
			if err != nil {
				return errorf(http.StatusInternalServerError, "internal", "model %q: output %q: %v", m.Name, name, err)
			}
			o.Data = data
			size += len(data)
		}
		if size > limit {
			return tooLarge()
		}
		resp.Outputs = append(resp.Outputs, o)
	}
	head, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	if len(head)+sumLen(binary) > limit {
		return tooLarge()
	}
	h := w.Header()
	if len(binary) == 0 {
		h.Set("Content-Type", "application/json")
		head = append(head, '\n')
	} else {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Inference-Header-Content-Length", strconv.Itoa(len(head)))
	}
	h.Set("Content-Length", strconv.Itoa(len(head)+sumLen(binary)))
	w.WriteHeader(http.StatusOK)
	for _, part := range append([][]byte{head}, binary...) {
		if err := writeChunks(ctx, w, part); err != nil {
			return err
		}
	}
	return nil
}

// v2OutputNames returns the outputs a v2 request asks for, in its order, or all of them sorted
// when it names none.
func v2OutputNames(m *engine.Model, req *v2InferRequest, res *sdk.InferResponse) ([]string, error) {
	names := slices.Sorted(maps.Keys(res.Outputs))
	if len(req.Outputs) == 0 {
		return names, nil
	}
	names = names[:0]
	for _, o := range req.Outputs {
		if _, ok := res.Outputs[o.Name]; !ok {
			return nil, errorf(http.StatusBadRequest, "invalid_request", "outputs: model %q has no output %q (its outputs: %s)", m.Name, o.Name, strings.Join(slices.Sorted(maps.Keys(res.Outputs)), ", "))
		}
		names = append(names, o.Name)
	}
	return names, nil
}

func responseTooLarge(m *engine.Model, limit int) error {
	return errorf(http.StatusRequestEntityTooLarge, "response_too_large",
		"the response of model %q would exceed the limit of %d bytes (--max-response-bytes): ask for binary data (\"parameters\": {\"binary_data_output\": true}), fewer outputs (\"outputs\": [{\"name\": ...}]), or less (\"parameters\": {\"logits\": \"last\"}, a smaller batch)", m.Name, limit)
}

// checkLogitsSize refuses, before admission, a causal-lm forward pass whose logits alone —
// B·T·vocab float32s, or B·vocab with logits "last" — exceed Options.MaxResponseBytes even in
// binary: the backend would compute them and the host receive them for nothing (input_ids
// [8,64] of GPT-2 is 103 MB of float32s, 291 MB of JSON).
func (s *Server) checkLogitsSize(m *engine.Model, req *v2InferRequest) error {
	vocab := metaInt(m, "vocab_size")
	if m.Task != pipelines.TaskCausalLM || vocab == 0 {
		return nil
	}
	for _, in := range req.Inputs {
		if in.Name != "input_ids" || len(in.Shape) != 2 || in.Shape[0] < 0 || in.Shape[1] < 0 {
			continue
		}
		positions := float64(in.Shape[1])
		if req.Parameters[sdk.ParamLogits] == "last" {
			positions = 1
		}
		if float64(in.Shape[0])*positions*float64(vocab)*4 > float64(s.opts.MaxResponseBytes) {
			return responseTooLarge(m, s.opts.MaxResponseBytes)
		}
	}
	return nil
}

func sumLen(parts [][]byte) int {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return n
}

// writeChunks writes b in pieces, and stops when ctx ends: a client that went away, or one
// that reads too slowly to finish in time, no longer holds the response.
func writeChunks(ctx context.Context, w http.ResponseWriter, b []byte) error {
	const chunk = 1 << 20
	for len(b) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(chunk, len(b))
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

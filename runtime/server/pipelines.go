package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"strings"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/imageio"
	"github.com/modelrt/modelrt/sdk"
)

// pipelineRequest is the body of POST /v1/pipelines/{name}:run.
type pipelineRequest struct {
	Inputs map[string]json.RawMessage `json:"inputs"`
}

type pipelineResponse struct {
	Pipeline string               `json:"pipeline"`
	Outputs  map[string]any       `json:"outputs"`
	Stages   []engine.StageReport `json:"stages"`
	TotalMS  float64              `json:"total_ms"`
}

func (s *Server) listPipelines(w http.ResponseWriter, r *http.Request, st *state) {
	type input struct {
		Name        string `json:"name"`
		Type        string `json:"type"`
		Required    bool   `json:"required"`
		Description string `json:"description,omitempty"`
		// Fixed inputs name files; requests cannot set them. Image inputs take an image
		// instead of the file name.
		Fixed bool `json:"fixed,omitempty"`
		Image bool `json:"image,omitempty"`
	}
	type pipeline struct {
		Name        string   `json:"name"`
		Description string   `json:"description,omitempty"`
		Inputs      []input  `json:"inputs"`
		Outputs     []string `json:"outputs"`
	}
	out := struct {
		Data []pipeline `json:"data"`
	}{Data: []pipeline{}}
	for _, p := range st.e.Pipelines() {
		g := st.guards[p.Name]
		if g.refused != "" {
			continue
		}
		pj := pipeline{Name: p.Name, Description: p.Description, Inputs: []input{}, Outputs: []string{}}
		for _, in := range p.Inputs {
			_, fixed := g.locked[in.Name]
			ij := input{Name: in.Name, Type: pipelines.TypeName(in.Type), Required: in.Required(), Description: in.Description, Fixed: fixed}
			if g.images[in.Name] {
				ij.Type, ij.Fixed, ij.Image = "image", false, true
			}
			pj.Inputs = append(pj.Inputs, ij)
		}
		for _, o := range p.Outputs {
			pj.Outputs = append(pj.Outputs, o.Name)
		}
		out.Data = append(out.Data, pj)
	}
	writeJSON(w, http.StatusOK, out)
}

// runPipeline serves POST /v1/pipelines/{name}:run — JSON in, JSON out, or with
// `Accept: text/event-stream` (or ?stream=true) the generated text as "text" events, each
// finished stage as a "stage" event, then one "outputs" event (or an "error" event).
func (s *Server) runPipeline(w http.ResponseWriter, r *http.Request, st *state) {
	lb := labels(w, "pipeline")
	name, ok := strings.CutSuffix(r.PathValue("name"), ":run")
	if !ok {
		writeError(w, r, errorf(http.StatusNotFound, "not_found", "no route for POST %s (run a pipeline with POST /v1/pipelines/NAME:run)", r.URL.Path))
		return
	}
	ctx, cancel := s.withTimeout(w, r)
	defer cancel()
	var req pipelineRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	var p *pipelines.Pipeline
	for _, q := range st.e.Pipelines() {
		if q.Name == name {
			p = q
		}
	}
	if p == nil {
		writeError(w, r, errorf(http.StatusNotFound, "pipeline_not_found", "pipeline %q does not exist (GET /v1/pipelines lists them)", name))
		return
	}
	lb.target = p.Name
	g := st.guards[p.Name]
	if g.refused != "" {
		writeError(w, r, errorf(http.StatusForbidden, "forbidden", "pipeline %q is not served over HTTP: %s, and the server never lets a request choose a file", p.Name, g.refused))
		return
	}
	// Inputs are converted (uploads written, numbers parsed) within the pipeline's slots.
	release, err := s.admit(ctx, st, p.ModelNames())
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer release()
	var up uploads
	defer up.remove()
	up.limits = s.pipelineImageLimits(st.e, p)
	inputs, err := pipelineInputs(p, g, req.Inputs, &up, s.opts.MaxNumberLen)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Bind now, so that a bad input is a 400 before any stream starts.
	if _, diags := p.BindInputValues(inputs); diags.HasErrors() {
		writeError(w, r, &engine.DiagnosticsError{Diags: diags})
		return
	}

	obs := &pipelineObserver{s: s, p: p}
	streaming := r.URL.Query().Get("stream") == "true" || strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if streaming {
		obs.sse = startSSE(w)
	}
	before := restarts(st.e)
	res, err := st.e.Run(ctx, p.Name, inputs, obs)
	err = up.redact(lostBackend(err, before, restarts(st.e)))
	var resp *pipelineResponse
	if err == nil {
		if resp, err = pipelineJSON(res); err == nil {
			redactSavedPaths(p, resp)
		}
	}
	if err != nil {
		s.log.Debug("pipeline failed", "pipeline", p.Name, "err", err)
		if obs.sse != nil {
			he := classify(err)
			lb.outcome = he.status
			_ = obs.sse.send("error", errorBody(r, he))
			return
		}
		writeError(w, r, err)
		return
	}
	if obs.sse != nil {
		_ = obs.sse.send("outputs", resp)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// pipelineInputs converts JSON inputs to the declared input types.
func pipelineInputs(p *pipelines.Pipeline, g *pathGuard, raw map[string]json.RawMessage, up *uploads, maxNumberLen int) (map[string]cty.Value, error) {
	vals := make(map[string]cty.Value, len(raw))
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		in := p.Input(name)
		if in == nil {
			var names []string
			for _, i := range p.Inputs {
				names = append(names, i.Name)
			}
			return nil, errorf(http.StatusBadRequest, "invalid_input", "pipeline %q has no input %q (its inputs: %s)", p.Name, name, strings.Join(names, ", "))
		}
		if g.images[name] {
			path, err := up.add(name, raw[name])
			if err != nil {
				return nil, err
			}
			vals[name] = cty.StringVal(path)
			continue
		}
		if why, ok := g.locked[name]; ok {
			return nil, errorf(http.StatusForbidden, "forbidden", "input %q of pipeline %q is used by %s: the server does not take file names or environment variables from requests, so it keeps its configured value", name, p.Name, why)
		}
		ty := in.Type
		if numericType(ty) {
			if err := checkNumericStrings(name, raw[name], maxNumberLen); err != nil {
				return nil, err
			}
		}
		if ty == cty.DynamicPseudoType {
			t, err := ctyjson.ImpliedType(raw[name])
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "invalid_input", "input %q: %v", name, err)
			}
			ty = t
		}
		v, err := ctyjson.Unmarshal(raw[name], ty)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid_input", "input %q: want %s: %v", name, pipelines.TypeName(in.Type), err)
		}
		vals[name] = v
	}
	return vals, nil
}

// pipelineObserver streams a run's events when sse is set, and counts generated tokens.
type pipelineObserver struct {
	engine.NopObserver
	s   *Server
	p   *pipelines.Pipeline
	sse *sseWriter
}

func (o *pipelineObserver) OnText(stage string, row int, delta string) {
	if o.sse != nil {
		_ = o.sse.send("text", map[string]any{"stage": stage, "row": row, "delta": delta})
	}
}

func (o *pipelineObserver) OnStageEnd(stage string, t engine.StageTiming, err error) {
	if t.Generate != nil && err == nil {
		if m := stageModel(o.p, stage); m != "" {
			o.s.metrics.tokens.WithLabelValues(m).Add(float64(t.Generate.GeneratedTokens))
		}
	}
	if o.sse != nil && err == nil {
		_ = o.sse.send("stage", t.Report())
	}
}

// stageModel returns the model a stage's "model" attribute refers to.
func stageModel(p *pipelines.Pipeline, stage string) string {
	s := p.Stage(stage)
	if s == nil {
		return ""
	}
	for _, ref := range s.Refs {
		if ref.Kind == pipelines.RefModel {
			return ref.Name
		}
	}
	return ""
}

func pipelineJSON(res *engine.Result) (*pipelineResponse, error) {
	resp := &pipelineResponse{Pipeline: res.Pipeline, Outputs: map[string]any{}, Stages: []engine.StageReport{}, TotalMS: float64(res.Total) / 1e6}
	for name, v := range res.Outputs {
		j, err := valueJSON(v)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", name, err)
		}
		resp.Outputs[name] = j
	}
	for _, s := range res.Stages {
		resp.Stages = append(resp.Stages, s.Report())
	}
	return resp, nil
}

// imageJSON is an image output: a PNG, base64-encoded.
type imageJSON struct {
	ContentType string `json:"content_type"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Data        string `json:"data"`
}

// valueJSON converts an output value to JSON-encodable values: tensors in the v2 tensor form,
// images as base64 PNG, numbers exact when whole.
func valueJSON(v cty.Value) (any, error) {
	if v.IsNull() || !v.IsKnown() {
		return nil, nil
	}
	ty := v.Type()
	switch {
	case ty.Equals(pipelines.Image):
		t, err := engine.TensorOf(v)
		if err != nil {
			return nil, err
		}
		return pngJSON(t)
	case ty.IsCapsuleType():
		t, err := engine.TensorOf(v)
		if err != nil {
			return nil, err
		}
		return fromTensor("", t)
	case ty == cty.String:
		return v.AsString(), nil
	case ty == cty.Bool:
		return v.True(), nil
	case ty == cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInf() {
			return bf.String(), nil
		}
		if n, acc := bf.Int64(); acc == big.Exact {
			return n, nil
		}
		f, _ := bf.Float64()
		return f, nil
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		out := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			j, err := valueJSON(e)
			if err != nil {
				return nil, err
			}
			out = append(out, j)
		}
		return out, nil
	case ty.IsMapType() || ty.IsObjectType():
		out := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			j, err := valueJSON(e)
			if err != nil {
				return nil, err
			}
			out[k.AsString()] = j
		}
		return out, nil
	}
	return nil, fmt.Errorf("values of type %s have no JSON form", ty.FriendlyName())
}

// pngJSON encodes a (B,C,H,W) image tensor in [-1,1] as PNG; a batch becomes one row of
// images, as image.save writes it.
func pngJSON(t *sdk.Tensor) (imageJSON, error) {
	img, err := imageio.FromBatch(t, imageio.OneRow)
	if err != nil {
		return imageJSON{}, err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return imageJSON{}, err
	}
	bounds := img.Bounds()
	return imageJSON{ContentType: "image/png", Width: bounds.Dx(), Height: bounds.Dy(), Data: base64.StdEncoding.EncodeToString(buf.Bytes())}, nil
}

package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/text2image"
	"github.com/modelrt/modelrt/sdk"
)

// imageRequest is OpenAI's POST /v1/images/generations body, the fields modelrt honours, plus
// the extensions seed, temperature, top_k and guidance_scale. Unknown fields are ignored, as
// for completions.
type imageRequest struct {
	Prompt         *string  `json:"prompt"`
	Model          string   `json:"model"`
	N              *int     `json:"n"`
	Size           *string  `json:"size"`
	ResponseFormat *string  `json:"response_format"`
	OutputFormat   *string  `json:"output_format"`
	Seed           *int64   `json:"seed"`
	Temperature    *float64 `json:"temperature"`
	TopK           *int     `json:"top_k"`
	GuidanceScale  *float64 `json:"guidance_scale"`
}

type imageData struct {
	B64JSON       string `json:"b64_json"`
	RevisedPrompt string `json:"revised_prompt"`
}

// imageUsage follows OpenAI's image usage: input tokens are the caption's, output tokens the
// codes drawn.
type imageUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type imageResponse struct {
	Created int64       `json:"created"`
	Data    []imageData `json:"data"`
	Usage   imageUsage  `json:"usage"`
}

func badImage(format string, args ...any) error {
	return errorf(http.StatusBadRequest, "invalid_request", format, args...)
}

// invalidImage is a 400 for a text2image.ErrInvalid error, without the package's prefix.
func invalidImage(err error) error {
	return badImage("%s", strings.TrimPrefix(err.Error(), text2image.ErrInvalid.Error()+": "))
}

// options checks the request's own fields and returns the drawing options (size not yet
// resolved against the model).
func (q *imageRequest) options() (text2image.Options, error) {
	o := text2image.DefaultOptions()
	switch {
	case q.Model == "":
		return o, badImage("model: required")
	case q.Prompt == nil:
		return o, badImage("prompt: required")
	}
	if q.ResponseFormat != nil && *q.ResponseFormat != "b64_json" {
		if *q.ResponseFormat == "url" {
			return o, badImage(`response_format "url": modelrt keeps no image files to link to; ask for "b64_json" (the default here)`)
		}
		return o, badImage("response_format %q: want \"b64_json\"", *q.ResponseFormat)
	}
	if q.OutputFormat != nil && *q.OutputFormat != "png" {
		return o, badImage("output_format %q: modelrt writes \"png\" only", *q.OutputFormat)
	}
	if q.N != nil {
		if *q.N < 1 || *q.N > text2image.MaxImages {
			return o, badImage("n = %d: want 1 to %d images", *q.N, text2image.MaxImages)
		}
		o.N = *q.N
	}
	if q.Temperature != nil {
		o.Temperature = *q.Temperature
	}
	if q.TopK != nil {
		o.TopK = *q.TopK
	}
	if q.GuidanceScale != nil {
		o.Guidance = *q.GuidanceScale
	}
	if q.Seed != nil {
		o.Seed = uint64(*q.Seed)
	} else {
		o.Seed = randomSeed()
	}
	if err := o.Validate(); err != nil {
		return o, invalidImage(err)
	}
	return o, nil
}

// imageJob is a request checked against the declared models.
type imageJob struct {
	prior, vae *engine.Model
	pipe       *text2image.Pipeline
	opts       text2image.Options
}

// prepareImages finds the prior (a declared causal-lm model whose directory holds
// text2image.json) and its VAE (the declared vae model at the directory text2image.json names),
// and resolves the size. The job's prior is set as soon as it is known, for the metrics.
func prepareImages(e *engine.Engine, q *imageRequest) (*imageJob, error) {
	o, err := q.options()
	if err != nil {
		return nil, err
	}
	prior, err := causalLM(e, q.Model)
	if err != nil {
		return nil, err
	}
	job := &imageJob{prior: prior}
	if _, err := os.Stat(filepath.Join(prior.Path, sdk.Text2ImageFile)); err != nil {
		return job, badImage("model %q is not a text-to-image prior (its directory has no %s)", prior.Name, sdk.Text2ImageFile)
	}
	m, err := text2image.Load(prior.Path, "")
	if err != nil {
		return job, fmt.Errorf("model %q: %w", prior.Name, err)
	}
	for _, v := range e.Models() {
		if v.Task == pipelines.TaskVAE && samePath(v.Path, m.VAEDir) {
			job.vae = v
			break
		}
	}
	if job.vae == nil {
		return job, errorf(http.StatusInternalServerError, "vae_not_loaded",
			"model %q draws codes for the VAE %s, which no model block of the configuration loads (add one with task = \"vae\")", prior.Name, m.VAEDir)
	}
	if q.Size != nil && *q.Size != "auto" {
		w, h, ok := parseWxH(*q.Size)
		if !ok {
			return job, badImage("size %q: want WxH, e.g. \"32x32\"", *q.Size)
		}
		if o.Scale, err = m.ScaleFor(w, h); err != nil {
			return job, invalidImage(err)
		}
	}
	vaeBackend, err := e.Backend(job.vae.Name)
	if err != nil {
		return job, err
	}
	// The prior's lm.Model (with its scheduler) is set once the request holds it: the loaded
	// instance may change until then (an unload, a keep_alive reload).
	job.pipe = &text2image.Pipeline{Model: m, VAE: vaeBackend, VAEName: job.vae.Name}
	job.opts = o
	return job, nil
}

func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

func parseWxH(s string) (w, h int, ok bool) {
	ws, hs, found := strings.Cut(s, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	return w, h, found && err1 == nil && err2 == nil && w > 0 && h > 0
}

func (s *Server) imageGenerations(w http.ResponseWriter, r *http.Request, st *state) {
	start := time.Now()
	lb := labels(w, "images")
	ctx, cancel := s.withTimeout(w, r)
	defer cancel()
	var q imageRequest
	if err := decodeJSON(r, &q); err != nil {
		writeError(w, r, err)
		return
	}
	job, err := prepareImages(st.e, &q)
	if job != nil {
		lb.target = job.prior.Name
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	// The caption is checked (empty, too long) before a slot is taken.
	if _, _, _, err := job.pipe.Model.Prompt(*q.Prompt); err != nil {
		writeError(w, r, badImage("prompt: %s", strings.TrimPrefix(err.Error(), text2image.ErrInvalid.Error()+": ")))
		return
	}
	release, err := s.admitHold(ctx, st, []string{job.prior.Name, job.vae.Name})
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer release()
	if job.pipe.Prior, err = st.e.LM(job.prior.Name); err != nil {
		writeError(w, r, err)
		return
	}
	backends := []string{job.prior.BackendName, job.vae.BackendName}
	before := restarts(st.e, backends...)
	res, err := job.pipe.Generate(ctx, *q.Prompt, job.opts)
	err = lostBackend(err, before, restarts(st.e, backends...))
	if errors.Is(err, text2image.ErrInvalid) {
		err = invalidImage(err)
	}
	if err != nil {
		s.log.Debug("image generation failed", "model", job.prior.Name, "err", err)
		writeError(w, r, err)
		return
	}
	out := imageResponse{Created: time.Now().Unix(), Data: make([]imageData, len(res.Images))}
	for i, img := range res.Images {
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			writeError(w, r, fmt.Errorf("encode image %d: %w", i, err))
			return
		}
		out.Data[i] = imageData{B64JSON: base64.StdEncoding.EncodeToString(buf.Bytes()), RevisedPrompt: res.Caption}
	}
	codes := len(res.Codes) * job.pipe.Model.Facts.Codes()
	out.Usage = imageUsage{InputTokens: res.PromptTokens, OutputTokens: codes, TotalTokens: res.PromptTokens + codes}
	s.metrics.prompt.WithLabelValues(job.prior.Name).Add(float64(res.PromptTokens))
	s.metrics.tokens.WithLabelValues(job.prior.Name).Add(float64(codes))
	s.log.Debug("images", "model", job.prior.Name, "n", len(res.Images), "prior_ms", res.PriorMS, "decode_ms", res.DecodeMS,
		"elapsed", time.Since(start).Round(time.Microsecond))
	writeJSON(w, http.StatusOK, out)
}

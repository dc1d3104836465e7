package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
)

// completionRequest is OpenAI's POST /v1/completions body, the fields modelrt honours. Unknown
// fields are ignored, as OpenAI's own server does, so that clients that send them work; fields
// that would change the answer and are not implemented are refused instead (see check).
type completionRequest struct {
	Model  string          `json:"model"`
	Prompt json.RawMessage `json:"prompt"`
	sampling
	MaxTokens *int            `json:"max_tokens"`
	BestOf    *int            `json:"best_of"`
	Echo      bool            `json:"echo"`
	Logprobs  json.RawMessage `json:"logprobs"`
	Suffix    *string         `json:"suffix"`

	// Set by check: completions per prompt, and the alternatives logprobs asks for (-1: none).
	n        int
	logprobs int
}

// sampling holds the fields that completions and chat share.
type sampling struct {
	Temperature *float64 `json:"temperature"`
	TopP        *float64 `json:"top_p"`
	// TopK is an extension (vLLM and llama.cpp accept it too).
	TopK          *int            `json:"top_k"`
	Stop          json.RawMessage `json:"stop"`
	Seed          *int64          `json:"seed"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N                *int     `json:"n"`
	PresencePenalty  *float64 `json:"presence_penalty"`
	FrequencyPenalty *float64 `json:"frequency_penalty"`
}

// OpenAI's defaults and bounds.
const (
	maxChoices         = 16 // n
	defaultMaxTokens   = 16
	defaultTemperature = 1.0
)

type completionChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

// finishReason maps generate's reasons to OpenAI's: an end-of-sequence token and a stop string
// are both "stop"; the token budget and the context length are "length".
func finishReason(r string) *string {
	s := "length"
	if r == generate.FinishEOS || r == generate.FinishStop {
		s = "stop"
	}
	return &s
}

// check validates a request against what modelrt implements and returns the decode options
// (without the model-dependent parts).
func (c *completionRequest) check(maxBatch int) (generate.Options, [][]int, []string, error) {
	var opts generate.Options
	bad := func(format string, args ...any) (generate.Options, [][]int, []string, error) {
		return opts, nil, nil, errorf(http.StatusBadRequest, "invalid_request", format, args...)
	}
	if c.Model == "" {
		return bad("model: required")
	}
	c.n = 1
	if c.N != nil {
		if *c.N < 1 || *c.N > maxChoices {
			return bad("n = %d: want 1 to %d completions per prompt", *c.N, maxChoices)
		}
		c.n = *c.N
	}
	if c.BestOf != nil && *c.BestOf != c.n {
		return bad("best_of is not supported (only best_of = n, which returns every completion)")
	}
	var err error
	if c.logprobs, err = legacyLogprobsField(c.Logprobs); err != nil {
		return opts, nil, nil, err
	}
	if c.Echo && c.Stream {
		return bad("echo with stream is not supported: the prompt's logprobs are not streamed (send stream: false)")
	}
	if c.Suffix != nil && *c.Suffix != "" {
		return bad("suffix is not supported")
	}
	if c.PresencePenalty != nil && *c.PresencePenalty != 0 || c.FrequencyPenalty != nil && *c.FrequencyPenalty != 0 {
		return bad("presence_penalty and frequency_penalty are not supported")
	}
	opts.MaxNewTokens = defaultMaxTokens
	if c.MaxTokens != nil {
		if *c.MaxTokens < 0 || *c.MaxTokens == 0 && !c.Echo {
			return bad("max_tokens = %d: want at least 1 (0 only with echo, to score the prompt)", *c.MaxTokens)
		}
		opts.MaxNewTokens = *c.MaxTokens
	}
	s := generate.DefaultSampling()
	s.Temperature = defaultTemperature
	if c.Temperature != nil {
		if *c.Temperature < 0 || *c.Temperature > 2 || math.IsNaN(*c.Temperature) {
			return bad("temperature = %v: want a number in [0, 2]", *c.Temperature)
		}
		s.Temperature = *c.Temperature
	}
	if c.TopP != nil {
		if !(*c.TopP > 0 && *c.TopP <= 1) {
			return bad("top_p = %v: want a number in (0, 1]", *c.TopP)
		}
		s.TopP = *c.TopP
	}
	if c.TopK != nil {
		if *c.TopK < 0 {
			return bad("top_k = %d: want 0 (off) or more", *c.TopK)
		}
		s.TopK = *c.TopK
	}
	if c.Seed != nil {
		s.Seed = uint64(*c.Seed)
	} else {
		s.Seed = randomSeed()
	}
	opts.Sampling = s
	stops, err := stringOrList(c.Stop, "stop")
	if err != nil {
		return opts, nil, nil, err
	}
	if len(stops) > 4 {
		return bad("stop: at most 4 sequences")
	}
	for _, st := range stops {
		if st == "" {
			return bad("stop: empty sequence")
		}
	}
	opts.StopStrings = stops
	ids, texts, err := parsePrompt(c.Prompt)
	if err != nil {
		return opts, nil, nil, err
	}
	if n := len(ids) + len(texts); n*c.n > maxBatch {
		return bad("prompt: %d prompts × n = %d is %d completions, at most %d per request", n, c.n, n*c.n, maxBatch)
	}
	return opts, ids, texts, nil
}

// parsePrompt reads OpenAI's four prompt forms: a string, an array of strings, an array of
// token ids, an array of arrays of token ids.
func parsePrompt(raw json.RawMessage) (ids [][]int, texts []string, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, errorf(http.StatusBadRequest, "invalid_request", "prompt: required")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return nil, []string{one}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 {
		return nil, many, nil
	}
	var tokens []int
	if json.Unmarshal(raw, &tokens) == nil && len(tokens) > 0 {
		return [][]int{tokens}, nil, nil
	}
	var batch [][]int
	if json.Unmarshal(raw, &batch) == nil && len(batch) > 0 {
		for i, p := range batch {
			if len(p) == 0 {
				return nil, nil, errorf(http.StatusBadRequest, "invalid_request", "prompt %d: empty prompt (generation needs at least one token)", i)
			}
		}
		return batch, nil, nil
	}
	return nil, nil, errorf(http.StatusBadRequest, "invalid_type", "prompt: want a string, an array of strings, an array of token ids or an array of arrays of token ids")
}

func stringOrList(raw json.RawMessage, field string) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, nil
	}
	return nil, errorf(http.StatusBadRequest, "invalid_type", "%s: want a string or an array of strings", field)
}

// causalLM returns a declared causal-lm model, or a 404 (unknown) or 400 (another task).
func causalLM(e *engine.Engine, name string) (*engine.Model, error) {
	m := e.Model(name)
	if m == nil {
		return nil, errorf(http.StatusNotFound, "model_not_found", "model %q does not exist (GET /v1/models lists them)", name)
	}
	if m.Task != pipelines.TaskCausalLM {
		return nil, errorf(http.StatusBadRequest, "invalid_request", "model %q is a %s model; completions need a causal-lm model", name, m.Task)
	}
	return m, nil
}

// completionJob is a completions request checked against its model, ready to run.
type completionJob struct {
	m       *engine.Model
	model   *lm.Model
	prompts [][]int // the request's prompts
	ids     [][]int // one prompt per row: each prompt n times
	opts    generate.Options
}

// prepare checks a request against the declared models and the model's facts: a causal-lm
// model with a tokenizer, non-empty prompts within the vocabulary that leave room in the
// context. The job's model is set as soon as it is known (for the metrics), even on error.
func prepare(e *engine.Engine, req *completionRequest, maxBatch int, specialTokens bool) (*completionJob, error) {
	opts, ids, texts, err := req.check(maxBatch)
	if err != nil {
		return nil, err
	}
	m, err := causalLM(e, req.Model)
	if err != nil {
		return nil, err
	}
	job := &completionJob{m: m}
	tok, err := e.Tokenizer(m.Name)
	if err != nil {
		return job, errorf(http.StatusBadRequest, "invalid_request", "model %q has no tokenizer: completions need one to return text", m.Name)
	}
	for _, t := range texts {
		p := tok.EncodeOrdinary(t) // <|endoftext|> typed in a prompt is text...
		if specialTokens {
			p = tok.Encode(t) // ...unless the daemon says otherwise
		}
		if len(p) == 0 {
			return job, errorf(http.StatusBadRequest, "invalid_request", "prompt: empty prompt (generation needs at least one token)")
		}
		ids = append(ids, p)
	}
	if job.model, err = e.LM(m.Name); err != nil {
		return job, err
	}
	vocab, window := job.model.VocabSize, job.model.Context
	for i, p := range ids {
		for _, id := range p {
			if id < 0 || vocab > 0 && id >= vocab {
				return job, errorf(http.StatusBadRequest, "invalid_request", "prompt %d: token id %d is outside the vocabulary of %d", i, id, vocab)
			}
		}
		if window > 0 && (len(p) > window || len(p) == window && opts.MaxNewTokens > 0) {
			return job, errorf(http.StatusBadRequest, "context_length_exceeded", "prompt %d has %d tokens; model %q has a context of %d tokens, which leaves no room for a completion", i, len(p), m.Name, window)
		}
	}
	opts.MaxContext = window
	if job.model.EOS >= 0 {
		opts.EOS = []int{job.model.EOS}
	}
	opts.Decoder = tok
	opts.NewStreamDecoder = func() generate.StreamDecoder { return tok.NewStreamDecoder() }
	if err := opts.Sampling.Validate(); err != nil {
		return job, errorf(http.StatusBadRequest, "invalid_request", "%v", err)
	}
	job.prompts = ids
	job.ids = expandRows(ids, req.n)
	job.opts = opts
	return job, nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request, st *state) {
	start := time.Now()
	lb := labels(w, "completions")
	ctx, cancel := s.withTimeout(w, r)
	defer cancel()
	var req completionRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	release, ok := s.admitModel(ctx, w, r, st, lb, req.Model)
	if !ok {
		return
	}
	defer release()
	job, err := prepare(st.e, &req, s.opts.MaxBatch, s.opts.SpecialTokens)
	if job != nil {
		lb.target = job.m.Name
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	lp := job.withLogprobs(req.logprobs, req.Echo)
	m, opts := job.m, job.opts

	id := "cmpl-" + randomID()
	created := time.Now().Unix()
	var stream *sseWriter
	if req.Stream {
		// Errors from here on are events in the stream: the status line is sent.
		stream = startSSE(w)
		genCtx, stop := context.WithCancel(ctx)
		defer stop()
		ctx = genCtx
		opts.OnText = func(row int, delta string) {
			chunk := completionResponse{ID: id, Object: "text_completion", Created: created, Model: m.Name,
				Choices: []completionChoice{{Text: delta, Index: row}}}
			if stream.send("", chunk) != nil {
				stop() // the client is gone: stop generating
			}
		}
	}
	res, ok := s.runJob(ctx, w, r, st, lb, job, opts, stream)
	if !ok {
		return
	}
	u := usage{}
	for _, p := range job.prompts {
		u.PromptTokens += len(p) // once per prompt, however many completions (as OpenAI counts)
	}
	for _, row := range res.Rows {
		u.CompletionTokens += row.GeneratedTokens
	}
	choices := job.choices(res, req.Echo, lp)
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	s.metrics.tokens.WithLabelValues(m.Name).Add(float64(u.CompletionTokens))
	s.metrics.prompt.WithLabelValues(m.Name).Add(float64(u.PromptTokens))
	s.log.Debug("completion", "id", id, "model", m.Name, "prompt_tokens", u.PromptTokens, "completion_tokens", u.CompletionTokens,
		"elapsed", time.Since(start).Round(time.Microsecond))
	if stream == nil {
		writeJSON(w, http.StatusOK, completionResponse{ID: id, Object: "text_completion", Created: created, Model: m.Name, Choices: choices, Usage: &u})
		return
	}
	for i := range choices {
		choices[i].Text = ""
	}
	_ = stream.send("", completionResponse{ID: id, Object: "text_completion", Created: created, Model: m.Name, Choices: choices})
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		_ = stream.send("", completionResponse{ID: id, Object: "text_completion", Created: created, Model: m.Name, Choices: []completionChoice{}, Usage: &u})
	}
	_ = stream.raw("", []byte("[DONE]"))
}

// generate runs the decode loop in one backend session of len(prompts) rows; the session is
// closed whatever happens (lm.Session.Close uses its own context, so a cancelled request still
// frees its KV cache in the backend).
func (s *Server) generate(ctx context.Context, model *lm.Model, prompts [][]int, opts generate.Options) (*generate.Result, error) {
	sess, err := model.OpenStepSession(ctx, len(prompts)) // one prompt shares the model's steps
	if err != nil {
		return nil, fmt.Errorf("model %q: open session: %w", model.Name, err)
	}
	defer func() {
		if err := sess.Close(); err != nil {
			s.log.Debug("close session", "model", model.Name, "session", sess.ID(), "err", err)
		}
	}()
	res, err := generate.Generate(ctx, sess, prompts, opts)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", model.Name, err)
	}
	return res, nil
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request, st *state) {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, m := range st.e.Models() {
		if ms, _ := st.e.Status(m.Name); m.Task == pipelines.TaskCausalLM && ms.Available() {
			out.Data = append(out.Data, model{ID: m.Name, Object: "model", Created: st.created.Unix(), OwnedBy: "modelrt"})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request, st *state) {
	m, err := causalLM(st.e, r.PathValue("model"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if ms, _ := st.e.Status(m.Name); !ms.Available() {
		writeError(w, r, &engine.NotLoadedError{Model: m.Name, Reason: ms.Reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": m.Name, "object": "model", "created": st.created.Unix(), "owned_by": "modelrt"})
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func randomSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) >> 1
}

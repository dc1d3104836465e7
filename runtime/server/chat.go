package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/tokenizer"
)

// chatRequest is OpenAI's POST /v1/chat/completions body, the fields modelrt honours; fields
// whose meaning it cannot honour (tools, a JSON response_format) are refused by check.
type chatRequest struct {
	Model    string          `json:"model"`
	Messages []chatMessageIn `json:"messages"`
	sampling
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Logprobs            bool            `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	Functions           json.RawMessage `json:"functions"`
	ResponseFormat      json.RawMessage `json:"response_format"`
}

type chatMessageIn struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// chatRoles maps OpenAI's roles to a template's: "developer" is the newer name of "system".
var chatRoles = map[string]string{"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// check validates what does not depend on the model and returns the messages for the
// template, the completions request that carries the sampling fields (its prompt is set once
// the template has run) and the number of alternatives for logprobs (-1: none).
func (c *chatRequest) check() ([]pipelines.ChatMessage, *completionRequest, int, error) {
	bad := func(format string, args ...any) ([]pipelines.ChatMessage, *completionRequest, int, error) {
		return nil, nil, 0, errorf(http.StatusBadRequest, "invalid_request", format, args...)
	}
	if !isNull(c.Tools) && string(c.Tools) != "[]" || !isNull(c.Functions) && string(c.Functions) != "[]" {
		return bad("tools: modelrt cannot call tools or functions: a model's output is returned as text (send no tools)")
	}
	if !isNull(c.ToolChoice) && string(c.ToolChoice) != `"none"` {
		return bad("tool_choice: modelrt cannot call tools (only \"none\")")
	}
	if !isNull(c.ResponseFormat) {
		var rf struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(c.ResponseFormat, &rf) != nil || rf.Type != "text" {
			return bad("response_format %s: modelrt cannot constrain the output to JSON; only {\"type\": \"text\"}", c.ResponseFormat)
		}
	}
	if len(c.Messages) == 0 {
		return bad("messages: required, at least one")
	}
	msgs := make([]pipelines.ChatMessage, len(c.Messages))
	for i, m := range c.Messages {
		role, ok := chatRoles[m.Role]
		if !ok {
			return bad("messages[%d].role %q: want system, developer, user or assistant", i, m.Role)
		}
		text, err := messageText(m.Content)
		if err != nil {
			return bad("messages[%d].content: %v", i, err)
		}
		msgs[i] = pipelines.ChatMessage{Role: role, Content: text}
	}
	k := -1
	if c.TopLogprobs != nil {
		if !c.Logprobs {
			return bad("top_logprobs needs logprobs: true")
		}
		if *c.TopLogprobs < 0 || *c.TopLogprobs > maxChatLogprobs {
			return bad("top_logprobs = %d: want 0 to %d", *c.TopLogprobs, maxChatLogprobs)
		}
		k = *c.TopLogprobs
	} else if c.Logprobs {
		k = 0
	}
	maxTok := c.MaxTokens
	if c.MaxCompletionTokens != nil {
		maxTok = c.MaxCompletionTokens
	}
	if maxTok != nil && *maxTok == 0 {
		return bad("max_tokens = 0: want at least 1")
	}
	creq := &completionRequest{Model: c.Model, Prompt: json.RawMessage(`[0]`), sampling: c.sampling, MaxTokens: maxTok}
	return msgs, creq, k, nil
}

// messageText reads a message's content: a string, or an array of {"type": "text"} parts.
func messageText(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", errorf(http.StatusBadRequest, "invalid_request", "required")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil || len(parts) == 0 {
		return "", errorf(http.StatusBadRequest, "invalid_type", "want a string or a non-empty array of text parts")
	}
	var b strings.Builder
	for i, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", errorf(http.StatusBadRequest, "invalid_request", "part %d: type %q: modelrt takes only text parts ({\"type\": \"text\", \"text\": ...})", i, p.Type)
		}
		b.WriteString(*p.Text)
	}
	return b.String(), nil
}

// encodeChat tokenizes a rendered chat prompt: the template's text with its special tokens,
// message contents as ordinary text (unless special, the daemon's --allow-special-tokens).
// Ordinary text is joined across pieces before it is encoded, so that BPE merges across a
// piece boundary as it would in the whole text.
func encodeChat(tok *tokenizer.Tokenizer, pieces []pipelines.ChatPiece, special bool) []int {
	var ids []int
	var run strings.Builder
	for _, p := range pieces {
		if p.Content && !special {
			run.WriteString(p.Text)
			continue
		}
		text := p.Text
		for {
			at, sp := tok.NextSpecial(text)
			if at < 0 {
				break
			}
			run.WriteString(text[:at])
			ids = append(ids, tok.EncodeOrdinary(run.String())...)
			run.Reset()
			id, _ := tok.TokenID(sp)
			ids = append(ids, id)
			text = text[at+len(sp):]
		}
		run.WriteString(text)
	}
	return append(ids, tok.EncodeOrdinary(run.String())...)
}

// chatJob renders the model's chat template (or the default) into req's prompt and prepares
// the job.
func (s *Server) chatJob(st *state, req *completionRequest, msgs []pipelines.ChatMessage) (*completionJob, error) {
	if err := s.chatPrompt(st, req, msgs); err != nil {
		return nil, err
	}
	return prepare(st.e, req, s.opts.MaxBatch, s.opts.SpecialTokens)
}

func (s *Server) chatPrompt(st *state, req *completionRequest, msgs []pipelines.ChatMessage) error {
	m, err := causalLM(st.e, req.Model)
	if err != nil {
		return err
	}
	tok, err := st.e.Tokenizer(m.Name)
	if err != nil {
		return errorf(http.StatusBadRequest, "invalid_request", "model %q has no tokenizer: chat needs one", m.Name)
	}
	tmpl := m.ChatTemplate
	if tmpl == nil {
		tmpl = defaultChatTemplate
	}
	eos := ""
	if id := tok.EOS(); id >= 0 {
		eos = tok.TokenString(id)
	}
	pieces, err := tmpl.Render(msgs, eos)
	if err != nil {
		return errorf(http.StatusBadRequest, "invalid_request", "messages: model %q's chat template: %v", m.Name, err)
	}
	ids := encodeChat(tok, pieces, s.opts.SpecialTokens)
	if len(ids) == 0 {
		return errorf(http.StatusBadRequest, "invalid_request", "messages: the chat template made an empty prompt")
	}
	req.Prompt, _ = json.Marshal(ids)
	return nil
}

var defaultChatTemplate = func() *pipelines.ChatTemplate {
	t, err := pipelines.ParseChatTemplate("default", pipelines.DefaultChatTemplate)
	if err != nil {
		panic(err)
	}
	return t
}()

type chatMessageOut struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      *chatMessageOut `json:"message,omitempty"`
	Delta        *chatMessageOut `json:"delta,omitempty"`
	Logprobs     *chatLogprobs   `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, st *state) {
	lb := labels(w, "chat")
	ctx, cancel := s.withTimeout(w, r)
	defer cancel()
	var req chatRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	msgs, creq, k, err := req.check()
	if err != nil {
		writeError(w, r, err)
		return
	}
	release, ok := s.admitModel(ctx, w, r, st, lb, req.Model)
	if !ok {
		return
	}
	defer release()
	job, err := s.chatJob(st, creq, msgs)
	if err != nil {
		writeError(w, r, err)
		return
	}
	lp := job.withLogprobs(k, false)
	reply := chatResponse{ID: "chatcmpl-" + randomID(), Object: "chat.completion", Created: time.Now().Unix(), Model: job.m.Name}
	var stream *sseWriter
	if req.Stream {
		stream = startSSE(w)
		genCtx, stop := context.WithCancel(ctx)
		defer stop()
		ctx = genCtx
		reply.Object = "chat.completion.chunk"
		started := make([]bool, len(job.ids))
		job.opts.OnText = func(row int, delta string) {
			d := &chatMessageOut{Content: delta}
			if !started[row] {
				started[row], d.Role = true, "assistant"
			}
			chunk := reply
			chunk.Choices = []chatChoice{{Index: row, Delta: d}}
			if stream.send("", chunk) != nil {
				stop()
			}
		}
	}
	res, ok := s.runJob(ctx, w, r, st, lb, job, job.opts, stream)
	if !ok {
		return
	}
	u := usage{PromptTokens: len(job.prompts[0])}
	for i, row := range res.Rows {
		u.CompletionTokens += row.GeneratedTokens
		ch := chatChoice{Index: i, FinishReason: finishReason(row.FinishReason), Message: &chatMessageOut{Role: "assistant", Content: row.Text}}
		if lp != nil {
			ch.Logprobs = lp.chat(i, rowTokens(job.opts.Decoder.Decode, job.opts.NewStreamDecoder, row, false, ""), job.opts.Decoder.Decode)
		}
		if stream != nil {
			ch.Message, ch.Delta = nil, &chatMessageOut{}
		}
		reply.Choices = append(reply.Choices, ch)
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	s.metrics.tokens.WithLabelValues(job.m.Name).Add(float64(u.CompletionTokens))
	s.metrics.prompt.WithLabelValues(job.m.Name).Add(float64(u.PromptTokens))
	if stream == nil {
		reply.Usage = &u
		writeJSON(w, http.StatusOK, reply)
		return
	}
	_ = stream.send("", reply)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		reply.Choices, reply.Usage = []chatChoice{}, &u
		_ = stream.send("", reply)
	}
	_ = stream.raw("", []byte("[DONE]"))
}

// admitModel takes a slot of the named model for a /v1 request and holds the model (loading
// it again if keep_alive unloaded it), or writes the error. The prompts are tokenized within
// the slot (admit skips a name that is not a declared model; prepare then says what is wrong).
func (s *Server) admitModel(ctx context.Context, w http.ResponseWriter, r *http.Request, st *state, lb *recorder, model string) (func(), bool) {
	if st.e.Model(model) == nil {
		return func() {}, true
	}
	lb.target = model
	release, err := s.admitHold(ctx, st, []string{model})
	if err != nil {
		writeError(w, r, err)
		return nil, false
	}
	return release, true
}

// runJob generates a prepared job with opts, or writes the error: a JSON error, or an error
// event when the stream has begun.
func (s *Server) runJob(ctx context.Context, w http.ResponseWriter, r *http.Request, st *state, lb *recorder, job *completionJob, opts generate.Options, stream *sseWriter) (*generate.Result, bool) {
	m := job.m
	before := restarts(st.e, m.BackendName)
	res, err := s.generate(ctx, job.model, job.ids, opts)
	if err = lostBackend(err, before, restarts(st.e, m.BackendName)); err == nil {
		return res, true
	}
	s.log.Debug("generation failed", "api", lb.api, "model", m.Name, "err", err)
	if stream == nil {
		writeError(w, r, err)
		return nil, false
	}
	he := classify(err)
	lb.outcome = he.status
	_ = stream.send("", errorBody(r, he))
	return nil, false
}

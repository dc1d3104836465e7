package server

import (
	"encoding/json"
	"math"
	"net/http"
	"sync"

	"github.com/modelrt/modelrt/runtime/generate"
)

// Logprob bounds: OpenAI's legacy completions take logprobs 0..5, chat top_logprobs 0..20.
const (
	maxLegacyLogprobs = 5
	maxChatLogprobs   = 20
)

// tokenLogprob is one token of a row with its logprob and the row's top alternatives there.
type tokenLogprob struct {
	pos, token int
	logprob    float64
	top        []idLogprob // most likely first
}

type idLogprob struct {
	id      int
	logprob float64
}

// logprobCollector keeps, per row, what generate.Options.OnLogprobs reports: each token's
// logprob and the k most likely tokens at its position.
type logprobCollector struct {
	k    int
	mu   sync.Mutex
	rows [][]tokenLogprob
}

func newLogprobCollector(rows, k int) *logprobCollector {
	return &logprobCollector{k: k, rows: make([][]tokenLogprob, rows)}
}

// add is a generate.TokenLogprobs.
func (c *logprobCollector) add(row, pos, token int, lp []float64) {
	t := tokenLogprob{pos: pos, token: token, logprob: lp[token], top: topK(lp, c.k)}
	c.mu.Lock()
	c.rows[row] = append(c.rows[row], t)
	c.mu.Unlock()
}

// at returns row's token at pos, or nil (the first prompt token, or a position not reported).
func (c *logprobCollector) at(row, pos int) *tokenLogprob {
	for i := range c.rows[row] {
		if c.rows[row][i].pos == pos {
			return &c.rows[row][i]
		}
	}
	return nil
}

// topK returns the k largest entries of lp, largest first (the lower id on ties).
func topK(lp []float64, k int) []idLogprob {
	if k <= 0 {
		return nil
	}
	top := make([]idLogprob, 0, k+1)
	for id, v := range lp {
		if len(top) == k && !(v > top[k-1].logprob) {
			continue
		}
		i := len(top)
		for i > 0 && v > top[i-1].logprob {
			i--
		}
		top = append(top, idLogprob{})
		copy(top[i+1:], top[i:])
		top[i] = idLogprob{id, v}
		if len(top) > k {
			top = top[:k]
		}
	}
	return top
}

// jsonLogprob is a logprob for JSON: -Inf (a token the model gives no mass) becomes the
// most negative float64, which JSON can carry.
func jsonLogprob(v float64) float64 {
	if math.IsInf(v, -1) {
		return -math.MaxFloat64
	}
	return v
}

// legacyLogprobs is OpenAI's completions logprobs object. TokenLogprobs and TopLogprobs hold
// null for the first token of an echoed prompt.
type legacyLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// rowTokens lists a row's tokens as a client sees them: the prompt's when echoed, then the
// new tokens that are part of the text (not an end-of-sequence token, nothing after a stop
// string), each with the byte offset of its text in the choice's text (echo) or in prompt +
// completion text (no echo, as OpenAI does).
type rowToken struct {
	pos, id, offset int
	text            string
}

func rowTokens(dec func([]int) string, newStream func() generate.StreamDecoder, row generate.Row, echo bool, promptText string) []rowToken {
	var out []rowToken
	offset := 0
	stream := newStream()
	prompt := row.IDs[:row.PromptTokens]
	if echo {
		for i, id := range prompt {
			out = append(out, rowToken{pos: i, id: id, offset: offset, text: dec([]int{id})})
			offset += len(stream.Add(id))
		}
	}
	offset = len(promptText)
	stream = newStream()
	end := offset + len(row.Text)
	gen := row.IDs[row.PromptTokens:]
	if row.FinishReason == generate.FinishEOS && len(gen) > 0 {
		gen = gen[:len(gen)-1]
	}
	for i, id := range gen {
		if offset >= end && row.FinishReason == generate.FinishStop {
			break
		}
		out = append(out, rowToken{pos: row.PromptTokens + i, id: id, offset: offset, text: dec([]int{id})})
		offset += len(stream.Add(id))
	}
	return out
}

// legacy builds a row's completions logprobs object.
func (c *logprobCollector) legacy(b int, toks []rowToken, dec func([]int) string) *legacyLogprobs {
	out := &legacyLogprobs{Tokens: []string{}, TokenLogprobs: []*float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, t.text)
		out.TextOffset = append(out.TextOffset, t.offset)
		lp := c.at(b, t.pos)
		if lp == nil {
			out.TokenLogprobs = append(out.TokenLogprobs, nil)
			out.TopLogprobs = append(out.TopLogprobs, nil)
			continue
		}
		v := jsonLogprob(lp.logprob)
		out.TokenLogprobs = append(out.TokenLogprobs, &v)
		top := make(map[string]float64, len(lp.top))
		for _, a := range lp.top {
			s := dec([]int{a.id})
			if _, dup := top[s]; !dup { // two ids may spell the same text: keep the likelier
				top[s] = jsonLogprob(a.logprob)
			}
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
	}
	return out
}

// chatLogprobs is OpenAI's chat logprobs object.
type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
}

// chatTokenLogprob is a token (its fields inlined) with its alternatives.
type chatTokenLogprob struct {
	chatTopLogprob
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

func byteList(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}

// chat builds a row's chat logprobs object from its new tokens.
func (c *logprobCollector) chat(b int, toks []rowToken, dec func([]int) string) *chatLogprobs {
	out := &chatLogprobs{Content: []chatTokenLogprob{}}
	for _, t := range toks {
		lp := c.at(b, t.pos)
		if lp == nil {
			continue
		}
		e := chatTokenLogprob{chatTopLogprob{Token: t.text, Logprob: jsonLogprob(lp.logprob), Bytes: byteList(t.text)}, []chatTopLogprob{}}
		for _, a := range lp.top {
			s := dec([]int{a.id})
			e.TopLogprobs = append(e.TopLogprobs, chatTopLogprob{Token: s, Logprob: jsonLogprob(a.logprob), Bytes: byteList(s)})
		}
		out.Content = append(out.Content, e)
	}
	return out
}

// legacyLogprobsField reads completions' logprobs: null/absent (-1) or an integer 0..5.
func legacyLogprobsField(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return -1, nil
	}
	var k int
	if err := json.Unmarshal(raw, &k); err != nil {
		return 0, errorf(http.StatusBadRequest, "invalid_type", "logprobs: want an integer 0 to %d (the alternatives per token) or null", maxLegacyLogprobs)
	}
	if k < 0 || k > maxLegacyLogprobs {
		return 0, errorf(http.StatusBadRequest, "invalid_request", "logprobs = %d: want 0 to %d", k, maxLegacyLogprobs)
	}
	return k, nil
}

// expandRows repeats each prompt n times, so row i·n+r is prompt i's completion r (seeded
// Seed+i·n+r by generate).
func expandRows(prompts [][]int, n int) [][]int {
	rows := make([][]int, 0, len(prompts)*n)
	for _, p := range prompts {
		for range n {
			rows = append(rows, p)
		}
	}
	return rows
}

// withLogprobs sets up the job's options for logprobs (k alternatives, -1 none) and echo, and
// returns the collector (nil without logprobs).
func (j *completionJob) withLogprobs(k int, echo bool) *logprobCollector {
	j.opts.PromptLogprobs = echo && (k >= 0 || j.opts.MaxNewTokens == 0)
	if k < 0 {
		return nil
	}
	c := newLogprobCollector(len(j.ids), k)
	j.opts.OnLogprobs = c.add
	return c
}

// choices builds the response's choices from the rows: the echoed prompt's text before the
// new text, and each row's logprobs object when asked for.
func (j *completionJob) choices(res *generate.Result, echo bool, c *logprobCollector) []completionChoice {
	out := make([]completionChoice, len(res.Rows))
	for i, row := range res.Rows {
		prompt := j.opts.Decoder.Decode(row.IDs[:row.PromptTokens])
		out[i] = completionChoice{Text: row.Text, Index: i, FinishReason: finishReason(row.FinishReason)}
		if echo {
			out[i].Text = prompt + row.Text
		}
		if c != nil {
			toks := rowTokens(j.opts.Decoder.Decode, j.opts.NewStreamDecoder, row, echo, prompt)
			out[i].Logprobs = c.legacy(i, toks, j.opts.Decoder.Decode)
		}
	}
	return out
}

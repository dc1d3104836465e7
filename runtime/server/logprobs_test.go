package server

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// torchLogprobTolerance bounds |modelrt − PyTorch| for a logprob of the F16 gpt2-tiny: both
// compute in float32 from the same weights, in different summation orders.
const torchLogprobTolerance = 1e-4

// torchEcho is testdata/logprobs/gpt2-tiny-echo.json (scripts/fixtures/logprobs_fixtures.py).
type torchEcho struct {
	Text          string         `json:"text"`
	IDs           []int          `json:"ids"`
	TokenLogprobs []*float64     `json:"token_logprobs"`
	TopLogprobs   [][][2]float64 `json:"top_logprobs"`
	NLL           float64        `json:"nll"`
}

type legacyChoice struct {
	Text         string          `json:"text"`
	Index        int             `json:"index"`
	Logprobs     *legacyLogprobs `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type legacyReply struct {
	Choices []legacyChoice `json:"choices"`
	Usage   usage          `json:"usage"`
}

// TestCompletionsEchoMatchesTorch: echo with max_tokens 0 (an evaluation harness's
// loglikelihood request) returns the prompt's tokens with PyTorch's logprobs, the first null,
// and their sum is the text's negative log-likelihood.
func TestCompletionsEchoMatchesTorch(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/logprobs/gpt2-tiny-echo.json")
	if err != nil {
		t.Fatal(err)
	}
	var want torchEcho
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	_, ts := newTestServer(t, Options{})
	for _, prompt := range []any{want.Text, want.IDs} {
		status, _, body := call(t, ts.Client(), "POST", ts.URL+"/v1/completions",
			map[string]any{"model": "gpt2", "prompt": prompt, "max_tokens": 0, "echo": true, "logprobs": 5})
		if status != 200 {
			t.Fatalf("prompt %v: %d %s", prompt, status, body)
		}
		var got legacyReply
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Choices) != 1 || got.Choices[0].Text != want.Text || got.Choices[0].FinishReason != "length" || got.Usage.CompletionTokens != 0 {
			t.Fatalf("prompt %v: %s", prompt, body)
		}
		lp := got.Choices[0].Logprobs
		if lp == nil || len(lp.Tokens) != len(want.IDs) || len(lp.TokenLogprobs) != len(want.IDs) || len(lp.TextOffset) != len(want.IDs) {
			t.Fatalf("prompt %v: logprobs %s", prompt, body)
		}
		if lp.TokenLogprobs[0] != nil || lp.TopLogprobs[0] != nil || strings.Join(lp.Tokens, "") != want.Text || lp.TextOffset[0] != 0 {
			t.Errorf("first token: %v %v, tokens %q offsets %v", lp.TokenLogprobs[0], lp.TopLogprobs[0], lp.Tokens, lp.TextOffset)
		}
		sum, worst := 0.0, 0.0
		for i := 1; i < len(want.IDs); i++ {
			g := lp.TokenLogprobs[i]
			if g == nil || math.Abs(*g-*want.TokenLogprobs[i]) > torchLogprobTolerance {
				t.Errorf("token %d %q: logprob %v, PyTorch %v", i, lp.Tokens[i], g, *want.TokenLogprobs[i])
				continue
			}
			sum += *g
			worst = max(worst, math.Abs(*g-*want.TokenLogprobs[i]))
			if lp.TextOffset[i] != lp.TextOffset[i-1]+len(lp.Tokens[i-1]) {
				t.Errorf("text_offset %v for tokens %q", lp.TextOffset, lp.Tokens)
			}
			if len(lp.TopLogprobs[i]) != 5 {
				t.Errorf("token %d: %d alternatives, want 5", i, len(lp.TopLogprobs[i]))
			}
			best := want.TopLogprobs[i][0][1]
			for _, v := range lp.TopLogprobs[i] {
				if v > best+torchLogprobTolerance {
					t.Errorf("token %d: alternative %v above PyTorch's best %v", i, v, best)
				}
			}
		}
		t.Logf("prompt %T: −Σ logprobs %.6f, PyTorch NLL %.6f, worst token |Δ| %.2g", prompt, -sum, want.NLL, worst)
		if math.Abs(-sum-want.NLL) > torchLogprobTolerance*float64(len(want.IDs)) {
			t.Errorf("−Σ logprobs = %.6f, PyTorch NLL %.6f", -sum, want.NLL)
		}
	}
}

// TestCompletionsNAndLogprobs: n rows per prompt, seeded Seed+row (row r alone with seed+r is
// the same text), and the logprobs of generated tokens are those of the echoed text scored again.
func TestCompletionsNAndLogprobs(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	c := ts.Client()
	post := func(req map[string]any) legacyReply {
		t.Helper()
		status, _, body := call(t, c, "POST", ts.URL+"/v1/completions", req)
		if status != 200 {
			t.Fatalf("%v: %d %s", req, status, body)
		}
		var r legacyReply
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	many := post(map[string]any{"model": "gpt2", "prompt": []string{"Hello", "Once"}, "n": 3, "max_tokens": 5, "seed": 40, "logprobs": 2})
	if len(many.Choices) != 6 || many.Usage.PromptTokens != 2 {
		t.Fatalf("n=3 × 2 prompts: %d choices, usage %+v", len(many.Choices), many.Usage)
	}
	distinct := map[string]bool{}
	for i, ch := range many.Choices {
		distinct[ch.Text] = true
		if ch.Index != i || ch.Logprobs == nil || strings.Join(ch.Logprobs.Tokens, "") != ch.Text {
			t.Errorf("choice %d: %+v", i, ch)
		}
		for j, top := range ch.Logprobs.TopLogprobs {
			if len(top) == 0 || len(top) > 2 {
				t.Errorf("choice %d token %d: %d alternatives, want ≤ 2", i, j, len(top))
			}
		}
	}
	if len(distinct) < 2 {
		t.Errorf("n=3 sampled rows are all %q", many.Choices[0].Text)
	}
	prompts := []string{"Hello", "Once"}
	for _, i := range []int{1, 5} {
		alone := post(map[string]any{"model": "gpt2", "prompt": prompts[i/3], "max_tokens": 5, "seed": 40 + i})
		if alone.Choices[0].Text != many.Choices[i].Text {
			t.Errorf("row %d: %q, alone with seed+%d: %q", i, many.Choices[i].Text, i, alone.Choices[0].Text)
		}
		// Scoring the row's whole text gives its generated tokens the same logprobs.
		ch := many.Choices[i]
		scored := post(map[string]any{"model": "gpt2", "prompt": prompts[i/3] + ch.Text, "max_tokens": 0, "echo": true, "logprobs": 0})
		slp := scored.Choices[0].Logprobs
		n := len(ch.Logprobs.TokenLogprobs)
		if len(slp.Tokens) < n {
			t.Fatalf("row %d rescored: %d tokens, generated %d", i, len(slp.Tokens), n)
		}
		tail := slp.TokenLogprobs[len(slp.TokenLogprobs)-n:]
		for j := range n {
			if math.Abs(*tail[j]-*ch.Logprobs.TokenLogprobs[j]) > torchLogprobTolerance {
				t.Errorf("row %d token %d: generated logprob %v, scored %v", i, j, *ch.Logprobs.TokenLogprobs[j], *tail[j])
			}
		}
	}
}

// TestCompletionsBadFields: the new fields' bad values are 400s in OpenAI's error shape that
// name the field, and the server keeps serving.
func TestCompletionsBadFields(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	expectBadRequests(t, ts, "/v1/completions", map[string]any{"model": "gpt2", "prompt": "Hello"}, []badCase{
		{map[string]any{"logprobs": 6}, "logprobs = 6"},
		{map[string]any{"logprobs": -1}, "logprobs = -1"},
		{map[string]any{"logprobs": true}, "logprobs: want an integer"},
		{map[string]any{"n": 17}, "n = 17"},
		{map[string]any{"n": 0}, "n = 0"},
		{map[string]any{"n": 16, "prompt": []string{"a", "b"}}, "at most 16"},
		{map[string]any{"echo": true, "stream": true}, "echo with stream"},
		{map[string]any{"max_tokens": 0}, "max_tokens = 0"},
		{map[string]any{"best_of": 2}, "best_of"},
	})
	status, _, body := call(t, ts.Client(), "POST", ts.URL+"/v1/completions", map[string]any{"model": "gpt2", "prompt": "Hello", "max_tokens": 2})
	if status != 200 {
		t.Errorf("after the bad requests: %d %s", status, body)
	}
}

type badCase struct {
	body map[string]any // over the base request
	want string         // in the error message
}

// expectBadRequests sends each case over base and wants a 400 in OpenAI's error shape whose
// message names the problem.
func expectBadRequests(t *testing.T, ts *httptest.Server, path string, base map[string]any, cases []badCase) {
	t.Helper()
	for _, tc := range cases {
		req := maps.Clone(base)
		maps.Copy(req, tc.body)
		status, _, body := call(t, ts.Client(), "POST", ts.URL+path, req)
		var e struct {
			Error struct{ Message, Type string } `json:"error"`
		}
		if status != 400 || json.Unmarshal(body, &e) != nil || e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("%s %v: %d %s, want 400 naming %q", path, tc.body, status, body, tc.want)
		}
	}
}

// TestCompletionsStreamLogprobs: streamed, each choice's logprobs arrive with its finish reason
// and list the tokens of the text streamed before.
func TestCompletionsStreamLogprobs(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	js, _ := json.Marshal(map[string]any{"model": "gpt2", "prompt": "Hello", "n": 2, "max_tokens": 4, "seed": 3, "logprobs": 1, "stream": true})
	resp, err := ts.Client().Post(ts.URL+"/v1/completions", "application/json", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, data := sseData(t, resp.Body)
	text := make([]string, 2)
	got := 0
	for _, d := range data[:len(data)-1] {
		var chunk legacyReply
		if err := json.Unmarshal([]byte(d), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", d, err)
		}
		for _, ch := range chunk.Choices {
			text[ch.Index] += ch.Text
			if ch.Logprobs == nil {
				continue
			}
			got++
			if ch.FinishReason == "" || strings.Join(ch.Logprobs.Tokens, "") != text[ch.Index] || len(ch.Logprobs.TokenLogprobs) != 4 {
				t.Errorf("choice %d: logprobs %+v with finish %q after text %q", ch.Index, ch.Logprobs, ch.FinishReason, text[ch.Index])
			}
		}
	}
	if got != 2 {
		t.Errorf("%d logprobs objects in the stream, want 2: %q", got, data)
	}
}

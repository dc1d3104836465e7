package server

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/runtime/tokenizer"
)

// FuzzChatRequest: any JSON body either fails check with an httpError or yields messages with
// known roles and a completions request whose own check passes.
func FuzzChatRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt2","messages":[{"role":"user","content":"Hi"}]}`,
		`{"model":"gpt2","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"logprobs":true,"top_logprobs":3,"stream":true}`,
		`{"model":"gpt2","messages":[{"role":"user"}]}`,
		`{"model":"gpt2","messages":[{"role":"tool","content":"x"}],"tools":[{"type":"function"}]}`,
		`{"model":"gpt2","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`,
		`{"model":"gpt2","messages":[{"role":"user","content":[{"type":"image_url"}]}],"n":17,"max_completion_tokens":0}`,
		`{"model":"gpt2","messages":[],"top_logprobs":21}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var req chatRequest
		if json.Unmarshal([]byte(body), &req) != nil {
			return
		}
		msgs, creq, k, err := req.check()
		if err != nil {
			if _, ok := err.(*httpError); !ok {
				t.Fatalf("check(%s): error %T %v is not an httpError", body, err, err)
			}
			return
		}
		if len(msgs) == 0 || k < -1 || k > maxChatLogprobs {
			t.Fatalf("check(%s): %d messages, k %d", body, len(msgs), k)
		}
		for _, m := range msgs {
			if m.Role != "system" && m.Role != "user" && m.Role != "assistant" {
				t.Fatalf("check(%s): role %q", body, m.Role)
			}
		}
		if _, _, _, err := creq.check(DefaultMaxBatch); err == nil && creq.Echo {
			t.Fatalf("check(%s): chat echoes", body)
		}
	})
}

type chatReply struct {
	Choices []struct {
		Index   int
		Message struct{ Role, Content string }
		Delta   struct{ Role, Content string }
		// Logprobs is OpenAI's chat logprobs object.
		Logprobs *struct {
			Content []struct {
				Token       string
				Logprob     float64
				Bytes       []int
				TopLogprobs []struct{ Token string } `json:"top_logprobs"`
			}
		}
		FinishReason *string `json:"finish_reason"`
	}
	Object string
	Usage  *usage
}

// TestChatCompletions: the default template is a plain prompt (the same text as completions
// of it), a model's chat_template tokenizes its own special tokens but not the users', stream
// and logprobs work, and what the server cannot honour is a 400 that says so.
func TestChatCompletions(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	c := ts.Client()
	post := func(path string, req map[string]any) []byte {
		t.Helper()
		status, _, body := call(t, c, "POST", ts.URL+path, req)
		if status != 200 {
			t.Fatalf("%s %v: %d %s", path, req, status, body)
		}
		return body
	}
	msgs := []map[string]any{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}}
	var chat chatReply
	if err := json.Unmarshal(post("/v1/chat/completions", map[string]any{"model": "gpt2", "messages": msgs, "max_tokens": 6, "temperature": 0}), &chat); err != nil {
		t.Fatal(err)
	}
	var plain legacyReply
	if err := json.Unmarshal(post("/v1/completions", map[string]any{"model": "gpt2", "prompt": "system: Be brief.\nuser: Hello\nassistant:", "max_tokens": 6, "temperature": 0}), &plain); err != nil {
		t.Fatal(err)
	}
	if chat.Object != "chat.completion" || len(chat.Choices) != 1 || chat.Choices[0].Message.Role != "assistant" ||
		chat.Choices[0].Message.Content != plain.Choices[0].Text || *chat.Usage != plain.Usage {
		t.Errorf("chat %+v, completions of the default template's text %+v", chat, plain)
	}

	// gpt2-chat's template puts {{$.EOS}} after each message: the template's <|endoftext|> is
	// the token, the one a user typed is text.
	tok, err := tokenizer.Load("../../testdata/models/gpt2-tiny")
	if err != nil {
		t.Fatal(err)
	}
	var own chatReply
	body := post("/v1/chat/completions", map[string]any{"model": "gpt2-chat", "messages": []map[string]any{{"role": "user", "content": "Hi <|endoftext|>"}}, "max_tokens": 3, "temperature": 0, "logprobs": true, "top_logprobs": 3})
	if err := json.Unmarshal(body, &own); err != nil {
		t.Fatal(err)
	}
	want := append(tok.EncodeOrdinary("user> Hi <|endoftext|>"), tok.EOS())
	want = append(want, tok.EncodeOrdinary("bot>")...)
	if own.Usage.PromptTokens != len(want) {
		t.Errorf("gpt2-chat prompt tokens %d, want %d (%v)", own.Usage.PromptTokens, len(want), want)
	}
	var same legacyReply
	if err := json.Unmarshal(post("/v1/completions", map[string]any{"model": "gpt2", "prompt": want, "max_tokens": 3, "temperature": 0}), &same); err != nil {
		t.Fatal(err)
	}
	ch := own.Choices[0]
	if ch.Message.Content != same.Choices[0].Text || ch.Logprobs == nil || len(ch.Logprobs.Content) != own.Usage.CompletionTokens {
		t.Fatalf("gpt2-chat: %s, want text %q", body, same.Choices[0].Text)
	}
	var joined strings.Builder
	for _, e := range ch.Logprobs.Content {
		joined.WriteString(e.Token)
		if len(e.TopLogprobs) != 3 || e.TopLogprobs[0].Token != e.Token || !(e.Logprob <= 0) || !bytes.Equal(intsToBytes(e.Bytes), []byte(e.Token)) {
			t.Errorf("greedy token %+v: want itself first of 3 alternatives", e)
		}
	}
	if joined.String() != ch.Message.Content {
		t.Errorf("logprobs tokens %q, content %q", joined.String(), ch.Message.Content)
	}

	// Streamed: role first, deltas concatenate to the content, usage on request, [DONE].
	js, _ := json.Marshal(map[string]any{"model": "gpt2", "messages": msgs, "max_tokens": 6, "temperature": 0, "stream": true,
		"stream_options": map[string]bool{"include_usage": true}, "stop": []string{"\n\n"}})
	resp, err := c.Post(ts.URL+"/v1/chat/completions", "application/json", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, data := sseData(t, resp.Body)
	if len(data) < 3 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("stream %q", data)
	}
	var text strings.Builder
	var roles []string
	var streamed *usage
	for _, d := range data[:len(data)-1] {
		var chunk chatReply
		if err := json.Unmarshal([]byte(d), &chunk); err != nil || chunk.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %q: %v", d, err)
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
			if c.Delta.Role != "" {
				roles = append(roles, c.Delta.Role)
			}
		}
		if chunk.Usage != nil {
			streamed = chunk.Usage
		}
	}
	if text.String() != chat.Choices[0].Message.Content || !slices.Equal(roles, []string{"assistant"}) || streamed == nil || *streamed != *chat.Usage {
		t.Errorf("streamed %q roles %v usage %+v; want %q %+v", text.String(), roles, streamed, chat.Choices[0].Message.Content, chat.Usage)
	}
}

func intsToBytes(v []int) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

// TestChatBadInput: OpenAI's error shape, naming what is wrong; the server keeps serving.
func TestChatBadInput(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	user := []map[string]any{{"role": "user", "content": "Hi"}}
	expectBadRequests(t, ts, "/v1/chat/completions", map[string]any{"model": "gpt2"}, []badCase{
		{map[string]any{"messages": []map[string]any{{"role": "user"}}}, "messages[0].content: required"},
		{map[string]any{"messages": []map[string]any{{"role": "user", "content": nil}}}, "messages[0].content: required"},
		{map[string]any{"messages": []map[string]any{{"role": "robot", "content": "x"}}}, `messages[0].role "robot"`},
		{map[string]any{"messages": []map[string]any{{"role": "tool", "content": "x"}}}, `messages[0].role "tool"`},
		{map[string]any{"messages": []map[string]any{{"role": "user", "content": []map[string]any{{"type": "image_url"}}}}}, "only text parts"},
		{map[string]any{"messages": []map[string]any{}}, "messages: required"},
		{map[string]any{"messages": user, "tools": []map[string]any{{"type": "function", "function": map[string]any{"name": "f"}}}}, "cannot call tools"},
		{map[string]any{"messages": user, "tool_choice": "auto"}, "tool_choice"},
		{map[string]any{"messages": user, "response_format": map[string]any{"type": "json_object"}}, "cannot constrain the output to JSON"},
		{map[string]any{"messages": user, "logprobs": true, "top_logprobs": 21}, "top_logprobs = 21"},
		{map[string]any{"messages": user, "top_logprobs": 2}, "needs logprobs: true"},
		{map[string]any{"messages": user, "n": 17}, "n = 17"},
		{map[string]any{"messages": user, "model": "vae"}, "is a vae model"},
	})
	status, _, body := call(t, ts.Client(), "POST", ts.URL+"/v1/chat/completions", map[string]any{"model": "gpt2", "messages": user, "max_tokens": 2})
	if status != 200 {
		t.Errorf("after the bad requests: %d %s", status, body)
	}
}

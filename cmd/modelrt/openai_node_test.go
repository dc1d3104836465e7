package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/internal/plugintest"
)

// nodeTolerance bounds |modelrt − PyTorch| for a logprob of the F16 gpt2-tiny (both float32).
const nodeTolerance = 1e-4

// nodeOpenAIConfig serves gpt2-tiny plain and with a chat template.
const nodeOpenAIConfig = `
backend "native" {
  plugin = "modelrt-native"
}
model "gpt2" {
  backend = backend.native
  path    = "%[1]s/gpt2-tiny"
  task    = "causal-lm"
}
model "gpt2-chat" {
  backend       = backend.native
  path          = "%[1]s/gpt2-tiny"
  task          = "causal-lm"
  chat_template = "{{range .Messages}}{{.Role}}> {{.Content}}{{$.EOS}}{{end}}bot>"
}
`

// nodeOpenAIScript uses the client as an application would: scoring (what lm-evaluation-harness
// sends for loglikelihood), n, streaming with usage, chat with logprobs and stop, chat streamed,
// and the requests the server refuses, reporting the error class the client raises for each.
const nodeOpenAIScript = `
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: process.env.BASE_URL + "/v1", apiKey: "s3cret", maxRetries: 0 });
const user = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }];
(async () => {
  const out = {};
  out.score = await client.completions.create({ model: "gpt2", prompt: process.env.TEXT, max_tokens: 0, echo: true, logprobs: 5 });
  out.n = await client.completions.create({ model: "gpt2", prompt: "Hello", n: 3, max_tokens: 4, seed: 9, logprobs: 1 });
  out.greedy = await client.completions.create({ model: "gpt2", prompt: "Hello", max_tokens: 5, temperature: 0 });
  const s = await client.completions.create({ model: "gpt2", prompt: "Hello", max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
  out.streamText = "";
  for await (const c of s) {
    for (const ch of c.choices) out.streamText += ch.text;
    if (c.usage) out.streamUsage = c.usage;
  }
  const chatReq = { model: "gpt2-chat", messages: user, max_tokens: 6, temperature: 0, stop: ["\n"] };
  out.chat = await client.chat.completions.create({ ...chatReq, logprobs: true, top_logprobs: 2 });
  const cs = await client.chat.completions.create({ ...chatReq, stream: true });
  out.chatStream = "";
  for await (const c of cs) for (const ch of c.choices) out.chatStream += ch.delta.content ?? "";
  out.errors = {};
  const bad = {
    tools: () => client.chat.completions.create({ model: "gpt2", messages: user, tools: [{ type: "function", function: { name: "f", parameters: {} } }] }),
    json: () => client.chat.completions.create({ model: "gpt2", messages: user, response_format: { type: "json_object" } }),
    role: () => client.chat.completions.create({ model: "gpt2", messages: [{ role: "wizard", content: "x" }] }),
    logprobs: () => client.completions.create({ model: "gpt2", prompt: "x", logprobs: 6 }),
    n: () => client.completions.create({ model: "gpt2", prompt: "x", n: 17 }),
    echoStream: () => client.completions.create({ model: "gpt2", prompt: "x", echo: true, stream: true }),
  };
  for (const [name, f] of Object.entries(bad)) {
    try { await f(); out.errors[name] = { name: "none" }; }
    catch (e) { out.errors[name] = { name: e.constructor.name, status: e.status, message: e.message }; }
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`

// TestServeOpenAINodeClient: the official OpenAI Node client works against `modelrt serve`
// unchanged for completions (echo scoring equal to PyTorch's logprobs, n, streaming with
// usage) and chat (template, logprobs, stop, streaming), and gets BadRequestError with the
// server's reason for what it cannot honour.
func TestServeOpenAINodeClient(t *testing.T) {
	dir := plugintest.OpenAINode(t)
	raw, err := os.ReadFile("../../testdata/logprobs/gpt2-tiny-echo.json")
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Text          string
		TokenLogprobs []*float64 `json:"token_logprobs"`
		NLL           float64
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	models, err := filepath.Abs("../../testdata/models")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	cfg, token := filepath.Join(tmp, "serve.hcl"), filepath.Join(tmp, "token")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, nodeOpenAIConfig, models), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--config", cfg, "--auth-token-file", token)
	out := plugintest.RunNode(t, dir, "openai-cli.js", nodeOpenAIScript, s.log, "BASE_URL="+s.url, "TEXT="+want.Text)
	var got struct {
		Score struct {
			Choices []struct {
				Text     string
				Logprobs struct {
					Tokens        []string
					TokenLogprobs []*float64 `json:"token_logprobs"`
				}
			}
		}
		N struct {
			Choices []struct {
				Text  string
				Index int
			}
		}
		Greedy struct {
			Choices []struct{ Text string }
			Usage   map[string]int
		}
		StreamText  string
		StreamUsage map[string]int
		Chat        struct {
			Choices []struct {
				Message      struct{ Role, Content string }
				Logprobs     struct{ Content []struct{ Token string } }
				FinishReason string `json:"finish_reason"`
			}
		}
		ChatStream string
		Errors     map[string]struct {
			Name    string
			Status  int
			Message string
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	sc := got.Score.Choices
	if len(sc) != 1 || sc[0].Text != want.Text || len(sc[0].Logprobs.TokenLogprobs) != len(want.TokenLogprobs) || sc[0].Logprobs.TokenLogprobs[0] != nil {
		t.Fatalf("score: %s", out)
	}
	sum := 0.0
	for i := 1; i < len(want.TokenLogprobs); i++ {
		g := *sc[0].Logprobs.TokenLogprobs[i]
		sum += g
		if math.Abs(g-*want.TokenLogprobs[i]) > nodeTolerance {
			t.Errorf("token %d: logprob %v, PyTorch %v", i, g, *want.TokenLogprobs[i])
		}
	}
	t.Logf("scored %q: −Σ logprobs %.6f, PyTorch NLL %.6f", want.Text, -sum, want.NLL)
	if len(got.N.Choices) != 3 || got.N.Choices[2].Index != 2 {
		t.Errorf("n=3: %+v", got.N)
	}
	if got.StreamText != got.Greedy.Choices[0].Text || got.StreamUsage["total_tokens"] != got.Greedy.Usage["total_tokens"] {
		t.Errorf("stream %q usage %v, want %q %v", got.StreamText, got.StreamUsage, got.Greedy.Choices[0].Text, got.Greedy.Usage)
	}
	ch := got.Chat.Choices
	if len(ch) != 1 || ch[0].Message.Role != "assistant" || strings.Contains(ch[0].Message.Content, "\n") || ch[0].Message.Content != got.ChatStream {
		t.Errorf("chat %+v, streamed %q", got.Chat, got.ChatStream)
	} else if len(ch[0].Logprobs.Content) == 0 && ch[0].Message.Content != "" {
		t.Errorf("chat logprobs: none for %q", ch[0].Message.Content)
	}
	for name, msg := range map[string]string{
		"tools": "cannot call tools", "json": "cannot constrain the output to JSON", "role": `role "wizard"`,
		"logprobs": "logprobs = 6", "n": "n = 17", "echoStream": "echo with stream",
	} {
		if e := got.Errors[name]; e.Name != "BadRequestError" || e.Status != 400 || !strings.Contains(e.Message, msg) {
			t.Errorf("%s: %+v, want BadRequestError 400 saying %q", name, e, msg)
		}
	}
}

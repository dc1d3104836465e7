package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// FuzzCompletionRequest: any JSON body either fails check with an httpError or yields options
// generate accepts: at least one token to draw, a valid sampling, 1..maxBatch prompts.
func FuzzCompletionRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt2","prompt":"Hello","max_tokens":4}`,
		`{"model":"gpt2","prompt":["a","b"],"stop":["\n"],"temperature":0.5,"top_p":0.9,"seed":3}`,
		`{"model":"gpt2","prompt":[1,2,3],"top_k":5,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"gpt2","prompt":[[1],[2,3]],"n":1,"logprobs":null}`,
		`{"model":"gpt2","prompt":"x","max_tokens":0}`,
		`{"model":"gpt2","prompt":"x","stop":""}`,
		`{"model":"gpt2","prompt":"x","max_tokens":0,"echo":true,"logprobs":5}`,
		`{"model":"gpt2","prompt":["x","y"],"n":8,"logprobs":0}`,
		`{"model":"gpt2","prompt":"x","n":17,"logprobs":6,"echo":true,"stream":true}`,
		`{"model":"gpt2","prompt":"x","logprobs":"5","best_of":3,"n":3}`,
		`{"model":"gpt2","prompt":[[1],[]]}`,
	} {
		f.Add(s)
	}
	const maxBatch = 4
	f.Fuzz(func(t *testing.T, body string) {
		var req completionRequest
		if json.Unmarshal([]byte(body), &req) != nil {
			return
		}
		opts, ids, texts, err := req.check(maxBatch)
		if err != nil {
			if _, ok := err.(*httpError); !ok {
				t.Fatalf("check(%s): error %T %v is not an httpError", body, err, err)
			}
			return
		}
		if n := len(ids) + len(texts); n < 1 || n*req.n > maxBatch || req.n < 1 || req.n > maxChoices {
			t.Fatalf("check(%s): %d prompts × n %d", body, n, req.n)
		}
		if req.logprobs < -1 || req.logprobs > maxLegacyLogprobs || req.Echo && req.Stream {
			t.Fatalf("check(%s): logprobs %d, echo %v stream %v", body, req.logprobs, req.Echo, req.Stream)
		}
		if opts.MaxNewTokens < 1 && !(opts.MaxNewTokens == 0 && req.Echo) {
			t.Fatalf("check(%s): MaxNewTokens %d", body, opts.MaxNewTokens)
		}
		if err := opts.Sampling.Validate(); err != nil {
			t.Fatalf("check(%s): sampling %+v: %v", body, opts.Sampling, err)
		}
		for _, p := range ids {
			if len(p) == 0 {
				t.Fatalf("check(%s): an empty prompt of ids", body)
			}
		}
		for _, s := range opts.StopStrings {
			if s == "" {
				t.Fatalf("check(%s): empty stop string", body)
			}
		}
	})
}

func TestCompletions(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	c := ts.Client()
	req := map[string]any{"model": "gpt2", "prompt": "Hello", "max_tokens": 6, "temperature": 0}
	status, _, body := call(t, c, "POST", ts.URL+"/v1/completions", req)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var got completionResponse
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Choices) != 1 || got.Choices[0].Text == "" || got.Object != "text_completion" || !strings.HasPrefix(got.ID, "cmpl-") {
		t.Fatalf("response = %s", body)
	}
	if u := got.Usage; u == nil || u.PromptTokens != 1 || u.CompletionTokens < 1 || u.CompletionTokens > 6 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage = %+v", got.Usage)
	}

	// The same request streamed: the deltas concatenate to the same greedy text.
	req["stream"] = true
	req["stream_options"] = map[string]bool{"include_usage": true}
	js, _ := json.Marshal(req)
	resp, err := c.Post(ts.URL+"/v1/completions", "application/json", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	_, data := sseData(t, resp.Body)
	if len(data) < 3 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("stream = %q", data)
	}
	var text strings.Builder
	var finish string
	var streamedUsage *usage
	for _, d := range data[:len(data)-1] {
		var chunk completionResponse
		if err := json.Unmarshal([]byte(d), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", d, err)
		}
		for _, ch := range chunk.Choices {
			text.WriteString(ch.Text)
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
		if chunk.Usage != nil {
			streamedUsage = chunk.Usage
		}
	}
	if text.String() != got.Choices[0].Text || finish != *got.Choices[0].FinishReason {
		t.Errorf("streamed %q (%s), want %q (%s)", text.String(), finish, got.Choices[0].Text, *got.Choices[0].FinishReason)
	}
	if streamedUsage == nil || *streamedUsage != *got.Usage {
		t.Errorf("streamed usage %+v, want %+v", streamedUsage, got.Usage)
	}

	// A batch of prompts, seeded sampling: one choice per prompt, reproducible with its seed.
	batch := map[string]any{"model": "gpt2", "prompt": []string{"Hello", "Once upon a time"}, "max_tokens": 4, "seed": 7, "stop": []string{"\n\n"}}
	_, _, b1 := call(t, c, "POST", ts.URL+"/v1/completions", batch)
	_, _, b2 := call(t, c, "POST", ts.URL+"/v1/completions", batch)
	var r1, r2 completionResponse
	if json.Unmarshal(b1, &r1) != nil || json.Unmarshal(b2, &r2) != nil || len(r1.Choices) != 2 || r1.Choices[1].Index != 1 {
		t.Fatalf("batch: %s", b1)
	}
	for i := range r1.Choices {
		if r1.Choices[i].Text != r2.Choices[i].Text {
			t.Errorf("seeded choice %d differs: %q vs %q", i, r1.Choices[i].Text, r2.Choices[i].Text)
		}
	}
	if r1.Usage.PromptTokens != 1+4 {
		t.Errorf("batch prompt tokens = %d, want 5", r1.Usage.PromptTokens)
	}

	status, _, body = call(t, c, "GET", ts.URL+"/v1/models", nil)
	if status != 200 || !strings.Contains(string(body), `"id":"gpt2"`) || strings.Contains(string(body), `"vae"`) {
		t.Errorf("models = %d %s (want gpt2 only: vae is not a causal-lm)", status, body)
	}
}

// isErrorEvent reports whether the data of a stream event is an error object ({"error": ...}).
// A substring test for "error" is not enough: a sampled completion chunk can carry the text
// "error" ({"choices":[{"text":"error",...}]}).
func isErrorEvent(data string) bool {
	var ev struct {
		Error json.RawMessage `json:"error"`
	}
	return json.Unmarshal([]byte(data), &ev) == nil && len(ev.Error) > 0 && string(ev.Error) != "null"
}

// streamCompletion starts a streamed completion and returns the response.
func streamCompletion(ctx context.Context, c *http.Client, url string, maxTokens int) (*http.Response, error) {
	body := fmt.Sprintf(`{"model":"gpt2","prompt":"Once upon a time","max_tokens":%d,"temperature":0.9,"stream":true}`, maxTokens)
	req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/completions", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.Do(req)
}

// TestBackendKilledMidStream: SIGKILL the plugin while it streams; the request ends with an
// error event (no [DONE]), the plugin is restarted, and the next request succeeds.
func TestBackendKilledMidStream(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	c := ts.Client()
	e := s.Engine()
	const attempts = 5
	killed := false
	for attempt := 0; attempt < attempts && !killed; attempt++ {
		resp, err := streamCompletion(context.Background(), c, ts.URL, 60)
		if err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(resp.Body)
		if _, err := rd.ReadString('\n'); err != nil { // the first chunk: generation is under way
			t.Fatal(err)
		}
		pid := e.Backends()[0].Pid
		p, err := os.FindProcess(pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Kill(); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
		_, data := sseData(t, rd)
		resp.Body.Close()
		switch {
		case len(data) > 0 && data[len(data)-1] == "[DONE]":
			t.Logf("attempt %d: the stream finished before the kill landed; again", attempt)
		case len(data) > 0 && isErrorEvent(data[len(data)-1]):
			killed = true
			if !strings.Contains(data[len(data)-1], "backend_unavailable") {
				t.Errorf("error event = %s", data[len(data)-1])
			}
		default:
			t.Fatalf("stream ended with neither [DONE] nor an error: %q", data)
		}
		// Wait for the restart either way, so that the next attempt kills a live process.
		if !settle(20*time.Second, func() bool { b := e.Backends()[0]; return b.State == "running" && b.Pid != pid }) {
			t.Fatalf("the backend did not come back: %+v", e.Backends())
		}
	}
	if !killed {
		t.Fatalf("no kill landed mid-stream in %d attempts", attempts)
	}
	status, _, body := call(t, c, "POST", ts.URL+"/v1/completions", `{"model":"gpt2","prompt":"Hello","max_tokens":4}`)
	if status != 200 {
		t.Errorf("after the restart: %d %s", status, body)
	}
	if e.Backends()[0].Restarts < 1 {
		t.Errorf("restarts = %d", e.Backends()[0].Restarts)
	}
	_, _, metrics := call(t, c, "GET", ts.URL+"/metrics", nil)
	if !strings.Contains(string(metrics), `modelrt_plugin_restarts_total{backend="native"}`) || strings.Contains(string(metrics), `modelrt_plugin_restarts_total{backend="native"} 0`) {
		t.Errorf("metrics do not count the restart")
	}
}

// TestConcurrentStreamsWithDisconnects: 50 streaming clients, some of which hang up at random
// points; afterwards the backend holds no session and no goroutine is left over.
func TestConcurrentStreamsWithDisconnects(t *testing.T) {
	s, ts := newTestServer(t, Options{MaxConcurrency: 4, MaxQueue: 64})
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	// Warm up (connections, lazily started goroutines), then count.
	if resp, err := streamCompletion(context.Background(), c, ts.URL, 2); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	base := settledGoroutines()

	const clients = 50
	type outcome struct {
		done, cut bool
		err       error
	}
	results := make(chan outcome, clients)
	for i := range clients {
		go func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// Clients 0, 3, 6, ... hang up after i%5 chunks; the rest read to the end.
			cutAfter := -1
			if i%3 == 0 {
				cutAfter = i % 5
			}
			resp, err := streamCompletion(ctx, c, ts.URL, 20+i%20)
			if err != nil {
				results <- outcome{err: err}
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				results <- outcome{err: fmt.Errorf("status %d", resp.StatusCode)}
				return
			}
			sc := bufio.NewScanner(resp.Body)
			chunks := 0
			for sc.Scan() {
				line := sc.Text()
				if line == "data: [DONE]" {
					results <- outcome{done: true}
					return
				}
				if strings.HasPrefix(line, "data: ") {
					if isErrorEvent(strings.TrimPrefix(line, "data: ")) {
						results <- outcome{err: fmt.Errorf("error event: %s", line)}
						return
					}
					if chunks++; chunks > cutAfter && cutAfter >= 0 {
						cancel()
						results <- outcome{cut: true}
						return
					}
				}
			}
			results <- outcome{err: fmt.Errorf("stream ended without [DONE]: %v", sc.Err())}
		}()
	}
	done, cut := 0, 0
	for range clients {
		r := <-results
		switch {
		case r.err != nil:
			t.Error(r.err)
		case r.done:
			done++
		case r.cut:
			cut++
		}
	}
	t.Logf("%d streams finished, %d clients hung up", done, cut)
	if done == 0 || cut == 0 {
		t.Errorf("want both finished and cut streams, have %d and %d", done, cut)
	}
	// The handlers of the cut streams notice the hang-up and close their sessions.
	e := s.Engine()
	l := s.cur.limits["gpt2"]
	if !settle(20*time.Second, func() bool { return openSessions(t, e, "gpt2") == 0 && len(l.slots) == 0 && l.queued() == 0 }) {
		t.Errorf("the backend still holds %d sessions; the limiter %d slots and %d queued", openSessions(t, e, "gpt2"), len(l.slots), l.queued())
	}
	tr.CloseIdleConnections()
	if !settle(20*time.Second, func() bool { return runtime.NumGoroutine() <= base }) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutines: %d after, %d before\n%s", runtime.NumGoroutine(), base, buf[:n])
	}
}

// settledGoroutines returns the goroutine count once it has stopped falling: the goroutines of
// the warm-up's connections end a moment after CloseIdleConnections, at a time no fixed sleep
// can promise. A base taken too early would be too high and hide a leak.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for end, still := time.Now().Add(10*time.Second), 0; still < 10 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m < n {
			n, still = m, 0
		} else {
			still++
		}
	}
	return n
}

// BenchmarkCompletion: one greedy 8-token completion of the tiny GPT-2 through the HTTP API and
// the native plugin process, at concurrency 1 (cmd/loadgen measures more levels).
func BenchmarkCompletion(b *testing.B) {
	s := New(newEngine(b), Options{Logger: quietLogger()})
	ts := httptest.NewServer(s)
	defer func() {
		ts.Close()
		s.Close()
	}()
	c := ts.Client()
	body := `{"model":"gpt2","prompt":"Once upon a time","max_tokens":8,"temperature":0}`
	for b.Loop() {
		resp, err := c.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(b.N*8)/b.Elapsed().Seconds(), "tokens/s")
}

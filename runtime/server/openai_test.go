package server

import (
	"encoding/json"
	"testing"
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
		if n := len(ids) + len(texts); n < 1 || n > maxBatch {
			t.Fatalf("check(%s): %d prompts", body, n)
		}
		if opts.MaxNewTokens < 1 {
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

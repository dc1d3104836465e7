package server

import (
	"encoding/json"
	"strings"
	"testing"
)

// errorMessage returns the message of a JSON error body, in OpenAI's shape or KServe's.
func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	var doc struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Error == nil {
		t.Errorf("body is not a JSON error: %s", body)
		return ""
	}
	var v1 struct {
		Message, Type, Code string
	}
	if json.Unmarshal(doc.Error, &v1) == nil {
		if v1.Message == "" || v1.Type == "" || v1.Code == "" {
			t.Errorf("error object lacks message, type or code: %s", body)
		}
		return v1.Message
	}
	var v2 string
	if err := json.Unmarshal(doc.Error, &v2); err != nil {
		t.Errorf("error is neither an object nor a string: %s", body)
	}
	return v2
}

// TestBadRequests: each bad request gets a 4xx with a JSON error body, and the server goes on
// serving.
func TestBadRequests(t *testing.T) {
	_, ts := newTestServer(t, Options{MaxBodyBytes: 4096})
	c := ts.Client()
	long := strings.Repeat("a b ", 40)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		want               string
	}{
		{"malformed JSON", "POST", "/v1/completions", `{"model": "gpt2", "prompt": `, 400, "malformed JSON"},
		{"not an object", "POST", "/v1/completions", `[1, 2]`, 400, "want an object"},
		{"empty body", "POST", "/v1/completions", ``, 400, "empty request body"},
		{"two values", "POST", "/v1/completions", `{"model":"gpt2","prompt":"x"} {}`, 400, "more than one"},
		{"max_tokens a string", "POST", "/v1/completions", `{"model":"gpt2","prompt":"x","max_tokens":"ten"}`, 400, "max_tokens"},
		{"prompt a number", "POST", "/v1/completions", `{"model":"gpt2","prompt":5}`, 400, "prompt"},
		{"temperature out of range", "POST", "/v1/completions", `{"model":"gpt2","prompt":"x","temperature":9}`, 400, "temperature"},
		{"n > 16", "POST", "/v1/completions", `{"model":"gpt2","prompt":"x","n":17}`, 400, "n = 17"},
		{"unknown model", "POST", "/v1/completions", `{"model":"gpt5","prompt":"x"}`, 404, `"gpt5" does not exist`},
		{"vae for completions", "POST", "/v1/completions", `{"model":"vae","prompt":"x"}`, 400, "causal-lm"},
		{"prompt beyond the context", "POST", "/v1/completions", `{"model":"gpt2","prompt":"` + long + `"}`, 400, "context of 64 tokens"},
		{"token id beyond the vocabulary", "POST", "/v1/completions", `{"model":"gpt2","prompt":[1, 99999]}`, 400, "vocabulary"},
		{"oversized body", "POST", "/v1/completions", `{"model":"gpt2","prompt":"` + strings.Repeat("x", 5000) + `"}`, 413, "exceeds the limit of 4096 bytes"},
		{"unknown pipeline", "POST", "/v1/pipelines/nope:run", `{"inputs":{}}`, 404, `"nope" does not exist`},
		{"pipeline without :run", "POST", "/v1/pipelines/complete", `{"inputs":{}}`, 404, ":run"},
		{"undeclared input", "POST", "/v1/pipelines/complete:run", `{"inputs":{"prompt":"x","temp":1}}`, 400, `no input "temp"`},
		{"input of the wrong type", "POST", "/v1/pipelines/complete:run", `{"inputs":{"prompt":"x","max_new_tokens":"many"}}`, 400, `input "max_new_tokens"`},
		{"missing input", "POST", "/v1/pipelines/complete:run", `{"inputs":{}}`, 400, "Missing required input"},
		{"pipeline prompt beyond the context", "POST", "/v1/pipelines/complete:run", `{"inputs":{"prompt":"` + long + `"}}`, 400, "context"},
		{"file path from a request", "POST", "/v1/pipelines/save:run", `{"inputs":{"out":"/etc/passwd"}}`, 403, "image.save"},
		{"env from a request", "POST", "/v1/pipelines/save:run", `{"inputs":{"note":"HOME"}}`, 403, "env()"},
		{"file name for an image input", "POST", "/v1/pipelines/reconstruct:run", `{"inputs":{"image":"/etc/passwd"}}`, 400, "does not take file names"},
		{"image input not base64", "POST", "/v1/pipelines/reconstruct:run", `{"inputs":{"image":{"data":"%%%"}}}`, 400, "not base64"},
		{"image input not an image", "POST", "/v1/pipelines/reconstruct:run", `{"inputs":{"image":{"data":"aGVsbG8="}}}`, 400, "cannot decode"},
		{"path steered by a model", "POST", "/v1/pipelines/steered:run", `{"inputs":{"prompt":"x"}}`, 403, "depends on stage outputs"},
		{"v2 unknown model", "POST", "/v2/models/gpt5/infer", `{"inputs":[]}`, 404, "not served"},
		{"v2 unknown version", "GET", "/v2/models/gpt2/versions/7", nil, 404, "version"},
		{"v2 no inputs", "POST", "/v2/models/gpt2/infer", `{"inputs":[]}`, 400, "at least one"},
		{"v2 NaN as a string", "POST", "/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,4,1,2],"data":[1,2,"NaN",4,5,6,7,8]}]}`, 400, "element 2: NaN is not finite"},
		{"v2 NaN as a bare token", "POST", "/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,1],"data":[NaN]}]}`, 400, "malformed JSON"},
		{"v2 infinity", "POST", "/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,1],"data":[1e39]}]}`, 400, "not finite"},
		{"v2 count and shape disagree", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,3],"data":[1,2]}]}`, 400, "needs 3 elements"},
		{"v2 float for an int", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,1],"data":[1.5]}]}`, 400, `"1.5" is not a INT64 integer`},
		{"v2 unknown datatype", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"COMPLEX","shape":[1],"data":[1]}]}`, 400, "datatype"},
		{"v2 negative dimension", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[-1],"data":[1]}]}`, 400, "negative"},
		{"v2 id beyond the vocabulary (backend)", "POST", "/v2/models/gpt2/infer", `{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,1],"data":[99999]}]}`, 400, "InvalidArgument"},
		{"v2 wrong rank (backend)", "POST", "/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[2],"data":[1,2]}]}`, 400, "latent"},
		{"no such route", "GET", "/v1/files/../../etc/passwd", nil, 404, "no route"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := call(t, c, tc.method, ts.URL+tc.path, tc.body)
			if status != tc.status {
				t.Errorf("status %d, want %d: %s", status, tc.status, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if msg := errorMessage(t, body); !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
		})
	}
	// Still serving.
	status, _, body := call(t, c, "POST", ts.URL+"/v1/completions", `{"model":"gpt2","prompt":"Hello","max_tokens":2}`)
	if status != 200 {
		t.Errorf("after the bad requests: %d %s", status, body)
	}
}

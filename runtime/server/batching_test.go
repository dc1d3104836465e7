package server

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
)

// TestCompletionsShareSteps: concurrent greedy completions go through the model's scheduler
// (its series appear in /metrics, with steps that advanced several requests) and return the
// text each returns alone.
func TestCompletionsShareSteps(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	c := ts.Client()
	prompts := []string{"Hello", "The quick brown fox", "Once upon a time there was", "A"}
	body := func(p string) string {
		return `{"model":"gpt2","prompt":` + strconv.Quote(p) + `,"max_tokens":12,"temperature":0}`
	}
	alone := make([]string, len(prompts))
	for i, p := range prompts {
		status, _, b := call(t, c, "POST", ts.URL+"/v1/completions", body(p))
		if status != http.StatusOK {
			t.Fatalf("alone %d: %d %s", i, status, b)
		}
		alone[i] = textOf(t, b)
	}
	for range 3 {
		got := make([]string, len(prompts))
		var wg sync.WaitGroup
		for i, p := range prompts {
			wg.Go(func() {
				status, _, b := call(t, c, "POST", ts.URL+"/v1/completions", body(p))
				if status != http.StatusOK {
					t.Errorf("together %d: %d %s", i, status, b)
					return
				}
				got[i] = textOf(t, b)
			})
		}
		wg.Wait()
		for i := range prompts {
			if got[i] != alone[i] {
				t.Errorf("prompt %d: together %q, alone %q", i, got[i], alone[i])
			}
		}
	}
	_, _, metrics := call(t, c, "GET", ts.URL+"/metrics", nil)
	sum := regexp.MustCompile(`modelrt_batch_size_sum\{model="gpt2"\} (\S+)`).FindSubmatch(metrics)
	count := regexp.MustCompile(`modelrt_batch_size_count\{model="gpt2"\} (\S+)`).FindSubmatch(metrics)
	if sum == nil || count == nil {
		t.Fatalf("no modelrt_batch_size series for gpt2 in /metrics")
	}
	s, _ := strconv.ParseFloat(string(sum[1]), 64)
	n, _ := strconv.ParseFloat(string(count[1]), 64)
	t.Logf("%v steps, mean batch size %.2f", n, s/n)
	if s <= n {
		t.Errorf("mean batch size %.2f over %v steps: concurrent completions never shared a step", s/n, n)
	}
	for _, series := range []string{"modelrt_time_to_first_token_seconds_count", "modelrt_inter_token_seconds_count", "modelrt_batch_queue_wait_seconds_count", "modelrt_batch_tokens_total"} {
		if !regexp.MustCompile(series + `\{model="gpt2"\} [1-9]`).Match(metrics) {
			t.Errorf("metrics lack a non-zero %s for gpt2", series)
		}
	}
}

func textOf(t *testing.T, body []byte) string {
	t.Helper()
	var r completionResponse
	if err := json.Unmarshal(body, &r); err != nil || len(r.Choices) != 1 {
		t.Fatalf("completion %s: %v", body, err)
	}
	return r.Choices[0].Text
}

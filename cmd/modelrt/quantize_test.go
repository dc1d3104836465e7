package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuantizeThenGenerate: `modelrt quantize` writes a directory the native plugin process loads
// and generates from, for both weight types; bad flags are refused with the flag named.
func TestQuantizeThenGenerate(t *testing.T) {
	const model, newTokens = "../../testdata/models/gpt2-tiny", 4
	for _, dt := range []string{"int8", "fp16"} {
		out := filepath.Join(t.TempDir(), "gpt2-"+dt)
		text, stderr, err := modelrt(t, "quantize", "--model", model, "--out", out, "--dtype", dt)
		if err != nil {
			t.Fatalf("quantize %s: %v\n%s", dt, err, stderr)
		}
		if !strings.HasPrefix(text, "wrote "+out+" ("+dt+" weights, ") {
			t.Errorf("quantize %s printed %q", dt, text)
		}
		js, stderr, err := modelrt(t, "generate", "--model", out, "--prompt", "Hello", "--temperature", "0",
			"--max-new-tokens", fmt.Sprint(newTokens), "--json")
		if err != nil {
			t.Fatalf("generate from the %s directory: %v\n%s", dt, err, stderr)
		}
		var got struct {
			GeneratedTokens int `json:"generated_tokens"`
		}
		if err := json.Unmarshal([]byte(js), &got); err != nil || got.GeneratedTokens != newTokens {
			t.Errorf("generate from the %s directory: %q (%v), want %d tokens", dt, js, err, newTokens)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", model, "--out", t.TempDir(), "--dtype", "f32"}, "want int8 or fp16"},
		{[]string{"--model", model, "--out", model}, "is the source directory"},
		{[]string{"--model", model}, "needs --model DIR and --out DIR"},
	} {
		_, stderr, err := modelrt(t, append([]string{"quantize"}, c.args...)...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("quantize %v: err %v, stderr %q; want %q", c.args, err, stderr, c.want)
		}
	}
}

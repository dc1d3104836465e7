// Package gpt2ref reads the GPT-2 reference files that scripts/fixtures/gpt2_fixtures.py writes
// beside each fixture model (testdata/models/gpt2-*/reference.safetensors), so that every
// backend's tests hold their logits and greedy ids to the same PyTorch results.
package gpt2ref

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// Format is the metadata "format" value of the reference files this package reads.
const Format = "modelrt-gpt2-reference/v1"

// Reference is the content of one reference.safetensors.
type Reference struct {
	B, T          int
	InputIDs      []int64   // (B,T); row 0 unpadded, row 1 left-padded
	AttentionMask []int64   // (B,T); 1 attend, 0 padding
	Logits        []float32 // (B,T,V) for InputIDs with AttentionMask
	Vocab         int       // V
	// GreedyIDs is a prompt followed by NewTokens argmax tokens (batch 1, full recompute).
	GreedyIDs []int64
	// GreedyHelloIDs is the same for the prompt "Hello" (id 15496); gpt2-tiny only, else nil.
	GreedyHelloIDs []int64
	NewTokens      int
}

// GreedyPrompt returns the prompt part of GreedyIDs.
func (r *Reference) GreedyPrompt() []int64 { return r.GreedyIDs[:len(r.GreedyIDs)-r.NewTokens] }

// Load reads dir/reference.safetensors; errors name the file and the tensor.
func Load(dir string) (*Reference, error) {
	path := filepath.Join(dir, "reference.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if got := f.Metadata()["format"]; got != Format {
		return nil, fmt.Errorf("gpt2ref: %s: format %q, want %q", path, got, Format)
	}
	r := &Reference{}
	var shape []int
	if r.InputIDs, shape, err = f.Int64("input_ids"); err != nil {
		return nil, err
	}
	if len(shape) != 2 {
		return nil, fmt.Errorf("gpt2ref: %s: tensor \"input_ids\" has shape %v, want (B,T)", path, shape)
	}
	r.B, r.T = shape[0], shape[1]
	if r.AttentionMask, shape, err = f.Int64("attention_mask"); err != nil {
		return nil, err
	}
	if len(shape) != 2 || shape[0] != r.B || shape[1] != r.T {
		return nil, fmt.Errorf("gpt2ref: %s: tensor \"attention_mask\" has shape %v, want (%d,%d)", path, shape, r.B, r.T)
	}
	if r.Logits, shape, err = f.Float32("logits"); err != nil {
		return nil, err
	}
	if len(shape) != 3 || shape[0] != r.B || shape[1] != r.T {
		return nil, fmt.Errorf("gpt2ref: %s: tensor \"logits\" has shape %v, want (%d,%d,V)", path, shape, r.B, r.T)
	}
	r.Vocab = shape[2]
	if r.GreedyIDs, _, err = f.Int64("greedy_ids"); err != nil {
		return nil, err
	}
	if f.Has("greedy_hello_ids") {
		if r.GreedyHelloIDs, _, err = f.Int64("greedy_hello_ids"); err != nil {
			return nil, err
		}
	}
	if r.NewTokens, err = strconv.Atoi(f.Metadata()["new_tokens"]); err != nil || r.NewTokens < 1 || r.NewTokens >= len(r.GreedyIDs) {
		return nil, fmt.Errorf("gpt2ref: %s: metadata new_tokens %q is not a count below %d", path, f.Metadata()["new_tokens"], len(r.GreedyIDs))
	}
	return r, nil
}

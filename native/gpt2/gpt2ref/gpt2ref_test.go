package gpt2ref

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadFixtures(t *testing.T) {
	for _, c := range []struct {
		name  string
		vocab int
		hello bool
	}{{"gpt2-tiny", 50257, true}, {"gpt2-odd", 384, false}, {"gpt2-bf16", 256, false}} {
		r, err := Load(filepath.Join("..", "..", "..", "testdata", "models", c.name))
		if err != nil {
			t.Fatal(err)
		}
		if r.B != 2 || r.Vocab != c.vocab || len(r.Logits) != r.B*r.T*r.Vocab || r.NewTokens != 8 {
			t.Errorf("%s: B=%d T=%d V=%d logits %d new %d", c.name, r.B, r.T, r.Vocab, len(r.Logits), r.NewTokens)
		}
		if r.AttentionMask[r.T] != 0 || r.AttentionMask[r.T-1] != 1 {
			t.Errorf("%s: row 1 should be left-padded, row 0 not: mask %v", c.name, r.AttentionMask)
		}
		if (r.GreedyHelloIDs != nil) != c.hello || (c.hello && r.GreedyHelloIDs[0] != 15496) {
			t.Errorf("%s: greedy_hello_ids %v", c.name, r.GreedyHelloIDs)
		}
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "reference.safetensors") {
		t.Errorf("missing file: err = %v", err)
	}
}

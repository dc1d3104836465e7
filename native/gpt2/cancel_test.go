package gpt2

import (
	"context"
	"errors"
	"testing"
)

// TestForwardStopsWhenCancelled cancels a prefill while its first block is about to run and
// counts the blocks that still ran: none may, the error must be the context's, and the cache
// must be as it was (the next call gives the same logits as on a fresh cache).
func TestForwardStopsWhenCancelled(t *testing.T) {
	m := mustLoad(t, "gpt2-tiny")
	cfg := m.Config()
	if cfg.NLayer < 2 {
		t.Fatalf("gpt2-tiny has %d layers; the test needs at least 2", cfg.NLayer)
	}
	ids := []int64{464, 2068, 7586, 21831}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var hooked []int
	testHookLayer = func(l int) {
		hooked = append(hooked, l)
		if l == 0 {
			cancel()
		}
	}
	defer func() { testHookLayer = nil }()
	c := m.NewCache(1)
	logits := make([]float32, cfg.VocabSize)
	err := m.ForwardContext(ctx, c, ids, 1, len(ids), nil, true, logits)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ForwardContext after cancel = %v, want context.Canceled", err)
	}
	if len(hooked) != 1 {
		t.Errorf("blocks reached after cancellation: %v, want only block 0 (where it was cancelled), of %d", hooked, cfg.NLayer)
	}
	if c.Len() != 0 {
		t.Errorf("cancelled call left %d positions in the cache, want 0", c.Len())
	}
	testHookLayer = nil
	want := make([]float32, cfg.VocabSize)
	if err := m.Forward(m.NewCache(1), ids, 1, len(ids), nil, true, want); err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(c, ids, 1, len(ids), nil, true, logits); err != nil {
		t.Fatal(err)
	}
	compare(t, "logits after a cancelled call", logits, want, 0)
}

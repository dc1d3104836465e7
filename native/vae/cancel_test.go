package vae

import (
	"context"
	"errors"
	"testing"
)

// TestCancelStopsTheNetwork cancels an encode and a decode at their first step and counts the
// steps checked afterwards: the call must return the context's error at that check, without
// running the rest of the network.
func TestCancelStopsTheNetwork(t *testing.T) {
	m, err := Load(fixtureDir("vae-tiny"))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config()
	f := c.DownsampleFactor()
	const side = 32
	full := func(ctx context.Context) (int, error) {
		checks := 0
		testHookStep = func() { checks++ }
		defer func() { testHookStep = nil }()
		_, err := m.DecodeContext(ctx, make([]float32, c.LatentChannels*side*side), 1, c.LatentChannels, side, side)
		return checks, err
	}
	steps, err := full(context.Background())
	if err != nil || steps < 4 {
		t.Fatalf("uncancelled decode: %d steps, %v; want ≥ 4 steps and no error", steps, err)
	}
	for _, task := range []string{"encode", "decode"} {
		ctx, cancel := context.WithCancel(context.Background())
		checks := 0
		testHookStep = func() {
			checks++
			if checks == 1 {
				cancel()
			}
		}
		if task == "encode" {
			_, _, err = m.EncodeContext(ctx, make([]float32, c.InChannels*side*f*side*f), 1, c.InChannels, side*f, side*f)
		} else {
			_, err = m.DecodeContext(ctx, make([]float32, c.LatentChannels*side*side), 1, c.LatentChannels, side, side)
		}
		testHookStep = nil
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s cancelled at its first step: %v, want context.Canceled", task, err)
		}
		if checks != 1 {
			t.Errorf("%s cancelled at its first step went on to %d more steps (of %d)", task, checks-1, steps)
		}
	}
}

package vae

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig checks that any config.json either fails with ErrInvalidConfig or builds a
// model (small ones only, to keep the fuzzer's memory bounded) that encodes a tiny image.
func FuzzParseConfig(f *testing.F) {
	for _, name := range fixtures {
		if data, err := os.ReadFile(filepath.Join(fixtureDir(name), "config.json")); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"block_out_channels": [4], "norm_num_groups": 2, "latent_channels": 1}`))
	f.Add([]byte(`{"block_out_channels": [4, 4], "norm_num_groups": 4, "in_channels": 1, "mid_block_add_attention": false}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		width := c.InChannels + c.OutChannels + c.LatentChannels + c.LayersPerBlock
		for _, ch := range c.BlockOutChannels {
			width += ch
		}
		if width > 64 || len(c.BlockOutChannels) > 3 {
			return
		}
		m, err := NewRandom(c, 1)
		if err != nil {
			t.Fatalf("NewRandom of a valid config: %v", err)
		}
		f := c.DownsampleFactor()
		mean, logvar, err := m.Encode(make([]float32, c.InChannels*f*f), 1, c.InChannels, f, f)
		if err != nil || len(mean) != c.LatentChannels || len(logvar) != c.LatentChannels {
			t.Fatalf("Encode: %d, %d values, err %v", len(mean), len(logvar), err)
		}
	})
}

package modeldir

import (
	"errors"
	"testing"
)

func TestParseVAEConfigDefaults(t *testing.T) {
	c, err := ParseVAEConfig([]byte(`{"block_out_channels": [32, 64, 64], "use_quant_conv": false}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.InChannels != 3 || c.LatentChannels != 4 || c.NormNumGroups != 32 || c.ScalingFactor != 0.18215 ||
		c.UseQuantConv || !c.UsePostQuantConv || !c.MidBlockAddAttention || c.DownsampleFactor() != 4 {
		t.Fatalf("config %+v", c)
	}
	for _, bad := range []string{
		`{"block_out_channels": []}`,
		`{"down_block_types": ["DownBlock2D"], "block_out_channels": [64]}`,
		`{"act_fn": "gelu"}`,
		`{"layers_per_block": 0}`,
		`[`,
	} {
		if _, err := ParseVAEConfig([]byte(bad)); !errors.Is(err, ErrInvalidVAEConfig) {
			t.Errorf("ParseVAEConfig(%s): error %v, want ErrInvalidVAEConfig", bad, err)
		}
	}
}

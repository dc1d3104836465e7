package engine

import (
	"fmt"

	"github.com/modelrt/modelrt/sdk"
)

// checkVAEInput makes the VAE backend's own checks of an image (task vae-encode) or latent
// (vae-decode) before the request is sent (docs/sdk.md, Limits): channels, and the image side
// within the max_image_size the backend published. A tensor of another rank is left to the
// backend, whose error names it.
func checkVAEInput(m *Model, task string, t *sdk.Tensor) error {
	if len(t.Shape) != 4 {
		return nil
	}
	in := &sdk.VAEInput{Task: task, N: int(t.Shape[0]), C: int(t.Shape[1]), H: int(t.Shape[2]), W: int(t.Shape[3])}
	key := "in_channels"
	if task == sdk.TaskVAEDecode {
		key = "latent_channels"
	}
	channels, _, err := m.metaInt(key)
	if err != nil {
		return err
	}
	factor, _, err := m.metaInt("downsample_factor")
	if err != nil {
		return err
	}
	maxSide, _, err := m.metaInt(sdk.MetaMaxImageSize)
	if err != nil {
		return err
	}
	if err := sdk.CheckVAE(in, channels, factor, maxSide); err != nil {
		return fmt.Errorf("model %q (not sent to its backend): %w", m.Name, err)
	}
	return nil
}

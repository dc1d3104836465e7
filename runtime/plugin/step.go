package plugin

import (
	"context"

	"github.com/modelrt/modelrt/sdk"
)

// Step implements sdk.Stepper. Call it only when Description() lists sdk.CapabilityStep; a
// backend without it answers Unimplemented.
func (p *Plugin) Step(ctx context.Context, req *sdk.StepRequest) (*sdk.StepResponse, error) {
	return call(p, ctx, "Step", func(ctx context.Context, c *sdk.Client) (*sdk.StepResponse, error) {
		return c.Step(ctx, req)
	})
}

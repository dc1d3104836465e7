package conformance

// The VAE cases (encode, decode) and their checks without expected values.

import (
	"context"
	"fmt"
	"slices"

	"github.com/modelrt/modelrt/runtime/vae"
	"github.com/modelrt/modelrt/sdk"
)

// --- vae-encode / vae-decode ---

func vaeIO(c *Case) (task, in string, outs []string) {
	if c.Task == TaskVAEEncode {
		return sdk.TaskVAEEncode, "image", []string{"mean", "logvar"}
	}
	return sdk.TaskVAEDecode, "latent", []string{"image"}
}

// vaeInfer runs task on x through runtime/vae, which checks the outputs against the tensor
// contract and the model's facts; their shapes must also be those of the expected tensors.
func (r *runner) vaeInfer(ctx context.Context, l *loaded, task string, x *sdk.Tensor, want map[string]*Tensor) (map[string]*sdk.Tensor, error) {
	m, err := vae.FromInfo(r.t.Backend, l.info)
	if err != nil {
		return nil, err
	}
	got := map[string]*sdk.Tensor{}
	if task == sdk.TaskVAEEncode {
		got["mean"], got["logvar"], err = m.Encode(ctx, x)
	} else {
		got["image"], err = m.Decode(ctx, x)
	}
	if err != nil {
		return nil, err
	}
	for o, t := range got {
		if want[o] != nil && !slices.Equal(t.Shape[1:], want[o].Shape[1:]) {
			return nil, fmt.Errorf("%s: output %q has shape %v for input %v, want (%d,%v)", task, o, t.Shape, x.Shape, x.Shape[0], want[o].Shape[1:])
		}
	}
	return got, nil
}

func (r *runner) vae(ctx context.Context, c *Case, l *loaded, row *Row) *outputs {
	task, inName, outs := vaeIO(c)
	x := c.Inputs[inName].SDK()
	if why := l.fixedBatch(inName); why != "" && x.Shape[0] > 1 {
		row.Result, row.Reason = NotApplicable, fmt.Sprintf("the case has a batch of %d, but %s", x.Shape[0], why)
		return nil
	}
	got, err := r.vaeInfer(ctx, l, task, x, c.Expected)
	if err != nil {
		row.add(failed("expected", err))
		return nil
	}
	var d Diff
	for _, o := range outs {
		g, _ := got[o].Float32s()
		e := c.Expected[o]
		d.merge(CompareFloat(g, e.F32, e.Shape, c.Tol, nil))
	}
	row.expected(d)
	out := &outputs{floats: got}
	if r.noChecks {
		return out
	}
	if why := l.fixedBatch(inName); why != "" {
		row.add(notApplicable("batch", why))
	} else {
		row.add(r.vaeBatch(ctx, l, task, x, outs, got, c.Expected))
	}
	if err := r.reload(ctx, l); err != nil {
		row.add(failed("reload", err))
	} else if again, err := r.vaeInfer(ctx, l, task, x, c.Expected); err != nil {
		row.add(failed("reload", err))
	} else {
		var d Diff
		for _, o := range outs {
			a, _ := again[o].Float32s()
			g, _ := got[o].Float32s()
			d.merge(CompareFloat(a, g, got[o].Shape, ReloadTol, nil))
		}
		row.add(checkOf("reload", d))
	}
	return out
}

// vaeBatch compares the batch's items with the items run one by one; a one-item case is
// paired with its negation (still in [-1,1] for an image).
func (r *runner) vaeBatch(ctx context.Context, l *loaded, task string, x *sdk.Tensor, outs []string, got map[string]*sdk.Tensor, want map[string]*Tensor) Check {
	xs, _ := x.Float32s()
	xs = slices.Clone(xs)
	shape := slices.Clone(x.Shape)
	if shape[0] == 1 {
		neg := make([]float32, len(xs))
		for i, v := range xs {
			neg[i] = -v
		}
		xs = append(xs, neg...)
		shape[0] = 2
		var err error
		if got, err = r.vaeInfer(ctx, l, task, sdk.FromFloat32(shape, xs), want); err != nil {
			return failed("batch", fmt.Errorf("batch of 2: %w", err))
		}
	}
	n := len(xs) / int(shape[0])
	one := slices.Clone(shape)
	one[0] = 1
	var d Diff
	for b := range int(shape[0]) {
		alone, err := r.vaeInfer(ctx, l, task, sdk.FromFloat32(one, slices.Clone(xs[b*n:(b+1)*n])), want)
		if err != nil {
			return failed("batch", fmt.Errorf("item %d alone: %w", b, err))
		}
		for _, o := range outs {
			g, _ := got[o].Float32s()
			a, _ := alone[o].Float32s()
			m := len(a)
			d.merge(CompareFloat(g[b*m:(b+1)*m], a, alone[o].Shape, BatchTol, nil).atRow(b))
		}
	}
	return checkOf("batch", d)
}

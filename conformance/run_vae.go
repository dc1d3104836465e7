package conformance

// The VAE cases (encode, decode) and their checks without expected values.

import (
	"context"
	"fmt"
	"slices"

	"github.com/modelrt/modelrt/sdk"
)

// --- vae.encode / vae.decode ---

func vaeIO(c *Case) (task, in string, outs []string) {
	if c.Task == TaskVAEEncode {
		return sdk.TaskVAEEncode, "image", []string{"mean", "logvar"}
	}
	return sdk.TaskVAEDecode, "latent", []string{"image"}
}

func (r *runner) vaeInfer(ctx context.Context, model, task, in string, x *sdk.Tensor, outs []string, want map[string]*Tensor) (map[string]*sdk.Tensor, error) {
	resp, err := r.t.Backend.Infer(ctx, &sdk.InferRequest{Model: model, Inputs: map[string]*sdk.Tensor{in: x}, Outputs: outs, Params: map[string]string{sdk.ParamTask: task}})
	if err != nil {
		return nil, err
	}
	res := map[string]*sdk.Tensor{}
	for _, o := range outs {
		t, ok := resp.Outputs[o]
		if !ok {
			return nil, fmt.Errorf("%s: no output %q (outputs: %s)", task, o, sdk.InputNames(resp.Outputs))
		}
		if t.DType != sdk.Float32 {
			return nil, fmt.Errorf("%s: output %q is %s, want float32", task, o, t.DType)
		}
		if len(t.Shape) != 4 || t.Shape[0] != x.Shape[0] || want[o] != nil && !slices.Equal(t.Shape[1:], want[o].Shape[1:]) {
			return nil, fmt.Errorf("%s: output %q has shape %v for input %v", task, o, t.Shape, x.Shape)
		}
		res[o] = t
	}
	return res, nil
}

func (r *runner) vae(ctx context.Context, c *Case, l *loaded, row *Row) *outputs {
	task, inName, outs := vaeIO(c)
	x := c.Inputs[inName].SDK()
	if why := l.fixedBatch(inName); why != "" && x.Shape[0] > 1 {
		row.Result, row.Reason = NotApplicable, fmt.Sprintf("the case has a batch of %d, but %s", x.Shape[0], why)
		return nil
	}
	got, err := r.vaeInfer(ctx, l.name, task, inName, x, outs, c.Expected)
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
		row.add(r.vaeBatch(ctx, l.name, task, inName, x, outs, got, c.Expected))
	}
	if err := r.reload(ctx, l); err != nil {
		row.add(failed("reload", err))
	} else if again, err := r.vaeInfer(ctx, l.name, task, inName, x, outs, c.Expected); err != nil {
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
func (r *runner) vaeBatch(ctx context.Context, model, task, in string, x *sdk.Tensor, outs []string, got map[string]*sdk.Tensor, want map[string]*Tensor) Check {
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
		if got, err = r.vaeInfer(ctx, model, task, in, sdk.FromFloat32(shape, xs), outs, want); err != nil {
			return failed("batch", fmt.Errorf("batch of 2: %w", err))
		}
	}
	n := len(xs) / int(shape[0])
	one := slices.Clone(shape)
	one[0] = 1
	var d Diff
	for b := range int(shape[0]) {
		alone, err := r.vaeInfer(ctx, model, task, in, sdk.FromFloat32(one, slices.Clone(xs[b*n:(b+1)*n])), outs, want)
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

package conformance

import (
	"context"
	"errors"
	"fmt"

	"github.com/modelrt/modelrt/sdk"
)

// --- batched-step ---

// step checks sdk.CapabilityStep when the backend advertises it: sessions of different KV
// lengths advanced in one Step call give the logits that one Infer per session gives (within
// BatchTol: a backend may pad the sessions into one batch, which changes the order of float
// sums), twice, so that a backend that keeps a packed batch between steps is checked on its
// second step too; malformed requests are InvalidArgument, and an unknown session is NotFound.
func (k *contractRun) step(ctx context.Context, r *ContractResult) error {
	d, err := k.be.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		return fmt.Errorf("Describe: %w", err)
	}
	if !sdk.HasCapability(d, sdk.CapabilityStep) {
		r.Skipped = "the backend does not advertise the capability " + sdk.CapabilityStep + " (the host calls Infer per session)"
		return nil
	}
	st, ok := k.be.(sdk.Stepper)
	if !ok {
		return fmt.Errorf("the client under test has no Step method")
	}
	if k.c.Task != sdk.TaskCausalLM {
		r.Skipped = "task " + k.c.Task + " has no sessions to step"
		return nil
	}
	name, _, err := k.load(ctx)
	if err != nil {
		return err
	}
	defer k.drop(ctx, name)
	// Five sessions at different lengths: prefixes of 5, 2, 0, 3 and 7 tokens, then one Step
	// that feeds 1, 3, 4, 1 and 1 new tokens, then one that feeds one token each.
	pre := []int{5, 2, 0, 3, 7}
	feed := []int{1, 3, 4, 1, 1}
	seqs := make([][]int64, len(pre))
	batched := make([]string, len(pre))
	alone := make([]string, len(pre))
	defer func() {
		for _, s := range append(batched, alone...) {
			if s != "" {
				k.be.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s})
			}
		}
	}()
	for i := range pre {
		seqs[i] = k.tokens(pre[i]+feed[i], 5+i)
		for _, ids := range []*string{&batched[i], &alone[i]} {
			s, err := k.be.OpenSession(ctx, &sdk.OpenSessionRequest{Model: name, BatchSize: 1})
			if err != nil {
				return fmt.Errorf("OpenSession: %w", err)
			}
			*ids = s.Session
			if pre[i] > 0 {
				if _, _, err := k.lmCall(ctx, name, s.Session, seqs[i][:pre[i]], 0); err != nil {
					return fmt.Errorf("prefix of session %d: %w", i, err)
				}
			}
		}
	}
	var errs []error
	for round := range 2 {
		req := &sdk.StepRequest{Model: name}
		for i := range pre {
			ids := seqs[i][pre[i]:]
			if round == 1 {
				ids = []int64{int64((7*i + 3) % k.vocab)}
			}
			req.Items = append(req.Items, sdk.StepItem{Session: batched[i], TokenIDs: ids})
		}
		got, err := st.Step(ctx, req)
		if err != nil {
			return fmt.Errorf("Step %d over %d sessions: %w", round+1, len(pre), err)
		}
		if got.Logits.DType != sdk.Float32 || len(got.Logits.Shape) != 2 || got.Logits.Shape[0] != int64(len(pre)) || got.Logits.Shape[1] != int64(k.vocab) {
			return fmt.Errorf("Step logits %s%v, want float32 [%d %d]", got.Logits.DType, got.Logits.Shape, len(pre), k.vocab)
		}
		gv, err := got.Logits.Float32s()
		if err != nil {
			return err
		}
		for i, it := range req.Items {
			held := pre[i]
			if round == 1 {
				held += feed[i]
			}
			v, _, err := k.lmCall(ctx, name, alone[i], it.TokenIDs, held)
			if err != nil {
				return fmt.Errorf("Infer of session %d: %w", i, err)
			}
			want := v[len(v)-k.vocab:]
			if d := CompareFloat(gv[i*k.vocab:(i+1)*k.vocab], want, []int64{int64(k.vocab)}, BatchTol, nil); !d.OK() {
				errs = append(errs, fmt.Errorf("Step %d row %d (session with %d cached + %d new tokens) differs from Infer: %v", round+1, i, held, len(it.TokenIDs), d))
			}
		}
	}
	bad := []struct {
		what string
		req  *sdk.StepRequest
		code sdk.Code
	}{
		{"an unknown session", &sdk.StepRequest{Model: name, Items: []sdk.StepItem{{Session: "no-such-session", TokenIDs: []int64{1}}}}, sdk.CodeNotFound},
		{"an out-of-vocabulary id", &sdk.StepRequest{Model: name, Items: []sdk.StepItem{{Session: batched[0], TokenIDs: []int64{int64(k.vocab)}}}}, sdk.CodeInvalidArgument},
	}
	for _, b := range bad {
		_, err := st.Step(ctx, b.req)
		var se *sdk.Error
		if !errors.As(err, &se) || se.Code != b.code {
			errs = append(errs, fmt.Errorf("Step with %s: got %v, want code %v", b.what, err, b.code))
		}
	}
	r.Notes = append(r.Notes, "one Step over sessions with 5, 2, 0, 3 and 7 cached tokens feeding 1, 3, 4, 1 and 1, then one token each, against one Infer each; unknown session and bad id refused")
	return errors.Join(errs...)
}

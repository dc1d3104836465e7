package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/modelrt/modelrt/runtime/batch"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
)

// batchingChunk is the prefill chunk of the "batching" check: small, so that prompts are fed
// over several steps beside the other generations' decode tokens.
const batchingChunk = 3

// batchingStagger spaces the generations' arrivals in the "batching" check.
const batchingStagger = 2 * time.Millisecond

// batching checks that generations through the host's continuous-batching scheduler
// (runtime/batch) draw the same ids whether they run alone or together: every prompt, greedy
// and seeded, alone one after another, then all at once with staggered arrivals.
func (r *runner) batching(ctx context.Context, l *loaded, prompts [][]int, n int) Check {
	m, err := lm.FromInfo(r.t.Backend, l.info)
	if err != nil {
		return failed("batching", err)
	}
	s := batch.New(ctx, m, batch.Options{PrefillChunk: batchingChunk})
	defer s.Close()
	type job struct {
		prompt []int
		s      generate.Sampling
	}
	var jobs []job
	for _, p := range prompts {
		jobs = append(jobs, job{p, generate.DefaultSampling()}, job{p, seedSampling})
	}
	one := func(j job) ([]int, error) {
		sess, err := s.Open(ctx)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		defer sess.Close()
		res, err := generate.Generate(ctx, sess, [][]int{j.prompt}, generate.Options{MaxNewTokens: n, Sampling: j.s})
		if err != nil {
			return nil, err
		}
		return res.Rows[0].IDs, nil
	}
	alone := make([][]int, len(jobs))
	for i, j := range jobs {
		if alone[i], err = one(j); err != nil {
			return failed("batching", fmt.Errorf("generation %d alone: %w", i, err))
		}
	}
	together := make([][]int, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * batchingStagger)
			together[i], errs[i] = one(j)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return failed("batching", fmt.Errorf("generations together: %w", err))
	}
	for i := range jobs {
		if !slices.Equal(together[i], alone[i]) {
			return Check{Name: "batching", Result: Fail, Detail: fmt.Sprintf(
				"generation %d of %d (prompt %d, %s) drew %v together with the others, %v alone",
				i, len(jobs), i/2, []string{"greedy", "seeded"}[i%2], together[i], alone[i])}
		}
	}
	return Check{Name: "batching", Result: Pass, Detail: fmt.Sprintf("%d generations (greedy and seeded) alone and together, prefill chunk %d: same ids", len(jobs), batchingChunk)}
}

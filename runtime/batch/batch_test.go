package batch_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/modelrt/modelrt/internal/plugintest"
	"github.com/modelrt/modelrt/runtime/batch"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

var (
	pluginDir string
	buildErrs = map[string]error{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelrt-batch-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	if err := plugintest.Build(dir, plugintest.Native); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// onnxrt needs cgo and the ONNX Runtime library; its test says why when it cannot run.
	if _, err := plugintest.ONNXRT.Build(dir); err != nil {
		buildErrs["onnxrt"] = err
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// backends under test: both advertise the batched step (onnxrt pads the decoding sessions
// into one graph run: gpt2-odd-onnx-optimum-op17 has attention_mask).
var backends = []struct{ name, bin, model string }{
	{"native", "modelrt-native", "../../testdata/models/gpt2-odd"},
	{"onnxrt", "modelrt-onnxrt", "../../testdata/models/gpt2-odd-onnx-optimum-op17"},
}

func start(t *testing.T, name, bin, model string) *lm.Model {
	t.Helper()
	if err := buildErrs[name]; err != nil {
		t.Skipf("the %s plugin did not build here: %v", name, err)
	}
	ctx := context.Background()
	p, err := plugin.Start(ctx, plugin.Config{Name: name, Path: filepath.Join(pluginDir, bin), CallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	dir, err := filepath.Abs(model)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lm.Load(ctx, p, "m", dir, nil)
	if err != nil {
		t.Skipf("%s cannot load %s here (is the ONNX Runtime library installed?): %v", name, model, err)
	}
	return m
}

// letters decodes each id to one letter, so that stop strings have text to match.
type letters struct{}

func (letters) Decode(ids []int) string {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte('a' + id%26)
	}
	return string(b)
}

type request struct {
	prompt []int
	opts   generate.Options
	cancel int // cancel after this many text deltas (0: never)
}

func requests(m *lm.Model, n int, rng *rand.Rand) []request {
	out := make([]request, n)
	for i := range out {
		p := make([]int, 2+rng.IntN(13))
		for j := range p {
			p[j] = rng.IntN(m.VocabSize)
		}
		s := generate.DefaultSampling()
		if i%2 == 1 {
			s.Temperature, s.TopK, s.Seed = 0.9, 40, uint64(100+i)
		}
		o := generate.Options{MaxNewTokens: 4 + rng.IntN(12), MaxContext: m.Context, Sampling: s, Decoder: letters{}}
		if m.EOS >= 0 {
			o.EOS = []int{m.EOS}
		}
		if i%3 == 2 {
			o.StopStrings = []string{string(rune('a' + rng.IntN(26)))}
		}
		out[i] = request{prompt: p, opts: o}
		if i%4 == 3 {
			out[i].cancel = 2
		}
	}
	return out
}

func run(ctx context.Context, s *batch.Scheduler, r request) (*generate.Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess, err := s.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	opts := r.opts
	deltas := 0
	if r.cancel > 0 {
		opts.OnText = func(int, string) {
			if deltas++; deltas == r.cancel {
				cancel()
			}
		}
	}
	return generate.Generate(ctx, sess, [][]int{r.prompt}, opts)
}

// TestIdenticalAloneAndBatched: requests of different prompt lengths, greedy and seeded,
// with stop strings, arriving at random times, some cancelled mid-stream, give exactly the
// ids they give alone; the cancelled ones free their backend sessions. Under both policies
// for prompts: ahead of the decode tokens or beside the step in flight (the default), and in
// the decode steps (PromptsWithDecode).
func TestIdenticalAloneAndBatched(t *testing.T) {
	for _, b := range backends {
		for _, with := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/prompts_with_decode=%v", b.name, with), func(t *testing.T) {
				identicalAloneAndBatched(t, b.name, b.bin, b.model, with)
			})
		}
	}
}

func identicalAloneAndBatched(t *testing.T, name, bin, model string, with bool) {
	m := start(t, name, bin, model)
	ctx := context.Background()
	s := batch.New(ctx, m, batch.Options{MaxBatch: 4, PrefillChunk: 5, PromptsWithDecode: with})
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 9))
	reqs := requests(m, 12, rng)
	alone := make([]*generate.Result, len(reqs))
	for i, r := range reqs {
		if r.cancel > 0 {
			continue
		}
		res, err := run(ctx, s, r)
		if err != nil {
			t.Fatalf("request %d alone: %v", i, err)
		}
		alone[i] = res
	}
	delays := make([]time.Duration, len(reqs))
	for i := range delays {
		delays[i] = time.Duration(rng.IntN(30)) * time.Millisecond
	}
	together := make([]*generate.Result, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			time.Sleep(delays[i])
			together[i], errs[i] = run(ctx, s, r)
		})
	}
	wg.Wait()
	for i, r := range reqs {
		if r.cancel > 0 {
			if !errors.Is(errs[i], context.Canceled) {
				t.Errorf("request %d, cancelled after %d deltas: got %v, want context.Canceled", i, r.cancel, errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Fatalf("request %d batched: %v", i, errs[i])
		}
		got, want := together[i].Rows[0], alone[i].Rows[0]
		if !slices.Equal(got.IDs, want.IDs) || got.FinishReason != want.FinishReason {
			t.Errorf("request %d (prompt %d tokens, temperature %v, stop %q): batched %v (%s), alone %v (%s)",
				i, len(r.prompt), r.opts.Sampling.Temperature, r.opts.StopStrings, got.IDs, got.FinishReason, want.IDs, want.FinishReason)
		}
	}
	st, err := m.Backend.(sdk.StatsReporter).Stats(ctx, &sdk.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.OpenSessions != 0 {
		t.Errorf("%d backend sessions open after every request ended, want 0", st.OpenSessions)
	}
	mean, steps := batchMean(t, s.Metrics())
	t.Logf("%s: batched step %v, %d steps, mean batch size %.2f, %d prompts beside a step", name, s.Batched(), steps, mean, s.Metrics().Beside())
	if mean <= 1 {
		t.Errorf("mean batch size %.2f over %d steps: concurrent requests never shared a step", mean, steps)
	}
}

func batchMean(t *testing.T, c prometheus.Collector) (float64, uint64) {
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		if h := d.GetHistogram(); h != nil && strings.Contains(m.Desc().String(), `"modelrt_batch_size"`) {
			return h.GetSampleSum() / float64(max(1, h.GetSampleCount())), h.GetSampleCount()
		}
	}
	t.Fatal("no modelrt_batch_size series")
	return 0, 0
}

// TestFailingSessionIsolated: a session whose backend state vanished (closed behind the
// scheduler's back) fails alone; the generation sharing its steps carries on with the ids it
// draws alone.
func TestFailingSessionIsolated(t *testing.T) {
	m := start(t, "native", "modelrt-native", "../../testdata/models/gpt2-odd")
	ctx := context.Background()
	s := batch.New(ctx, m, batch.Options{MaxBatch: 4, Gather: 50 * time.Millisecond})
	defer s.Close()
	prompt := []int{5, 9, 13}
	opts := generate.Options{MaxNewTokens: 10, MaxContext: m.Context, Sampling: generate.DefaultSampling()}
	want, err := run(ctx, s, request{prompt: prompt, opts: opts})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := s.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := m.Backend.CloseSession(ctx, &sdk.CloseSessionRequest{Session: bad.ID()}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var badErr error
	wg.Go(func() { _, badErr = bad.Step(ctx, []int64{1, 2}, 1, 2, nil) })
	got, err := run(ctx, s, request{prompt: prompt, opts: opts})
	wg.Wait()
	if err != nil {
		t.Fatalf("the healthy generation failed beside a broken session: %v", err)
	}
	if !slices.Equal(got.Rows[0].IDs, want.Rows[0].IDs) {
		t.Errorf("healthy generation drew %v beside a broken session, %v alone", got.Rows[0].IDs, want.Rows[0].IDs)
	}
	var se *sdk.Error
	if !errors.As(badErr, &se) || se.Code != sdk.CodeNotFound {
		t.Errorf("the broken session's step: got %v, want NotFound", badErr)
	}
}

// TestNewcomersBesideSteps: prompts that arrive one after another while a long generation
// decodes (fed beside its steps or ahead of its tokens) draw what they draw alone, and so does
// the long generation.
func TestNewcomersBesideSteps(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			m := start(t, b.name, b.bin, b.model)
			ctx := context.Background()
			s := batch.New(ctx, m, batch.Options{MaxBatch: 4, PrefillChunk: 8})
			defer s.Close()
			long := request{prompt: []int{3, 1, 4, 1, 5}, opts: generate.Options{MaxNewTokens: 60, MaxContext: m.Context, Sampling: generate.DefaultSampling()}}
			rng := rand.New(rand.NewPCG(3, 5))
			short := requests(m, 8, rng)
			for i := range short {
				short[i].cancel = 0
				short[i].opts.MaxNewTokens = 3
			}
			wantLong, err := run(ctx, s, long)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]*generate.Result, len(short))
			for i, r := range short {
				if want[i], err = run(ctx, s, r); err != nil {
					t.Fatal(err)
				}
			}
			var gotLong *generate.Result
			var longErr error
			var wg sync.WaitGroup
			wg.Go(func() { gotLong, longErr = run(ctx, s, long) })
			for i, r := range short {
				time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
				got, err := run(ctx, s, r)
				if err != nil {
					t.Fatalf("newcomer %d: %v", i, err)
				}
				if !slices.Equal(got.Rows[0].IDs, want[i].Rows[0].IDs) {
					t.Errorf("newcomer %d beside a generation drew %v, alone %v", i, got.Rows[0].IDs, want[i].Rows[0].IDs)
				}
			}
			wg.Wait()
			if longErr != nil {
				t.Fatal(longErr)
			}
			if !slices.Equal(gotLong.Rows[0].IDs, wantLong.Rows[0].IDs) {
				t.Errorf("the long generation drew %v beside newcomers, %v alone", gotLong.Rows[0].IDs, wantLong.Rows[0].IDs)
			}
			t.Logf("%s: %d of %d newcomers fed beside a step", b.name, s.Metrics().Beside(), len(short))
		})
	}
}

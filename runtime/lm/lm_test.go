package lm

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/native/gpt2/gpt2ref"
	"github.com/modelrt/modelrt/plugins/native/backend"
	"github.com/modelrt/modelrt/sdk"
)

// logitsTol is the absolute tolerance against PyTorch's logits (float32 accumulation order).
const logitsTol = 1e-4

// allPositions hides ParamLogits from the backend, so it returns (B,T,V) and Step must pick
// the last position itself.
type allPositions struct{ Backend }

func (a allPositions) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	r := *req
	r.Params = nil
	return a.Backend.Infer(ctx, &r)
}

func TestStepMatchesPyTorch(t *testing.T) {
	dir := "../../testdata/models/gpt2-odd"
	ref, err := gpt2ref.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    Backend
	}{{"last-only", backend.New()}, {"all-positions", allPositions{backend.New()}}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m, err := Load(ctx, tc.b, "odd", dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if m.VocabSize != ref.Vocab || m.Context != 32 || m.EOS != ref.Vocab-1 {
				t.Errorf("metadata: vocab %d context %d eos %d", m.VocabSize, m.Context, m.EOS)
			}
			s, err := m.Open(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			// Row 0 of the reference is unpadded: feed its prompt in two steps (prefill, then one
			// token through the KV cache) and compare each step's last-position logits.
			T := ref.T
			row := ref.InputIDs[:T]
			for _, cut := range []int{T - 1, T} {
				start := 0
				if cut == T {
					start = T - 1
				}
				got, err := s.Step(ctx, row[start:cut], 1, cut-start, nil)
				if err != nil {
					t.Fatal(err)
				}
				want := ref.Logits[(cut-1)*ref.Vocab : cut*ref.Vocab]
				if len(got) != ref.Vocab {
					t.Fatalf("Step returned %d logits, want %d", len(got), ref.Vocab)
				}
				worst, at := 0.0, -1
				for i := range want {
					if d := math.Abs(float64(got[i] - want[i])); d > worst {
						worst, at = d, i
					}
				}
				if worst > logitsTol {
					t.Errorf("position %d: max abs error %.3g at vocab index %d (got %v, want %v)", cut-1, worst, at, got[at], want[at])
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			st, _ := tc.b.(interface {
				Stats(context.Context, *sdk.StatsRequest) (*sdk.StatsResponse, error)
			})
			if st != nil {
				r, err := st.Stats(ctx, &sdk.StatsRequest{})
				if err != nil || r.OpenSessions != 0 {
					t.Errorf("after Close: %v open sessions (%v)", r.OpenSessions, err)
				}
			}
			if _, err := s.Step(ctx, row[:1], 1, 1, nil); sdk.CodeOf(err) != sdk.CodeNotFound {
				t.Errorf("Step on a closed session: err = %v, want NotFound", err)
			}
		})
	}
}

func TestFromInfoRejectsBadMetadata(t *testing.T) {
	_, err := FromInfo(backend.New(), sdk.ModelInfo{Name: "m", Metadata: map[string]string{"vocab_size": "lots"}})
	if err == nil || !strings.Contains(err.Error(), `vocab_size = "lots"`) {
		t.Errorf("err = %v", err)
	}
}

// paramsSeen records the Params of every Infer call that reaches the backend.
type paramsSeen struct {
	Backend
	seen []map[string]string
}

func (p *paramsSeen) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	p.seen = append(p.seen, req.Params)
	return p.Backend.Infer(ctx, req)
}

// TestLingerGoesWithEveryStep checks that Model.Linger reaches the backend as ParamLinger on
// every step (the native backend polls on it), and that a Model without it sends none, as the
// daemon's must not. The native backend answers both the same.
func TestLingerGoesWithEveryStep(t *testing.T) {
	ctx := context.Background()
	for _, linger := range []time.Duration{0, DecodeLinger} {
		b := &paramsSeen{Backend: backend.New()}
		m, err := Load(ctx, b, "odd", "../../testdata/models/gpt2-odd", nil)
		if err != nil {
			t.Fatal(err)
		}
		m.Linger = linger
		s, err := m.Open(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, ids := range [][]int64{{1, 2, 3}, {4}, {5}} {
			if _, err := s.Step(ctx, ids, 1, len(ids), nil); err != nil {
				t.Fatalf("linger %v: %v", linger, err)
			}
		}
		want := ""
		if linger > 0 {
			want = linger.String()
		}
		if len(b.seen) != 3 {
			t.Fatalf("linger %v: %d Infer calls, want 3", linger, len(b.seen))
		}
		for i, p := range b.seen {
			if got := p[sdk.ParamLinger]; got != want {
				t.Errorf("linger %v: step %d sent %s=%q, want %q", linger, i, sdk.ParamLinger, got, want)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

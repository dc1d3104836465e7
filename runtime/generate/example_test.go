package generate_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/tokenizer"
)

// echoLM is a toy causal LM over GPT-2's vocabulary: it always predicts the token it was
// last fed, so greedy decoding repeats the prompt's last token.
type echoLM struct{ vocab int }

func (m echoLM) Step(_ context.Context, ids []int64, B, T int, _ []int64) ([]float32, error) {
	out := make([]float32, B*m.vocab)
	for b := range B {
		out[b*m.vocab+int(ids[b*T+T-1])] = 1
	}
	return out, nil
}

// Example wires a tokenizer, a backend session and streaming output together.
func Example() {
	tok, err := tokenizer.Load("../../testdata/models/gpt2-tiny")
	if err != nil {
		panic(err)
	}
	var streamed strings.Builder
	res, err := generate.Generate(context.Background(), echoLM{tok.VocabSize()},
		[][]int{tok.Encode("Hello world")}, generate.Options{
			MaxNewTokens:     3,
			EOS:              []int{tok.EOS()},
			Sampling:         generate.DefaultSampling(),
			Decoder:          tok,
			NewStreamDecoder: func() generate.StreamDecoder { return tok.NewStreamDecoder() },
			OnText:           func(_ int, delta string) { streamed.WriteString(delta) },
		})
	if err != nil {
		panic(err)
	}
	row := res.Rows[0]
	fmt.Println(row.IDs, row.FinishReason)
	fmt.Printf("%q %q\n", row.Text, streamed.String())
	// Output:
	// [15496 995 995 995 995] length
	// " world world world" " world world world"
}

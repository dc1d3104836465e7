package backend

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

func TestLoadGPT2Options(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "testdata", "models", "gpt2-odd")
	for opt, want := range map[string]quant.DType{"": "", "int8": quant.Int8, "fp16": quant.F16, "f32": ""} {
		opts := map[string]string{}
		if opt != "" {
			opts[weightsOption] = opt
		}
		m, err := loadGPT2(dir, opts)
		if err != nil {
			t.Fatalf("weights=%q: %v", opt, err)
		}
		if got := m.Config().Weights; got != want {
			t.Errorf("weights=%q: model holds %q weights, want %q", opt, got, want)
		}
	}
	if _, err := loadGPT2(dir, map[string]string{weightsOption: "int4"}); err == nil || !strings.Contains(err.Error(), `option "weights"`) {
		t.Errorf("weights=int4: err = %v, want the option named", err)
	}
	q := filepath.Join(t.TempDir(), "q")
	if err := gpt2.WriteQuantized(dir, q, quant.Int8); err != nil {
		t.Fatal(err)
	}
	if _, err := loadGPT2(q, map[string]string{weightsOption: "fp16"}); !errors.Is(err, gpt2.ErrQuantized) {
		t.Errorf("fp16 over an int8 directory: err = %v, want gpt2.ErrQuantized", err)
	}
}

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

// TestLoadGPT2KVCacheOption: int8 weights default to an fp16 KV cache, float32 to float32, and
// the kv_cache option overrides either; an unsupported type is an error naming the option.
func TestLoadGPT2KVCacheOption(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "testdata", "models", "gpt2-odd")
	for _, c := range []struct {
		weights, kv string
		want        quant.DType
	}{{"", "", quant.F32}, {"int8", "", quant.F16}, {"int8", "f32", quant.F32}, {"", "fp16", quant.F16}} {
		opts := map[string]string{weightsOption: c.weights}
		if c.kv != "" {
			opts[kvCacheOption] = c.kv
		}
		m, err := loadGPT2(dir, opts)
		if err != nil {
			t.Fatalf("%v: %v", opts, err)
		}
		if got := m.KVCache(); got != c.want {
			t.Errorf("%v: KV cache %q, want %q", opts, got, c.want)
		}
	}
	if _, err := loadGPT2(dir, map[string]string{kvCacheOption: "int8"}); err == nil || !strings.Contains(err.Error(), `option "kv_cache"`) {
		t.Errorf("kv_cache=int8: err = %v, want the option named", err)
	}
}

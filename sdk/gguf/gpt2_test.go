package gguf

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/modelrt/modelrt/runtime/tokenizer"
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// tinyGPT2 is a 2-layer, 16-wide GPT-2 with OpenAI's tokenizer files (encoder.json, vocab.bpe).
var tinyGPT2 = filepath.Join("..", "..", "testdata", "models", "gpt2-tiny")

// f16RelTol is the relative rounding error of float32 → binary16 (half a unit in the last of
// 10 fraction bits), for normal values.
const f16RelTol = 1.0 / 2048

func TestWriteGPT2(t *testing.T) {
	cfg, err := modeldir.LoadGPT2Config(filepath.Join(tinyGPT2, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.Open(filepath.Join(tinyGPT2, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hf := func(name string) []float32 {
		for _, n := range []string{"transformer." + name, name} {
			if st.Has(n) {
				v, _, err := st.Float32(n)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("no tensor %s in gpt2-tiny", name)
		return nil
	}
	C, I := uint64(cfg.NEmbd), uint64(cfg.Inner())
	for _, ft := range []FileType{FileAllF32, FileMostlyF16, FileMostlyQ80} {
		t.Run(ft.Tensor().String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m.gguf")
			if err := WriteGPT2(tinyGPT2, out, ft, GPT2Options{}); err != nil {
				t.Fatal(err)
			}
			f, err := ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range map[string]any{
				"general.architecture": "gpt2", "general.name": "gpt2-tiny", "general.file_type": uint32(ft),
				"gpt2.block_count": uint32(2), "gpt2.context_length": uint32(64), "gpt2.embedding_length": uint32(16),
				"gpt2.feed_forward_length": uint32(64), "gpt2.attention.head_count": uint32(2),
				"gpt2.attention.layer_norm_epsilon": float32(1e-5), "gpt2.vocab_size": uint32(50257),
				"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
				"tokenizer.ggml.bos_token_id": uint32(50256), "tokenizer.ggml.eos_token_id": uint32(50256),
			} {
				if got, ok := f.Get(key); !ok || got != want {
					t.Errorf("%s = %#v, want %#v", key, got, want)
				}
			}
			checkVocab(t, f)
			if len(f.Tensors) != 4+12*cfg.NLayer {
				t.Errorf("%d tensors, want %d", len(f.Tensors), 4+12*cfg.NLayer)
			}
			type want struct {
				hf     string
				dims   []uint64
				conv1D bool
			}
			checks := map[string]want{
				"token_embd.weight":        {"wte.weight", []uint64{C, 50257}, false},
				"position_embd.weight":     {"wpe.weight", []uint64{C, 64}, false},
				"output_norm.bias":         {"ln_f.bias", []uint64{C}, false},
				"blk.1.attn_norm.weight":   {"h.1.ln_1.weight", []uint64{C}, false},
				"blk.1.attn_qkv.weight":    {"h.1.attn.c_attn.weight", []uint64{C, 3 * C}, true},
				"blk.1.attn_qkv.bias":      {"h.1.attn.c_attn.bias", []uint64{3 * C}, false},
				"blk.0.attn_output.weight": {"h.0.attn.c_proj.weight", []uint64{C, C}, true},
				"blk.0.ffn_up.weight":      {"h.0.mlp.c_fc.weight", []uint64{C, I}, true},
				"blk.0.ffn_down.weight":    {"h.0.mlp.c_proj.weight", []uint64{I, C}, true},
				"blk.0.ffn_norm.bias":      {"h.0.ln_2.bias", []uint64{C}, false},
			}
			for name, w := range checks {
				got, ti, err := f.Float32(name)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(ti.Dims, w.dims) {
					t.Errorf("%s: dims %v, want %v", name, ti.Dims, w.dims)
				}
				// The type convert_hf_to_gguf.py would give it: F32 for 1-D and position
				// embeddings; Q8_0 only where ne[0] is a multiple of 32 (ffn_down here), else F16.
				wantType := ft.Tensor()
				switch {
				case len(w.dims) == 1 || name == "position_embd.weight":
					wantType = F32
				case wantType == Q8_0 && w.dims[0]%32 != 0:
					wantType = F16
				}
				if ti.Type != wantType {
					t.Errorf("%s: type %s, want %s", name, ti.Type, wantType)
				}
				ref := hf(w.hf)
				if w.conv1D {
					ref = naiveTranspose(ref, int(w.dims[0]), int(w.dims[1]))
				}
				switch ti.Type {
				case F32:
					checkClose(t, name, got, ref, 0)
				case F16:
					checkRel(t, name, got, ref, f16RelTol)
				case Q8_0:
					q, _ := QuantizeQ8_0(ref)
					deq := make([]float32, len(ref))
					DequantizeQ8_0(deq, q)
					checkClose(t, name, got, deq, 0)
				}
			}
		})
	}
}

// naiveTranspose turns HF's Conv1D [in,out] (row-major, in = ne0) into ggml's [out][in] rows.
func naiveTranspose(v []float32, in, out int) []float32 {
	res := make([]float32, 0, len(v))
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			res = append(res, v[i*out+o])
		}
	}
	return res
}

func checkRel(t *testing.T, name string, got, want []float32, rel float64) {
	t.Helper()
	for i := range want {
		if e := math.Abs(float64(got[i]) - float64(want[i])); e > rel*math.Abs(float64(want[i]))+1e-7 {
			t.Errorf("%s: index %d: got %g, want %g (rel tolerance %g)", name, i, got[i], want[i], rel)
			return
		}
	}
}

func checkVocab(t *testing.T, f *File) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tinyGPT2, "encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	vocab, err := tokenizer.ParseVocab(data)
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := f.Get("tokenizer.ggml.tokens")
	types, _ := f.Get("tokenizer.ggml.token_type")
	merges, _ := f.Get("tokenizer.ggml.merges")
	ts, _ := toks.(Array).Values.([]string)
	tt, _ := types.(Array).Values.([]int32)
	ms, _ := merges.(Array).Values.([]string)
	if len(ts) != 50257 || len(tt) != 50257 {
		t.Fatalf("%d tokens and %d token types, want 50257", len(ts), len(tt))
	}
	for tok, id := range vocab {
		if ts[id] != tok {
			t.Fatalf("token %d is %q, encoder.json says %q", id, ts[id], tok)
		}
	}
	if tt[50256] != tokenControl || tt[0] != tokenNormal {
		t.Errorf("token types of <|endoftext|> and 0: %d, %d", tt[50256], tt[0])
	}
	data, err = os.ReadFile(filepath.Join(tinyGPT2, "vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := tokenizer.ParseMerges(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(want) || ms[0] != want[0][0]+" "+want[0][1] {
		t.Errorf("%d merges starting %q, want %d starting %q", len(ms), ms[0], len(want), want[0])
	}
}

func TestWriteGPT2WithoutTokenizer(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"config.json", "model.safetensors"} {
		data, err := os.ReadFile(filepath.Join(tinyGPT2, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "m.gguf")
	if err := WriteGPT2(dir, out, FileAllF32, GPT2Options{Name: "bench"}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{"tokenizer.ggml.model": "none", "gpt2.vocab_size": uint32(50257), "general.name": "bench"} {
		if got, _ := f.Get(key); got != want {
			t.Errorf("%s = %#v, want %#v", key, got, want)
		}
	}
	if _, ok := f.Get("tokenizer.ggml.tokens"); ok {
		t.Error("tokenizer.ggml.tokens written without a tokenizer")
	}
}

func TestWriteGPT2Refuses(t *testing.T) {
	q := t.TempDir()
	if err := modeldir.QuantizeGPT2(tinyGPT2, q, quant.Int8); err != nil {
		t.Fatal(err)
	}
	err := WriteGPT2(q, filepath.Join(t.TempDir(), "m.gguf"), FileMostlyQ80, GPT2Options{})
	if !errors.Is(err, modeldir.ErrQuantized) {
		t.Errorf("int8 directory: error %v, want ErrQuantized", err)
	}
	err = WriteGPT2(t.TempDir(), filepath.Join(t.TempDir(), "m.gguf"), FileAllF32, GPT2Options{})
	if err == nil {
		t.Error("empty directory: no error")
	}
	if _, err := ParseFileType("q4_0"); err == nil {
		t.Error(`ParseFileType("q4_0"): no error`)
	}
}

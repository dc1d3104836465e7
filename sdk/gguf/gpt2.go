package gguf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelrt/modelrt/runtime/tokenizer"
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// Arch is llama.cpp's architecture name for GPT-2 (general.architecture; the prefix of its keys).
const Arch = "gpt2"

// gpt2Tensor maps one HF GPT2LMHeadModel tensor (without "transformer.") to llama.cpp's name.
// conv1D weights are stored [in,out] by HF and transposed here, as llama.cpp's
// convert_hf_to_gguf.py does, so that ggml's ne[0] is the input width.
type gpt2Tensor struct {
	hf, gguf string
	conv1D   bool
}

func gpt2Tensors(cfg modeldir.GPT2Config) []gpt2Tensor {
	ts := []gpt2Tensor{
		{hf: "wte.weight", gguf: "token_embd.weight"},
		{hf: "wpe.weight", gguf: "position_embd.weight"},
	}
	for i := 0; i < cfg.NLayer; i++ {
		h, b := fmt.Sprintf("h.%d.", i), fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			gpt2Tensor{hf: h + "ln_1.weight", gguf: b + "attn_norm.weight"},
			gpt2Tensor{hf: h + "ln_1.bias", gguf: b + "attn_norm.bias"},
			gpt2Tensor{hf: h + "attn.c_attn.weight", gguf: b + "attn_qkv.weight", conv1D: true},
			gpt2Tensor{hf: h + "attn.c_attn.bias", gguf: b + "attn_qkv.bias"},
			gpt2Tensor{hf: h + "attn.c_proj.weight", gguf: b + "attn_output.weight", conv1D: true},
			gpt2Tensor{hf: h + "attn.c_proj.bias", gguf: b + "attn_output.bias"},
			gpt2Tensor{hf: h + "ln_2.weight", gguf: b + "ffn_norm.weight"},
			gpt2Tensor{hf: h + "ln_2.bias", gguf: b + "ffn_norm.bias"},
			gpt2Tensor{hf: h + "mlp.c_fc.weight", gguf: b + "ffn_up.weight", conv1D: true},
			gpt2Tensor{hf: h + "mlp.c_fc.bias", gguf: b + "ffn_up.bias"},
			gpt2Tensor{hf: h + "mlp.c_proj.weight", gguf: b + "ffn_down.weight", conv1D: true},
			gpt2Tensor{hf: h + "mlp.c_proj.bias", gguf: b + "ffn_down.bias"},
		)
	}
	return append(ts,
		gpt2Tensor{hf: "ln_f.weight", gguf: "output_norm.weight"},
		gpt2Tensor{hf: "ln_f.bias", gguf: "output_norm.bias"},
	)
}

// tensorType is the type a GPT-2 tensor gets in a file of type ft, following
// convert_hf_to_gguf.py: 1-D tensors, norms and position_embd stay F32; other weight matrices
// take ft's type, Q8_0 falling back to F16 when ne[0] is not a multiple of 32.
func tensorType(name string, dims []uint64, ft FileType) TensorType {
	if len(dims) < 2 || strings.HasSuffix(name, "_norm.weight") || name == "position_embd.weight" {
		return F32
	}
	t := ft.Tensor()
	if t == Q8_0 && dims[0]%QK8_0 != 0 {
		return F16
	}
	return t
}

// GPT2Options are the optional parts of WriteGPT2.
type GPT2Options struct {
	Name string // general.name; default: the base name of the model directory
}

// WriteGPT2 converts the float32 GPT-2 model directory dir (config.json + model.safetensors;
// see sdk/modeldir) to a GGUF file at out with llama.cpp's "gpt2" architecture key and tensor
// names, most weights stored as ft. The tokenizer (vocab.json + merges.txt, or encoder.json +
// vocab.bpe) becomes tokenizer.ggml.* with model "gpt2"; without one the file says model "none"
// and gpt2.vocab_size, which llama.cpp loads as a vocabulary of placeholder tokens (token ids
// in, logits out, no text). Quantized model directories are refused: convert from float32.
func WriteGPT2(dir, out string, ft FileType, opts GPT2Options) error {
	cfg, err := modeldir.LoadGPT2Config(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	if cfg.Weights != "" {
		return fmt.Errorf("gguf: %s: %w (%s); export from the float32 directory", dir, modeldir.ErrQuantized, cfg.Weights)
	}
	if ft != FileAllF32 && ft != FileMostlyF16 && ft != FileMostlyQ80 {
		return fmt.Errorf("gguf: file type %d is not f32, f16 or q8_0", ft)
	}
	name := opts.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(dir))
	}
	kvs, err := gpt2Metadata(dir, cfg, ft, name)
	if err != nil {
		return err
	}
	wpath := filepath.Join(dir, modeldir.GPT2WeightsFile)
	st, err := safetensors.Open(wpath)
	if err != nil {
		return err
	}
	defer st.Close()
	shapes := modeldir.GPT2Shapes(cfg)
	var tensors []Tensor
	for _, m := range gpt2Tensors(cfg) {
		src := "transformer." + m.hf
		if !st.Has(src) {
			src = m.hf
		}
		want := shapes["transformer."+m.hf]
		info, err := st.Info(src)
		if err != nil {
			return fmt.Errorf("gguf: %s: tensor %q: %w", wpath, "transformer."+m.hf, err)
		}
		if !sameShape(info.Shape, want) {
			return fmt.Errorf("gguf: %s: tensor %q has shape %v, config.json implies %v", wpath, src, info.Shape, want)
		}
		// ggml order reverses the row-major shape; a transposed Conv1D weight keeps HF's [in,out].
		dims := make([]uint64, len(want))
		for i, d := range want {
			dims[len(want)-1-i] = uint64(d)
		}
		if m.conv1D {
			dims[0], dims[1] = dims[1], dims[0]
		}
		tt := tensorType(m.gguf, dims, ft)
		m, src := m, src
		tensors = append(tensors, Tensor{Name: m.gguf, Dims: dims, Type: tt, Fill: func() ([]byte, error) {
			v, shape, err := st.Float32(src)
			if err != nil {
				return nil, err
			}
			_ = st.Release(src)
			if m.conv1D {
				v = transpose(v, shape[0], shape[1])
			}
			return encode(v, tt)
		}})
	}
	if st.Has("lm_head.weight") {
		// An untied head: llama.cpp's optional output.weight ([n_embd, n_vocab] in ggml order).
		dims := []uint64{uint64(cfg.NEmbd), uint64(cfg.VocabSize)}
		info, err := st.Info("lm_head.weight")
		if err != nil {
			return err
		}
		if !sameShape(info.Shape, []int64{int64(cfg.VocabSize), int64(cfg.NEmbd)}) {
			return fmt.Errorf("gguf: %s: tensor \"lm_head.weight\" has shape %v, want [%d %d]", wpath, info.Shape, cfg.VocabSize, cfg.NEmbd)
		}
		tt := tensorType("output.weight", dims, ft)
		tensors = append(tensors, Tensor{Name: "output.weight", Dims: dims, Type: tt, Fill: func() ([]byte, error) {
			v, _, err := st.Float32("lm_head.weight")
			if err != nil {
				return nil, err
			}
			return encode(v, tt)
		}})
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return WriteFile(out, kvs, tensors)
}

func sameShape(got []int, want []int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if int64(got[i]) != want[i] {
			return false
		}
	}
	return true
}

// transpose returns the [cols,rows] transpose of the row-major [rows,cols] matrix v.
func transpose(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}

func encode(v []float32, t TensorType) ([]byte, error) {
	switch t {
	case F16:
		return EncodeF16(v), nil
	case Q8_0:
		return QuantizeQ8_0(v)
	}
	return EncodeF32(v), nil
}

// gpt2Metadata is the key-value part: general.*, gpt2.* (as convert_hf_to_gguf.py's GPT2Model
// writes them) and tokenizer.ggml.*.
func gpt2Metadata(dir string, cfg modeldir.GPT2Config, ft FileType, name string) ([]KV, error) {
	kvs := []KV{
		{"general.architecture", Arch},
		{"general.type", "model"},
		{"general.name", name},
		{Arch + ".block_count", uint32(cfg.NLayer)},
		{Arch + ".context_length", uint32(cfg.NPositions)},
		{Arch + ".embedding_length", uint32(cfg.NEmbd)},
		{Arch + ".feed_forward_length", uint32(cfg.Inner())},
		{Arch + ".attention.head_count", uint32(cfg.NHead)},
		{Arch + ".attention.layer_norm_epsilon", float32(cfg.LayerNormEpsilon)},
		{Arch + ".vocab_size", uint32(cfg.VocabSize)},
		{"general.file_type", uint32(ft)},
		{"general.quantization_version", uint32(2)},
	}
	tok, err := gpt2Vocab(dir, cfg)
	if err != nil {
		return nil, err
	}
	return append(kvs, tok...), nil
}

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
const (
	tokenNormal  int32 = 1
	tokenControl int32 = 3
)

// gpt2Vocab reads the tokenizer files of dir into tokenizer.ggml.* entries; ids the vocabulary
// does not cover up to vocab_size become "[PAD<id>]" tokens, as convert_hf_to_gguf.py names them.
func gpt2Vocab(dir string, cfg modeldir.GPT2Config) ([]KV, error) {
	var vocabPath, mergesPath string
	for _, p := range [][2]string{{"vocab.json", "merges.txt"}, {"encoder.json", "vocab.bpe"}} {
		if _, err := os.Stat(filepath.Join(dir, p[0])); err == nil {
			vocabPath, mergesPath = filepath.Join(dir, p[0]), filepath.Join(dir, p[1])
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("gguf: %w", err)
		}
	}
	if vocabPath == "" {
		return []KV{{"tokenizer.ggml.model", "none"}}, nil
	}
	data, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	vocab, err := tokenizer.ParseVocab(data)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", vocabPath, err)
	}
	if data, err = os.ReadFile(mergesPath); err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	merges, err := tokenizer.ParseMerges(data)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", mergesPath, err)
	}
	tokens := make([]string, cfg.VocabSize)
	types := make([]int32, cfg.VocabSize)
	have := make([]bool, cfg.VocabSize)
	for tok, id := range vocab {
		if id < 0 || id >= cfg.VocabSize {
			return nil, fmt.Errorf("gguf: %s: token %q has id %d outside vocab_size %d (config.json)", vocabPath, tok, id, cfg.VocabSize)
		}
		if have[id] {
			return nil, fmt.Errorf("gguf: %s: id %d is given to %q and %q", vocabPath, id, tokens[id], tok)
		}
		tokens[id], types[id], have[id] = tok, tokenNormal, true
	}
	for id := range tokens {
		if !have[id] {
			tokens[id], types[id] = fmt.Sprintf("[PAD%d]", id), tokenControl
		}
	}
	if id, ok := vocab[tokenizer.EndOfText]; ok {
		types[id] = tokenControl
	}
	ms := make([]string, len(merges))
	for i, m := range merges {
		ms[i] = m[0] + " " + m[1]
	}
	return []KV{
		{"tokenizer.ggml.model", "gpt2"},
		{"tokenizer.ggml.pre", "gpt-2"},
		{"tokenizer.ggml.tokens", Array{Elem: TypeString, Values: tokens}},
		{"tokenizer.ggml.token_type", Array{Elem: TypeInt32, Values: types}},
		{"tokenizer.ggml.merges", Array{Elem: TypeString, Values: ms}},
		{"tokenizer.ggml.bos_token_id", uint32(cfg.BOSTokenID)},
		{"tokenizer.ggml.eos_token_id", uint32(cfg.EOSTokenID)},
	}, nil
}

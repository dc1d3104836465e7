package gpt2

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/modelrt/modelrt/native/quant"
)

// tokenizerFiles are the files WriteQuantized copies beside the new weights, when present.
var tokenizerFiles = []string{"vocab.json", "merges.txt", "encoder.json", "vocab.bpe", "tokenizer.json",
	"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}

// WriteQuantized loads the float32 GPT-2 model directory src, quantizes its weight matrices to
// dt (quant.Int8 or quant.F16) and writes a model directory to out that Load reads back as is:
//
//   - config.json: src's, plus "quantization": {"format": QuantFormat, "dtype": dt};
//   - model.safetensors: "transformer."-prefixed HF names; each Conv1D weight and wte.weight as
//     I8 (same shape as the float32 tensor) with "<name>.scale" F32 — (out) for a Conv1D weight,
//     (vocab) for wte — or as F16; biases, layer norms and wpe stay F32; lm_head.weight only
//     when src does not tie it;
//   - the tokenizer files of src.
//
// out is created if needed; existing files in it are overwritten.
func WriteQuantized(src, out string, dt quant.DType) error {
	if dt != quant.Int8 && dt != quant.F16 {
		return fmt.Errorf("gpt2: WriteQuantized: dtype %q: want %s or %s", dt, quant.Int8, quant.F16)
	}
	m, err := Load(src)
	if err != nil {
		return err
	}
	if m.cfg.Weights != "" {
		return fmt.Errorf("gpt2: WriteQuantized %s: %w (%s)", src, ErrQuantized, m.cfg.Weights)
	}
	tied := &m.LMHead[0] == &m.WTE[0]
	slog.Info("gpt2: quantizing", "src", src, "dtype", dt, "float32 bytes", m.WeightBytes())
	if err := m.Quantize(dt); err != nil {
		return err
	}
	cfgJSON, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		return fmt.Errorf("gpt2: read config: %w", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return fmt.Errorf("gpt2: %s: %w", filepath.Join(src, "config.json"), err)
	}
	cfg["quantization"] = map[string]any{"format": QuantFormat, "dtype": string(dt)}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("gpt2: WriteQuantized: %w", err)
	}
	cfgOut, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "config.json"), append(cfgOut, '\n'), 0o644); err != nil {
		return fmt.Errorf("gpt2: WriteQuantized: %w", err)
	}
	path := filepath.Join(out, "model.safetensors")
	if err := writeRawFile(path, m.tensors(tied), map[string]string{"format": "pt", "modelrt.quantization": string(dt)}); err != nil {
		return err
	}
	for _, name := range tokenizerFiles {
		data, err := os.ReadFile(filepath.Join(src, name))
		if os.IsNotExist(err) {
			continue
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(out, name), data, 0o644)
		}
		if err != nil {
			return fmt.Errorf("gpt2: WriteQuantized: copy %s: %w", name, err)
		}
	}
	slog.Info("gpt2: wrote quantized model", "dir", out, "bytes", m.WeightBytes())
	return nil
}

// rawTensor is one tensor of a safetensors file, already in its stored little-endian bytes.
type rawTensor struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

// tensors lists the model's parameters in storage form, under HF GPT2LMHeadModel names.
func (m *Model) tensors(tied bool) []rawTensor {
	c := m.cfg.NEmbd
	var ts []rawTensor
	f32 := func(name string, v []float32, shape ...int) {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		ts = append(ts, rawTensor{name, "F32", shape, b})
	}
	q := func(name string, w QWeights, channels int, shape ...int) {
		switch w.DType {
		case quant.Int8:
			b := make([]byte, len(w.I8))
			for i, x := range w.I8 {
				b[i] = byte(x)
			}
			ts = append(ts, rawTensor{name, "I8", shape, b})
			f32(name+".scale", w.Scale, channels)
		case quant.F16:
			b := make([]byte, 2*len(w.F16))
			for i, x := range w.F16 {
				binary.LittleEndian.PutUint16(b[2*i:], x)
			}
			ts = append(ts, rawTensor{name, "F16", shape, b})
		}
	}
	ln := func(name string, n LayerNorm) {
		f32(name+".weight", n.Weight, c)
		f32(name+".bias", n.Bias, c)
	}
	const p = "transformer."
	q(p+"wte.weight", m.WTEQ, m.cfg.VocabSize, m.cfg.VocabSize, c)
	f32(p+"wpe.weight", m.WPE, m.cfg.NPositions, c)
	for i := range m.Blocks {
		blk := &m.Blocks[i]
		h := fmt.Sprintf("%sh.%d.", p, i)
		ln(h+"ln_1", blk.LN1)
		ln(h+"ln_2", blk.LN2)
		for name, l := range map[string]*Linear{"attn.c_attn": &blk.Attn.CAttn, "attn.c_proj": &blk.Attn.CProj, "mlp.c_fc": &blk.MLP.CFC, "mlp.c_proj": &blk.MLP.CProj} {
			q(h+name+".weight", l.Q.rowMajor(l.In, l.Out), l.Out, l.In, l.Out)
			f32(h+name+".bias", l.Bias, l.Out)
		}
	}
	ln(p+"ln_f", m.LNF)
	if !tied {
		q("lm_head.weight", m.LMHeadQ, m.cfg.VocabSize, m.cfg.VocabSize, c)
	}
	return ts
}

// writeRawFile writes a safetensors file (8-byte little-endian header length, JSON header padded
// to 8 bytes, tensor data in name order) through a temporary file renamed into place.
// safetensors.Write takes float and int64 values only; the I8 tensors need raw bytes.
func writeRawFile(path string, ts []rawTensor, metadata map[string]string) (err error) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
	type entry struct {
		DType       string  `json:"dtype"`
		Shape       []int   `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]any{"__metadata__": metadata}
	var off int64
	for _, t := range ts {
		hdr[t.name] = entry{t.dtype, t.shape, []int64{off, off + int64(len(t.data))}}
		off += int64(len(t.data))
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("gpt2: write %s: %w", path, err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("gpt2: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	var n8 [8]byte
	binary.LittleEndian.PutUint64(n8[:], uint64(len(js)))
	w.Write(n8[:])
	w.Write(js)
	for _, t := range ts {
		w.Write(t.data)
	}
	if err = w.Flush(); err != nil {
		return fmt.Errorf("gpt2: write %s: %w", path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("gpt2: write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("gpt2: write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("gpt2: write %s: %w", path, err)
	}
	return nil
}

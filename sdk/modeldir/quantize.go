package modeldir

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// GPT2WeightsFile is the weights file of a GPT-2 model directory.
const GPT2WeightsFile = "model.safetensors"

// ErrQuantized marks a request to change the storage type of weights that are already
// quantized: requantizing would compound the rounding, so only float32 weights convert.
var ErrQuantized = errors.New("gpt2: weights are already quantized")

// tokenizerFiles are the files QuantizeGPT2 copies beside the new weights, when present.
var tokenizerFiles = []string{"vocab.json", "merges.txt", "encoder.json", "vocab.bpe", "tokenizer.json",
	"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}

// conv1DWeights are the suffixes of the Conv1D weights ([in,out], output channels are columns).
var conv1DWeights = []string{".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight"}

// QuantizeGPT2 reads the float32 GPT-2 model directory src, quantizes its weight matrices to dt
// (quant.Int8 or quant.F16) and writes a model directory to out that the native backend loads
// as is (docs/kernels.md):
//
//   - config.json: src's, plus "quantization": {"format": QuantFormat, "dtype": dt};
//   - model.safetensors: "transformer."-prefixed HF names; each Conv1D weight and wte.weight as
//     I8 (same shape as the float32 tensor) with "<name>.scale" F32 — (out) for a Conv1D weight,
//     (vocab) for wte — or as F16; biases, layer norms and wpe stay F32; lm_head.weight only
//     when src does not tie it;
//   - the tokenizer files of src.
//
// src's tensors may carry the "transformer." prefix or not and be stored as F32, F16 or BF16;
// each is checked against the shape config.json implies. out is created if needed; existing
// files in it are overwritten.
func QuantizeGPT2(src, out string, dt quant.DType) error {
	if dt != quant.Int8 && dt != quant.F16 {
		return fmt.Errorf("gpt2: QuantizeGPT2: dtype %q: want %s or %s", dt, quant.Int8, quant.F16)
	}
	cfgPath := filepath.Join(src, "config.json")
	cfg, err := LoadGPT2Config(cfgPath)
	if err != nil {
		return err
	}
	if cfg.Weights != "" {
		return fmt.Errorf("gpt2: QuantizeGPT2 %s: %w (%s)", src, ErrQuantized, cfg.Weights)
	}
	ts, f32Bytes, err := quantizedTensors(filepath.Join(src, GPT2WeightsFile), cfg, dt)
	if err != nil {
		return err
	}
	slog.Info("gpt2: quantizing", "src", src, "dtype", dt, "float32 bytes", f32Bytes)
	cfgJSON, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("gpt2: read config: %w", err)
	}
	var conf map[string]any
	if err := json.Unmarshal(cfgJSON, &conf); err != nil {
		return fmt.Errorf("gpt2: %s: %w", cfgPath, err)
	}
	conf["quantization"] = map[string]any{"format": QuantFormat, "dtype": string(dt)}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("gpt2: QuantizeGPT2: %w", err)
	}
	cfgOut, _ := json.MarshalIndent(conf, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "config.json"), append(cfgOut, '\n'), 0o644); err != nil {
		return fmt.Errorf("gpt2: QuantizeGPT2: %w", err)
	}
	path := filepath.Join(out, GPT2WeightsFile)
	if err := writeRawFile(path, ts, map[string]string{"format": "pt", "modelrt.quantization": string(dt)}); err != nil {
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
			return fmt.Errorf("gpt2: QuantizeGPT2: copy %s: %w", name, err)
		}
	}
	var n int
	for _, t := range ts {
		n += len(t.data)
	}
	slog.Info("gpt2: wrote quantized model", "dir", out, "bytes", n)
	return nil
}

// quantizedTensors reads the GPT-2 weights file path (of config cfg) and returns its tensors in
// storage form under "transformer."-prefixed names, the weight matrices converted to dt, with
// the bytes the float32 parameters take.
func quantizedTensors(path string, cfg GPT2Config, dt quant.DType) ([]rawTensor, int64, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("gpt2: %w", err)
	}
	defer f.Close()
	prefix := ""
	if f.Has("transformer.wte.weight") {
		prefix = "transformer."
	}
	if extra := prefix + fmt.Sprintf("h.%d.ln_1.weight", cfg.NLayer); f.Has(extra) {
		return nil, 0, fmt.Errorf("gpt2: %s: tensor %q exists but config.json says n_layer=%d", path, extra, cfg.NLayer)
	}
	shapes := GPT2Shapes(cfg)
	if f.Has("lm_head.weight") { // untied; GPT-2 checkpoints normally tie it to wte
		shapes["lm_head.weight"] = []int64{int64(cfg.VocabSize), int64(cfg.NEmbd)}
	}
	names := make([]string, 0, len(shapes))
	for name := range shapes {
		names = append(names, name)
	}
	sort.Strings(names)
	var ts []rawTensor
	var f32Bytes int64
	for _, name := range names {
		stored := name
		if rest, ok := strings.CutPrefix(name, "transformer."); ok {
			stored = prefix + rest
		}
		shape := make([]int, len(shapes[name]))
		for i, d := range shapes[name] {
			shape[i] = int(d)
		}
		w, err := readFloat32(f, stored, shape)
		if err != nil {
			return nil, 0, err
		}
		f32Bytes += 4 * int64(len(w))
		switch {
		case isConv1DWeight(name):
			ts = append(ts, quantizeTensor(name, w, shape, true, dt)...)
		case name == "transformer.wte.weight" || name == "lm_head.weight":
			ts = append(ts, quantizeTensor(name, w, shape, false, dt)...)
		default:
			ts = append(ts, f32Tensor(name, w, shape...))
		}
	}
	return ts, f32Bytes, nil
}

func isConv1DWeight(name string) bool {
	for _, s := range conv1DWeights {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// readFloat32 reads tensor name of f, which must have the given shape and a float dtype.
func readFloat32(f *safetensors.File, name string, shape []int) ([]float32, error) {
	ti, err := f.Info(name)
	if err != nil {
		return nil, fmt.Errorf("gpt2: %s: missing tensor %q (want shape %v): %w", f.Path(), name, shape, err)
	}
	if !slices.Equal(ti.Shape, shape) {
		return nil, fmt.Errorf("gpt2: %s: tensor %q has shape %v, want %v from config.json", f.Path(), name, ti.Shape, shape)
	}
	switch ti.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		return nil, fmt.Errorf("gpt2: %s: tensor %q has dtype %s, want F32, F16 or BF16", f.Path(), name, ti.DType)
	}
	data, _, err := f.Float32(name)
	if err != nil {
		return nil, fmt.Errorf("gpt2: %w", err)
	}
	return data, nil
}

// quantizeTensor converts weight matrix w (rows,cols) to dt: I8 plus a "<name>.scale" F32 of
// the output channels' scales ((cols) when perCol, else (rows)), or F16.
func quantizeTensor(name string, w []float32, shape []int, perCol bool, dt quant.DType) []rawTensor {
	rows, cols := shape[0], shape[1]
	if dt == quant.F16 {
		h := quant.ToF16(w)
		b := make([]byte, 2*len(h))
		for i, x := range h {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		return []rawTensor{{name, "F16", shape, b}}
	}
	var q []int8
	var scale []float32
	if perCol {
		q, scale = quant.Int8Cols(w, rows, cols)
	} else {
		q, scale = quant.Int8Rows(w, rows, cols)
	}
	b := make([]byte, len(q))
	for i, x := range q {
		b[i] = byte(x)
	}
	return []rawTensor{{name, "I8", shape, b}, f32Tensor(name+".scale", scale, len(scale))}
}

func f32Tensor(name string, v []float32, shape ...int) rawTensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return rawTensor{name, "F32", shape, b}
}

// rawTensor is one tensor of a safetensors file, already in its stored little-endian bytes.
type rawTensor struct {
	name  string
	dtype string
	shape []int
	data  []byte
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

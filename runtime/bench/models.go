package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// cacheVersion is part of every cache key: bump it when the files written here change.
const cacheVersion = "v1"

// Models are the model directories of one shape, ready for the plugins.
type Models struct {
	GPT2     string // native: config.json + model.safetensors (float32)
	GPT2Int8 string // native: the same weights as modeldir.QuantizeGPT2 int8
	GPT2ONNX string // onnxrt: model.onnx (Optimum cache convention) + config.json
	VAE      string // native: config.json + diffusion_pytorch_model.safetensors
	VAEONNX  string // onnxrt: vae_encoder/model.onnx + vae_decoder/model.onnx
}

// CacheKey names the cache directory of s: the same weights and graphs for the same key.
func CacheKey(s Shape) string {
	data, err := json.Marshal(struct {
		GPT2 modeldir.GPT2Config
		VAE  any
		Seed uint64
	}{s.GPT2, s.VAE, s.Seed})
	if err != nil {
		panic(err) // plain structs always marshal
	}
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%s-%s-%s", cacheVersion, s.Name, hex.EncodeToString(sum[:6]))
}

// Prepare returns the model directories of s under cacheDir/CacheKey(s), creating those that do
// not exist yet. Each directory is written under a temporary name and renamed when complete, so
// an interrupted run leaves nothing that a later run would mistake for a model. The weights
// depend only on s (export.RandomWeights and export.RandomVAEWeights are functions of the seed
// and the tensor name), so a cache can be deleted at any time. step reports each creation.
func Prepare(cacheDir string, s Shape, int8Row bool, step func(what string)) (*Models, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	root := filepath.Join(cacheDir, CacheKey(s))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("bench: cache: %w", err)
	}
	m := &Models{
		GPT2: filepath.Join(root, "gpt2"), GPT2Int8: filepath.Join(root, "gpt2-int8"), GPT2ONNX: filepath.Join(root, "gpt2-onnx"),
		VAE: filepath.Join(root, "vae"), VAEONNX: filepath.Join(root, "vae-onnx"),
	}
	jobs := []struct {
		dir, what string
		skip      bool
		write     func(tmp string) error
	}{
		{m.GPT2, "write GPT-2 safetensors", false, func(tmp string) error { return WriteRandomGPT2(tmp, s.GPT2, s.Seed) }},
		{m.GPT2ONNX, "export GPT-2 to ONNX", false, func(tmp string) error { return export.ExportGPT2(m.GPT2, tmp, export.DefaultOptions()) }},
		{m.GPT2Int8, "quantize GPT-2 to int8", !int8Row, func(tmp string) error { return modeldir.QuantizeGPT2(m.GPT2, tmp, quant.Int8) }},
		{m.VAE, "write VAE safetensors", false, func(tmp string) error { return export.WriteRandomVAE(tmp, s.VAE, s.Seed) }},
		{m.VAEONNX, "export VAE to ONNX", false, func(tmp string) error { return export.ExportVAE(m.VAE, tmp, export.DefaultOptions()) }},
	}
	for _, j := range jobs {
		if j.skip {
			continue
		}
		if _, err := os.Stat(j.dir); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bench: cache: %w", err)
		}
		if step != nil {
			step(j.what)
		}
		tmp := j.dir + ".tmp"
		if err := os.RemoveAll(tmp); err != nil {
			return nil, fmt.Errorf("bench: cache: %w", err)
		}
		if err := j.write(tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("bench: %s in %s: %w", j.what, tmp, err)
		}
		if err := os.Rename(tmp, j.dir); err != nil {
			return nil, fmt.Errorf("bench: cache: %w", err)
		}
	}
	return m, nil
}

// WriteRandomGPT2 writes dir/config.json (HF GPT2Config fields of cfg) and dir/model.safetensors with
// export.RandomWeights(cfg, seed) under HF GPT2LMHeadModel names, lm_head tied to wte.
func WriteRandomGPT2(dir string, cfg modeldir.GPT2Config, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := map[string]any{
		"model_type": "gpt2", "architectures": []string{"GPT2LMHeadModel"},
		"vocab_size": cfg.VocabSize, "n_positions": cfg.NPositions, "n_ctx": cfg.NPositions, "n_embd": cfg.NEmbd,
		"n_layer": cfg.NLayer, "n_head": cfg.NHead, "n_inner": nil, "layer_norm_epsilon": cfg.LayerNormEpsilon,
		"activation_function": cfg.ActivationFunction, "bos_token_id": cfg.BOSTokenID, "eos_token_id": cfg.EOSTokenID,
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	w := export.RandomWeights(cfg, seed)
	shapes := modeldir.GPT2Shapes(cfg)
	names := make([]string, 0, len(shapes))
	for name := range shapes {
		names = append(names, name)
	}
	sort.Strings(names) // a stable file for a stable cache
	ts := make([]safetensors.Tensor, 0, len(names))
	for _, name := range names {
		raw, shape, err := w.Tensor(name)
		if err != nil {
			return fmt.Errorf("tensor %s: %w", name, err)
		}
		f := make([]float32, len(raw)/4)
		if err := safetensors.DecodeFloat32(f, raw, safetensors.F32); err != nil {
			return fmt.Errorf("tensor %s: %w", name, err)
		}
		dims := make([]int, len(shape))
		for i, d := range shape {
			dims[i] = int(d)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: dims, F32: f})
	}
	return safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"})
}

package ort

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ortgo "github.com/yalue/onnxruntime_go"
)

// FuzzReadModelConfig: config.json / genai_config.json of any content never panics, and a
// config read without error has no negative sizes.
func FuzzReadModelConfig(f *testing.F) {
	for _, dir := range []string{"gpt2-odd-onnx-optimum-op14", "gpt2-odd-onnx-stacked-op14"} {
		for _, name := range []string{"config.json", "genai_config.json"} {
			if data, err := os.ReadFile(filepath.Join(modelsDir, dir, name)); err == nil {
				f.Add(name == "genai_config.json", data)
			}
		}
	}
	f.Add(false, []byte(`{"eos_token_id": [50256, 0], "n_head": 0, "n_embd": 7}`))
	f.Add(true, []byte(`{"model": {"eos_token_id": null, "decoder": {"num_key_value_heads": 2}}}`))
	f.Add(false, []byte(`{"eos_token_id": "x"}`))
	f.Fuzz(func(t *testing.T, genai bool, data []byte) {
		dir := t.TempDir()
		name := "config.json"
		if genai {
			name = "genai_config.json"
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := readModelConfig(dir)
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		_ = c // any non-negative or negative numbers are carried as given; detect checks them
	})
}

// FuzzDetect: any list of declared inputs and outputs is either a known convention with a
// consistent shape or an ErrUnsupportedGraph — never a panic, never a half-filled LM.
func FuzzDetect(f *testing.F) {
	f.Add("input_ids,attention_mask,position_ids,past_key_values.0.key,past_key_values.0.value", "logits,present.0.key,present.0.value", int64(4), int64(8), uint8(0))
	f.Add("input_ids,past_0,past_1", "logits,present_0,present_1", int64(-1), int64(8), uint8(1))
	f.Add("input_ids", "logits", int64(4), int64(8), uint8(2))
	f.Add("input_ids,past_key_values.1.key,past_key_values.1.value", "logits,present.1.key,present.1.value", int64(4), int64(0), uint8(3))
	f.Fuzz(func(t *testing.T, ins, outs string, h, d int64, types uint8) {
		dt := []ortgo.TensorElementDataType{ortgo.TensorElementDataTypeFloat, ortgo.TensorElementDataTypeInt64, ortgo.TensorElementDataTypeInt32, ortgo.TensorElementDataTypeFloat16}
		mk := func(list string, k int) []ortgo.InputOutputInfo {
			var infos []ortgo.InputOutputInfo
			for i, name := range strings.Split(list, ",") {
				t := dt[(int(types)>>(2*((i+k)%4)))&3]
				var dims []int64
				switch {
				case name == "input_ids" || name == "attention_mask" || name == "position_ids":
					t = ortgo.TensorElementDataTypeInt64
					if types&1 == 1 {
						t = ortgo.TensorElementDataTypeInt32
					}
					dims = []int64{-1, -1}
				case name == "logits":
					dims = []int64{-1, -1, d*h + 1}
				case strings.HasPrefix(name, "past_key_values") || strings.HasPrefix(name, "present."):
					dims = []int64{-1, h, -1, d}
				case strings.HasPrefix(name, "past_") || strings.HasPrefix(name, "present_"):
					dims = []int64{2, -1, h, -1, d}
				}
				infos = append(infos, info(name, t, dims...))
			}
			return infos
		}
		lm, inNames, outNames, err := detect("f.onnx", mk(ins, 0), mk(outs, 1), modelConfig{})
		if err != nil {
			if !errors.Is(err, ErrUnsupportedGraph) {
				t.Fatalf("error %v is not ErrUnsupportedGraph", err)
			}
			return
		}
		i := lm.Info()
		if i.VocabSize <= 0 || len(inNames) != 1+len(lm.slots)+boolInt(i.HasAttentionMask)+boolInt(i.HasPositionIDs) || len(outNames) != 1+len(lm.slots) {
			t.Fatalf("inconsistent LM: %+v, inputs %v, outputs %v", i, inNames, outNames)
		}
		if i.Convention != ConventionNoPast && (i.NLayer < 1 || i.NHead < 1 || i.HeadDim < 1 || len(lm.slots) == 0) {
			t.Fatalf("cache convention without a cache shape: %+v", i)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzScanGraphIO: any file content either scans or is an error — never a panic, never a read
// past the end.
func FuzzScanGraphIO(f *testing.F) {
	good, err := os.ReadFile(addGraph(f, f.TempDir(), 0, false))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("this is not a protobuf"))
	f.Add([]byte{0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Properties: no panic, no hang; dims only on tensor values.
		ins, outs, err := scanIO(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, v := range append(ins, outs...) {
			if len(v.Dimensions) > 0 && v.OrtValueType != ortgo.ONNXTypeTensor && v.OrtValueType != ortgo.ONNXTypeSparseTensor {
				t.Fatalf("%s: dims %v on a %v value", v.Name, v.Dimensions, v.OrtValueType)
			}
		}
	})
}

package gpt2

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk/safetensors"
)

// modelDir copies gpt2-odd into a temporary directory, then lets edit rewrite its files.
func modelDir(t *testing.T, edit func(dir string)) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		copyFile(t, filepath.Join(fixtureDir("gpt2-odd"), f), filepath.Join(dir, f))
	}
	edit(dir)
	return dir
}

// rewriteTensors rewrites dir/model.safetensors through edit.
func rewriteTensors(t *testing.T, dir string, edit func([]safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	path := filepath.Join(dir, "model.safetensors")
	if err := safetensors.WriteFile(path, edit(readAll(t, path)), nil); err != nil {
		t.Fatal(err)
	}
}

// editConfig rewrites fields of dir/config.json (a nil value deletes the field).
func editConfig(t *testing.T, dir string, fields map[string]any) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// patchHeader replaces old with new (same length) in the JSON header of dir/model.safetensors.
func patchHeader(t *testing.T, dir, old, new string) {
	t.Helper()
	if len(old) != len(new) {
		t.Fatalf("patchHeader: %q and %q differ in length", old, new)
	}
	path := filepath.Join(dir, "model.safetensors")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	hdr := string(b[8 : 8+n])
	if !strings.Contains(hdr, old) {
		t.Fatalf("patchHeader: %q not in header", old)
	}
	copy(b[8:], strings.Replace(hdr, old, new, 1))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRejectsBadModels(t *testing.T) {
	const wpe = "transformer.wpe.weight"
	cases := []struct {
		name string
		edit func(t *testing.T, dir string)
		want []string // substrings of the error, including file and tensor or field
	}{
		{"truncated file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()-100); err != nil {
				t.Fatal(err)
			}
		}, []string{"model.safetensors", "run past", "(file truncated?)"}},
		{"header length beyond file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			b, _ := os.ReadFile(p)
			binary.LittleEndian.PutUint64(b, uint64(len(b)))
			os.WriteFile(p, b, 0o644)
		}, []string{"model.safetensors", "header length", "runs past the end"}},
		{"overlapping offsets", func(t *testing.T, dir string) {
			// c_attn.weight moved 4 bytes back onto c_attn.bias [0,576)
			patchHeader(t, dir, `"data_offsets":[576,28224]`, `"data_offsets":[572,28220]`)
		}, []string{"model.safetensors", `"transformer.h.0.attn.c_attn.weight"`, "overlap"}},
		{"wrong dtype", func(t *testing.T, dir string) {
			rewriteTensors(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == "transformer.h.1.mlp.c_fc.bias" {
						ints := make([]int64, len(ts[i].F32))
						ts[i] = safetensors.Tensor{Name: ts[i].Name, DType: safetensors.I32, Shape: ts[i].Shape, I64: ints}
					}
				}
				return ts
			})
		}, []string{"model.safetensors", `"transformer.h.1.mlp.c_fc.bias"`, "dtype I32"}},
		{"missing tensor", func(t *testing.T, dir string) {
			rewriteTensors(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				var out []safetensors.Tensor
				for _, x := range ts {
					if x.Name != "transformer.h.2.attn.c_proj.weight" {
						out = append(out, x)
					}
				}
				return out
			})
		}, []string{"model.safetensors", `missing tensor "transformer.h.2.attn.c_proj.weight"`, "(48,48)"}},
		{"shape disagrees with config", func(t *testing.T, dir string) {
			editConfig(t, dir, map[string]any{"n_positions": 64})
		}, []string{"model.safetensors", `"` + wpe + `" has shape (32,48), want (64,48)`}},
		{"transposed weight", func(t *testing.T, dir string) {
			rewriteTensors(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == "transformer.h.0.mlp.c_fc.weight" {
						ts[i].Shape = []int{192, 48}
					}
				}
				return ts
			})
		}, []string{`"transformer.h.0.mlp.c_fc.weight" has shape (192,48), want (48,192)`}},
		{"more layers than config", func(t *testing.T, dir string) {
			editConfig(t, dir, map[string]any{"n_layer": 2})
		}, []string{"model.safetensors", `"transformer.h.2.ln_1.weight" exists`, "n_layer=2"}},
		{"missing config.json", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "config.json"))
		}, []string{"config.json", "no such file"}},
		{"corrupt config.json", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"n_embd": 48,`), 0o644)
		}, []string{"config.json", "invalid JSON"}},
		{"config field missing", func(t *testing.T, dir string) {
			editConfig(t, dir, map[string]any{"n_head": nil})
		}, []string{"config.json", `missing field "n_head"`}},
		{"config field wrong type", func(t *testing.T, dir string) {
			editConfig(t, dir, map[string]any{"n_embd": "48"})
		}, []string{"config.json", `field "n_embd"`}},
		{"config heads do not divide", func(t *testing.T, dir string) {
			editConfig(t, dir, map[string]any{"n_head": 5})
		}, []string{"config.json", `field "n_head": 5 does not divide n_embd 48`}},
		{"config activation", func(t *testing.T, dir string) {
			editConfig(t, dir, map[string]any{"activation_function": "relu"})
		}, []string{"config.json", `field "activation_function"`}},
		{"config eos outside vocab", func(t *testing.T, dir string) {
			editConfig(t, dir, map[string]any{"eos_token_id": 384})
		}, []string{"config.json", `field "eos_token_id"`}},
		{"missing weights file", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.safetensors"))
		}, []string{"model.safetensors", "no such file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := modelDir(t, func(dir string) { c.edit(t, dir) })
			_, err := Load(dir)
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

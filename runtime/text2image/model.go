// Package text2image turns a caption into images the DALL·E way: a GPT-2 prior, conditioned on
// the caption's tokens, samples the codes of a VAE codebook one latent pixel at a time; the
// codebook vectors make a latent, and the VAE decodes it (docs/text2image.md).
//
// Model reads a prior's directory on the host (text2image.json, the codebook, the tokenizer,
// the VAE's config); Pipeline runs it on backends: the prior as a causal LM through runtime/lm
// and runtime/generate, the VAE's decoder through any sdk.Backend.
package text2image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/modelrt/modelrt/runtime/tokenizer"
	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// ErrInvalid marks a request the model cannot serve (caption, n, size, guidance); errors wrap
// it with the detail.
var ErrInvalid = errors.New("text2image: invalid request")

// Model is a text-to-image prior directory, read on the host.
type Model struct {
	Dir   string
	Facts *sdk.Text2Image
	Tok   *tokenizer.Tokenizer
	// Codebook is (K, C) row-major: code k's latent vector, unscaled.
	Codebook []float32
	// VAEDir is the VAE's directory: text2image.json's "vae" resolved against Dir, or the
	// override given to Load.
	VAEDir string
	// Downsample is the VAE's downsampling factor f: images are (H·f, W·f).
	Downsample int
	// VocabSize is config.json's vocab_size (0 when the directory has no config.json).
	VocabSize int
}

// Load reads dir: text2image.json, the codebook, the tokenizer and the VAE's config. vaeDir,
// when not empty, replaces text2image.json's "vae". Errors name the file and the field.
func Load(dir, vaeDir string) (*Model, error) {
	path := filepath.Join(dir, sdk.Text2ImageFile)
	facts, err := sdk.ReadText2Image(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("text2image: %s has no %s: not a text-to-image prior (docs/text2image.md)", dir, sdk.Text2ImageFile)
	}
	if err != nil {
		return nil, err
	}
	m := &Model{Dir: dir, Facts: facts}
	if m.Tok, err = tokenizer.Load(dir); err != nil {
		return nil, fmt.Errorf("text2image: %w", err)
	}
	if err := m.readConfig(); err != nil {
		return nil, err
	}
	if err := m.readCodebook(); err != nil {
		return nil, err
	}
	m.VAEDir = vaeDir
	field := "--vae"
	if vaeDir == "" {
		m.VAEDir, field = filepath.Join(dir, facts.VAE), fmt.Sprintf("%s: vae %q", path, facts.VAE)
	}
	if st, err := os.Stat(m.VAEDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("text2image: %s: VAE directory %s does not exist", field, m.VAEDir)
	}
	if err := m.readVAEConfig(field); err != nil {
		return nil, err
	}
	return m, nil
}

// readConfig checks the prior's config.json against the token layout: the codes are the last
// ids of the vocabulary.
func (m *Model) readConfig() error {
	path := filepath.Join(m.Dir, "config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("text2image: %w", err)
	}
	var c struct {
		VocabSize  int `json:"vocab_size"`
		NPositions int `json:"n_positions"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("text2image: %s: %w", path, err)
	}
	f := m.Facts
	if end := f.CodeOffset + f.CodebookSize; c.VocabSize != end {
		return fmt.Errorf("text2image: %s: vocab_size %d, but %s puts codes at [%d, %d): they must be the last ids",
			path, c.VocabSize, sdk.Text2ImageFile, f.CodeOffset, end)
	}
	if c.NPositions > 0 && c.NPositions < f.SequenceLength() {
		return fmt.Errorf("text2image: %s: n_positions %d < %d, the prefix, the marker and %d codes",
			path, c.NPositions, f.SequenceLength(), f.Codes())
	}
	m.VocabSize = c.VocabSize
	return nil
}

func (m *Model) readCodebook() error {
	path := filepath.Join(m.Dir, m.Facts.Codebook)
	st, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("text2image: %s: codebook %q: %w", sdk.Text2ImageFile, m.Facts.Codebook, err)
	}
	defer st.Close()
	cb, shape, err := st.Float32("codebook")
	if err != nil {
		return fmt.Errorf("text2image: %s: tensor \"codebook\": %w", path, err)
	}
	K, C := m.Facts.CodebookSize, m.Facts.LatentShape[0]
	if len(shape) != 2 || shape[0] != K || shape[1] != C {
		return fmt.Errorf("text2image: %s: tensor \"codebook\" has shape %v, want [codebook_size, latent channels] = [%d, %d] (%s)",
			path, shape, K, C, sdk.Text2ImageFile)
	}
	m.Codebook = cb
	return nil
}

// readVAEConfig reads latent_channels and the downsampling factor from the VAE's config.json
// (a native directory) or vae_decoder/config.json (Optimum's split).
func (m *Model) readVAEConfig(field string) error {
	for _, name := range []string{"config.json", "vae_decoder/config.json"} {
		path := filepath.Join(m.VAEDir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("text2image: %w", err)
		}
		var c struct {
			LatentChannels int   `json:"latent_channels"`
			Blocks         []int `json:"block_out_channels"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("text2image: %s: %w", path, err)
		}
		if len(c.Blocks) == 0 {
			return fmt.Errorf("text2image: %s: no block_out_channels: cannot tell the VAE's downsampling factor", path)
		}
		if C := m.Facts.LatentShape[0]; c.LatentChannels != C {
			return fmt.Errorf("text2image: %s: codebook %s holds vectors of %d channels, but the VAE %s has latent_channels %d",
				m.Facts.Codebook, filepath.Join(m.Dir, m.Facts.Codebook), C, path, c.LatentChannels)
		}
		m.Downsample = 1 << (len(c.Blocks) - 1)
		return nil
	}
	return fmt.Errorf("text2image: %s: %s has no config.json or vae_decoder/config.json: not a VAE directory", field, m.VAEDir)
}

// NativeSize returns the side of the images the VAE decodes (square latents: H·f).
func (m *Model) NativeSize() (w, h int) {
	return m.Facts.LatentShape[2] * m.Downsample, m.Facts.LatentShape[1] * m.Downsample
}

// Prompt returns the prior's prompt for a caption: its normalised form's BPE ids, right-padded
// with pad_id to prefix_length, then image_marker_id; tokens is the caption's BPE length.
func (m *Model) Prompt(caption string) (ids []int, normalized string, tokens int, err error) {
	normalized, err = NormalizeCaption(caption)
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	bpe := m.Tok.EncodeOrdinary(normalized)
	P := m.Facts.PrefixLength
	if len(bpe) > P {
		return nil, normalized, len(bpe), fmt.Errorf("%w: caption is %d tokens; the model's prefix holds %d", ErrInvalid, len(bpe), P)
	}
	ids = make([]int, 0, P+1)
	ids = append(ids, bpe...)
	for len(ids) < P {
		ids = append(ids, m.Facts.PadID)
	}
	return append(ids, m.Facts.ImageMarkerID), normalized, len(bpe), nil
}

// NullPrompt returns the unconditional prompt: prefix_length pad ids, then image_marker_id.
func (m *Model) NullPrompt() []int {
	ids := make([]int, m.Facts.PrefixLength, m.Facts.PrefixLength+1)
	for i := range ids {
		ids[i] = m.Facts.PadID
	}
	return append(ids, m.Facts.ImageMarkerID)
}

// Latents turns codes (N rows of H·W codes in raster order) into the (N, C, H, W) latent:
// latent[n, c, h, w] = codebook[codes[n][h·W + w]][c].
func (m *Model) Latents(codes [][]int) ([]float32, [4]int, error) {
	C, H, W := m.Facts.LatentShape[0], m.Facts.LatentShape[1], m.Facts.LatentShape[2]
	shape := [4]int{len(codes), C, H, W}
	z := make([]float32, len(codes)*C*H*W)
	for n, row := range codes {
		if len(row) != H*W {
			return nil, shape, fmt.Errorf("text2image: image %d has %d codes, want %d×%d", n, len(row), H, W)
		}
		for t, code := range row {
			if code < 0 || code >= m.Facts.CodebookSize {
				return nil, shape, fmt.Errorf("text2image: image %d: code %d at %d outside the codebook of %d", n, code, t, m.Facts.CodebookSize)
			}
			for c := range C {
				z[((n*C+c)*H*W)+t] = m.Codebook[code*C+c]
			}
		}
	}
	return z, shape, nil
}

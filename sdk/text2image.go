package sdk

import (
	"encoding/json"
	"fmt"
	"os"
)

// Text2ImageFile is the name of the text-to-image description in a prior's model directory.
const Text2ImageFile = "text2image.json"

// Text2ImageFormat is the value of text2image.json's "format" field that this version reads.
const Text2ImageFormat = "modelrt-text2image/v1"

// Text2Image is text2image.json: how a GPT-2 prior's token sequence maps to a VAE's latent
// (docs/text2image.md). Sequence: PrefixLength caption ids (right-padded with PadID) ·
// ImageMarkerID · H·W code ids, code c being token CodeOffset+c.
type Text2Image struct {
	Format        string `json:"format"`
	VAE           string `json:"vae"`      // VAE model directory, relative to the prior's
	Codebook      string `json:"codebook"` // safetensors file with "codebook" F32 [K, C]
	PrefixLength  int    `json:"prefix_length"`
	PadID         int    `json:"pad_id"`
	ImageMarkerID int    `json:"image_marker_id"`
	CodeOffset    int    `json:"code_offset"`
	CodebookSize  int    `json:"codebook_size"`
	LatentShape   [3]int `json:"latent_shape"` // [C, H, W]
	Order         string `json:"order"`        // "raster"
	LatentSpace   string `json:"latent_space"` // "unscaled"
	NullCaption   string `json:"null_caption"` // "all-pad"
}

// Codes returns the number of code tokens of one image, H·W.
func (t *Text2Image) Codes() int { return t.LatentShape[1] * t.LatentShape[2] }

// SequenceLength returns the positions a whole sequence takes: prefix, marker and codes.
func (t *Text2Image) SequenceLength() int { return t.PrefixLength + 1 + t.Codes() }

// ReadText2Image reads and checks a text2image.json; errors name the file and the field.
func ReadText2Image(path string) (*Text2Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseText2Image(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseText2Image parses and checks the contents of a text2image.json. Fields this version
// does not know are ignored (a trainer may record more); a missing field fails Validate.
func ParseText2Image(data []byte) (*Text2Image, error) {
	var t Text2Image
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("text2image: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// Validate checks every field on its own and against the others, naming the field.
func (t *Text2Image) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("text2image: %s %v: %s", field, v, want)
	}
	C, H, W := t.LatentShape[0], t.LatentShape[1], t.LatentShape[2]
	switch {
	case t.Format != Text2ImageFormat:
		return bad("format", fmt.Sprintf("%q", t.Format), fmt.Sprintf("want %q", Text2ImageFormat))
	case t.VAE == "":
		return bad("vae", `""`, "want the VAE's directory, relative to this file")
	case t.Codebook == "":
		return bad("codebook", `""`, "want the codebook's safetensors file, relative to this file")
	case t.PrefixLength <= 0:
		return bad("prefix_length", t.PrefixLength, "want > 0")
	case t.PadID < 0:
		return bad("pad_id", t.PadID, "want ≥ 0")
	case t.ImageMarkerID < 0 || t.ImageMarkerID == t.PadID:
		return bad("image_marker_id", t.ImageMarkerID, "want ≥ 0 and not pad_id")
	case t.CodebookSize <= 0:
		return bad("codebook_size", t.CodebookSize, "want > 0")
	case t.CodeOffset < 0:
		return bad("code_offset", t.CodeOffset, "want ≥ 0")
	case (t.PadID >= t.CodeOffset && t.PadID < t.CodeOffset+t.CodebookSize) ||
		(t.ImageMarkerID >= t.CodeOffset && t.ImageMarkerID < t.CodeOffset+t.CodebookSize):
		return bad("code_offset", t.CodeOffset, fmt.Sprintf("codes [%d, %d) overlap pad_id or image_marker_id", t.CodeOffset, t.CodeOffset+t.CodebookSize))
	case C <= 0 || H <= 0 || W <= 0:
		return bad("latent_shape", t.LatentShape, "want [C, H, W], each > 0")
	case t.Order != "raster":
		return bad("order", fmt.Sprintf("%q", t.Order), `want "raster"`)
	case t.LatentSpace != "unscaled":
		return bad("latent_space", fmt.Sprintf("%q", t.LatentSpace), `want "unscaled"`)
	case t.NullCaption != "all-pad":
		return bad("null_caption", fmt.Sprintf("%q", t.NullCaption), `want "all-pad"`)
	}
	return nil
}

// WriteText2Image checks t and writes it to path as indented JSON.
func WriteText2Image(path string, t *Text2Image) error {
	if err := t.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

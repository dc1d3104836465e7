package sdk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validText2Image() *Text2Image {
	return &Text2Image{Format: Text2ImageFormat, VAE: "../vae", Codebook: "codebook.safetensors", PrefixLength: 24,
		PadID: 100, ImageMarkerID: 101, CodeOffset: 102, CodebookSize: 16, LatentShape: [3]int{4, 4, 4},
		Order: "raster", LatentSpace: "unscaled", NullCaption: "all-pad"}
}

func TestText2ImageRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), Text2ImageFile)
	want := validText2Image()
	if err := WriteText2Image(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadText2Image(path)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want || got.Codes() != 16 || got.SequenceLength() != 24+1+16 {
		t.Errorf("read back %+v (codes %d, sequence %d)", got, got.Codes(), got.SequenceLength())
	}
}

func TestText2ImageErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		edit func(*Text2Image)
		want string
	}{
		{func(f *Text2Image) { f.Format = "v2" }, `format "v2"`},
		{func(f *Text2Image) { f.VAE = "" }, "vae"},
		{func(f *Text2Image) { f.Codebook = "" }, "codebook"},
		{func(f *Text2Image) { f.PrefixLength = 0 }, "prefix_length 0"},
		{func(f *Text2Image) { f.ImageMarkerID = f.PadID }, "image_marker_id 100: want ≥ 0 and not pad_id"},
		{func(f *Text2Image) { f.CodebookSize = 0 }, "codebook_size 0"},
		{func(f *Text2Image) { f.CodeOffset = 90 }, "code_offset 90: codes [90, 106) overlap pad_id or image_marker_id"},
		{func(f *Text2Image) { f.LatentShape[1] = 0 }, "latent_shape [4 0 4]"},
		{func(f *Text2Image) { f.Order = "zigzag" }, `order "zigzag"`},
		{func(f *Text2Image) { f.LatentSpace = "scaled" }, `latent_space "scaled"`},
		{func(f *Text2Image) { f.NullCaption = "eos" }, `null_caption "eos"`},
	} {
		f := validText2Image()
		c.edit(f)
		if err := f.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err %v, want it to say %q", err, c.want)
		}
	}
	path := filepath.Join(t.TempDir(), Text2ImageFile)
	os.WriteFile(path, []byte(`{"format": "modelrt-text2image/v1", "prefix_length": "24"}`), 0o644)
	if _, err := ReadText2Image(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "prefix_length") {
		t.Errorf("wrong type: %v", err)
	}
}

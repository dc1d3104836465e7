package text2image

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/plugins/native/backend"
	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

const fixture = "../../testdata/models/glyph-prior-tiny"

func loadFixture(t *testing.T) *Model {
	t.Helper()
	m, err := Load(fixture, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openNative(t *testing.T, m *Model) *Pipeline {
	t.Helper()
	p, err := Open(context.Background(), backend.New(), m, "prior", "vae")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFixture(t *testing.T) {
	m := loadFixture(t)
	if w, h := m.NativeSize(); w != 16 || h != 16 || m.Downsample != 2 {
		t.Errorf("native size %dx%d, f %d; want 16x16 from vae-tiny's 8×8 latent and f = 2", w, h, m.Downsample)
	}
	if len(m.Codebook) != 16*4 || m.VocabSize != 290 {
		t.Errorf("codebook %d values, vocab %d", len(m.Codebook), m.VocabSize)
	}
	ids, norm, n, err := m.Prompt("  The   letter A ")
	if err != nil {
		t.Fatal(err)
	}
	if norm != "the letter A" || len(ids) != 25 || ids[24] != 273 || ids[n] != 272 || ids[23] != 272 {
		t.Errorf("prompt %v (%d caption tokens) for %q", ids, n, norm)
	}
	if got := m.Tok.Decode(ids[:n]); got != norm {
		t.Errorf("caption ids decode to %q", got)
	}
	null := m.NullPrompt()
	if len(null) != 25 || null[24] != 273 || slices.ContainsFunc(null[:24], func(id int) bool { return id != 272 }) {
		t.Errorf("null prompt %v", null)
	}
}

func TestLatentsRasterOrder(t *testing.T) {
	m := loadFixture(t)
	codes := make([]int, 64)
	codes[1*8+3] = 5 // (h, w) = (1, 3)
	z, shape, err := m.Latents([][]int{codes})
	if err != nil {
		t.Fatal(err)
	}
	if shape != [4]int{1, 4, 8, 8} {
		t.Fatalf("shape %v", shape)
	}
	for c := range 4 {
		if got, want := z[c*64+1*8+3], m.Codebook[5*4+c]; got != want {
			t.Errorf("latent[0,%d,1,3] = %v, want codebook[5][%d] = %v", c, got, c, want)
		}
		if got, want := z[c*64], m.Codebook[c]; got != want {
			t.Errorf("latent[0,%d,0,0] = %v, want codebook[0][%d] = %v", c, got, c, want)
		}
	}
	if _, _, err := m.Latents([][]int{codes[:63]}); err == nil {
		t.Error("63 codes accepted")
	}
	codes[0] = 16
	if _, _, err := m.Latents([][]int{codes}); err == nil {
		t.Error("code 16 accepted in a codebook of 16")
	}
}

// copyFixture copies the fixture to a temporary directory, with "vae" made absolute-free:
// the copy's text2image.json points at the real vae-tiny through a relative path.
func copyFixture(t *testing.T, edit func(dir string, f *sdk.Text2Image)) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"config.json", "model.safetensors", "vocab.json", "merges.txt", "codebook.safetensors"} {
		data, err := os.ReadFile(filepath.Join(fixture, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := sdk.ReadText2Image(filepath.Join(fixture, sdk.Text2ImageFile))
	if err != nil {
		t.Fatal(err)
	}
	vae, err := filepath.Abs(filepath.Join(fixture, f.VAE))
	if err != nil {
		t.Fatal(err)
	}
	if f.VAE, err = filepath.Rel(dir, vae); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(dir, f)
	}
	if err := sdk.WriteText2Image(filepath.Join(dir, sdk.Text2ImageFile), f); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadErrors(t *testing.T) {
	writeCodebook := func(dir string, k, c int) {
		err := safetensors.WriteFile(filepath.Join(dir, "codebook.safetensors"),
			[]safetensors.Tensor{{Name: "codebook", DType: safetensors.F32, Shape: []int{k, c}, F32: make([]float32, k*c)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		edit func(dir string, f *sdk.Text2Image)
		want string
	}{
		{"missing codebook", func(dir string, f *sdk.Text2Image) { f.Codebook = "nope.safetensors" }, `codebook "nope.safetensors"`},
		{"codebook rows", func(dir string, f *sdk.Text2Image) { writeCodebook(dir, 15, 4) }, "has shape [15 4], want [codebook_size, latent channels] = [16, 4]"},
		{"codebook channels vs VAE", func(dir string, f *sdk.Text2Image) {
			writeCodebook(dir, 16, 3)
			f.LatentShape[0] = 3
		}, "holds vectors of 3 channels, but the VAE"},
		{"VAE missing", func(dir string, f *sdk.Text2Image) { f.VAE = "../no-such-vae" }, `vae "../no-such-vae": VAE directory`},
		{"codes not last", func(dir string, f *sdk.Text2Image) { f.CodeOffset--; f.ImageMarkerID--; f.PadID-- }, "they must be the last ids"},
	} {
		dir := copyFixture(t, c.edit)
		_, err := Load(dir, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want it to say %q", c.name, err, c.want)
		}
	}
	if _, err := Load(t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), "has no text2image.json") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := Load(fixture, filepath.Join(fixture, "nope")); err == nil || !strings.Contains(err.Error(), "--vae: VAE directory") {
		t.Errorf("--vae to nowhere: %v", err)
	}
	dir := copyFixture(t, nil)
	os.WriteFile(filepath.Join(dir, sdk.Text2ImageFile), []byte(`{"format": "modelrt-text2image/v1", "vae": "x", "codebook": "c", "prefix_length": 0}`), 0o644)
	if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "text2image.json: text2image: prefix_length 0") {
		t.Errorf("prefix_length 0: %v", err)
	}
}

func TestRequestErrors(t *testing.T) {
	m := loadFixture(t)
	p := openNative(t, m)
	long := "the capital letter A, bold light italic serif sans mono condensed"
	ids := m.Tok.EncodeOrdinary(long)
	for _, c := range []struct {
		name    string
		caption string
		mod     func(*Options)
		want    string
	}{
		{"empty caption", "  ", nil, "caption is empty"},
		{"long caption", long, nil, "caption is " + strconv.Itoa(len(ids)) + " tokens; the model's prefix holds 24"},
		{"n 0", "the letter A", func(o *Options) { o.N = 0 }, "n 0: want 1 to 10"},
		{"n 11", "the letter A", func(o *Options) { o.N = 11 }, "n 11: want 1 to 10"},
		{"guidance", "the letter A", func(o *Options) { o.Guidance = -0.5 }, "guidance -0.5"},
		{"temperature", "the letter A", func(o *Options) { o.Temperature = -1 }, "temperature"},
	} {
		o := DefaultOptions()
		if c.mod != nil {
			c.mod(&o)
		}
		_, err := p.Generate(context.Background(), c.caption, o)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want ErrInvalid saying %q", c.name, err, c.want)
		}
	}
	if len(ids) <= 24 {
		t.Fatalf("the long caption is %d tokens: it does not test the prefix", len(ids))
	}
	for _, sz := range [][2]int{{16, 16}, {32, 32}, {64, 64}} {
		if k, err := m.ScaleFor(sz[0], sz[1]); err != nil || k != sz[0]/16 {
			t.Errorf("ScaleFor(%v) = %d, %v", sz, k, err)
		}
	}
	for _, sz := range [][2]int{{24, 24}, {32, 16}, {8, 8}, {0, 0}} {
		if _, err := m.ScaleFor(sz[0], sz[1]); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "draws 16x16") {
			t.Errorf("ScaleFor(%v): err %v", sz, err)
		}
	}
}

func TestGenerateEndToEnd(t *testing.T) {
	m := loadFixture(t)
	p := openNative(t, m)
	gen := func(caption string, o Options) *Result {
		t.Helper()
		res, err := p.Generate(context.Background(), caption, o)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	o := DefaultOptions()
	o.N, o.Seed, o.Guidance, o.TopK = 3, 40, 3, 8
	res := gen("the letter A, bold", o)
	if res.Caption != "the letter A, bold" || len(res.Codes) != 3 || len(res.Images) != 3 {
		t.Fatalf("caption %q, %d code rows, %d images", res.Caption, len(res.Codes), len(res.Images))
	}
	for i, codes := range res.Codes {
		if len(codes) != 64 || slices.ContainsFunc(codes, func(c int) bool { return c < 0 || c >= 16 }) {
			t.Errorf("image %d codes %v", i, codes)
		}
		if b := res.Images[i].Bounds(); b.Dx() != 16 || b.Dy() != 16 {
			t.Errorf("image %d is %v", i, b)
		}
	}
	if distinct := len(slices.Compact(slices.Sorted(slices.Values(res.Codes[0])))); distinct < 4 {
		t.Errorf("image 0 uses %d distinct codes of 16: %v", distinct, res.Codes[0])
	}
	if slices.Equal(res.Codes[0], res.Codes[1]) {
		t.Error("images 0 and 1 drew the same codes: seeds do not differ per image")
	}
	// Image r does not depend on its batch: alone with seed+r it is the same.
	alone := o
	alone.N, alone.Seed = 1, o.Seed+2
	one := gen("the letter A, bold", alone)
	if !slices.Equal(one.Codes[0], res.Codes[2]) {
		t.Errorf("image 2 of 3: %v\nalone with seed+2: %v", res.Codes[2], one.Codes[0])
	}
	if !samePixels(one.Images[0], res.Images[2]) {
		t.Error("image 2 of the batch and alone decode differently")
	}
	// Guidance and the caption change the draws.
	unguided := o
	unguided.Guidance = 1
	u, other := gen("the letter A, bold", unguided), gen("the digit 7", o)
	if slices.Equal(u.Codes[0], res.Codes[0]) || slices.Equal(other.Codes[0], res.Codes[0]) {
		t.Error("guidance 1 or another caption drew the same codes as guidance 3")
	}
	// Upscaling repeats pixels.
	big := alone
	big.Scale = 3
	b3 := gen("the letter A, bold", big)
	img, small := b3.Images[0], one.Images[0]
	if img.Bounds().Dx() != 48 {
		t.Fatalf("upscaled image is %v", img.Bounds())
	}
	for y := range 48 {
		for x := range 48 {
			if img.At(x, y) != toNRGBA(small.At(x/3, y/3)) {
				t.Fatalf("pixel (%d,%d) %v, want (%d,%d) of the native image %v", x, y, img.At(x, y), x/3, y/3, small.At(x/3, y/3))
			}
		}
	}
}

func toNRGBA(c interface{ RGBA() (r, g, b, a uint32) }) any {
	return image.NewNRGBA(image.Rect(0, 0, 1, 1)).ColorModel().Convert(c)
}

func samePixels(a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				return false
			}
		}
	}
	return true
}

package imageio

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/sdk"
)

// exactTol bounds float error of the 8-bit ↔ [-1,1] mapping (float32 rounding only).
const exactTol = 1e-6

// jpegTol bounds the per-value error of a JPEG round trip at quality 100 on a smooth image, in
// [-1,1] units (about 13 8-bit steps: 4:2:0 chroma and 8×8 blocks).
const jpegTol = 0.1

func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var maxAbs float64
	first := -1
	for i := range want {
		d := math.Abs(float64(got[i] - want[i]))
		if d > maxAbs {
			maxAbs = d
		}
		if d > tol && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		t.Errorf("%s: max abs err %.3g (tol %g); first mismatch [%d] got %g want %g", what, maxAbs, tol, first, got[first], want[first])
	}
}

// gradient is a w×h NRGBA image whose channels are distinct functions of x and y.
func gradient(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(255 * x / max(1, w-1)), G: uint8(255 * y / max(1, h-1)), B: uint8((x*7 + y*13) % 256), A: 255})
		}
	}
	return img
}

// TestEveryByteRoundTrips: p ↦ p/127.5−1 ↦ p for all 256 values, through PNG.
func TestEveryByteRoundTrips(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 256, 1))
	want := make([]float32, 256)
	for i := range 256 {
		img.Pix[i] = uint8(i)
		want[i] = float32(i)/127.5 - 1
	}
	got, err := ToTensor(nil, img, 1)
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "gray to tensor", got, want, exactTol)
	back, err := FromTensor(got, 1, 1, 256)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, back); err != nil {
		t.Fatal(err)
	}
	dec, err := Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec.(*image.Gray).Pix, img.Pix) {
		t.Errorf("gray PNG round trip changed pixels")
	}
	rgb, err := ToTensor(nil, dec, 3)
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "gray as RGB", rgb, append(append(append([]float32(nil), want...), want...), want...), exactTol)
}

func TestFromTensorClampsAndRounds(t *testing.T) {
	in := []float32{-2, -1, 1, 2, float32(math.NaN()), 0, 1.0/127.5 - 1 + 0.003, float32(math.Inf(1))}
	img, err := FromTensor(in, 1, 1, len(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{0, 0, 255, 255, 0, 128, 1, 255} // 0 ↦ 127.5 rounds half away from zero
	if got := img.(*image.Gray).Pix; !bytes.Equal(got, want) {
		t.Errorf("pixels %v, want %v", got, want)
	}
}

func TestRGBRoundTripAndChannels(t *testing.T) {
	src := gradient(7, 5)
	x, err := ToTensor(nil, src, 3)
	if err != nil {
		t.Fatal(err)
	}
	if x[0*35+6] != 1 || x[1*35+34] != 1 || x[0] != -1 { // R max at x=6, G max at y=4
		t.Errorf("channel planes misplaced: R[0,6]=%g G[4,6]=%g R[0,0]=%g", x[6], x[35+34], x[0])
	}
	img, err := FromTensor(x, 3, 5, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.(*image.NRGBA).Pix, src.Pix) {
		t.Errorf("RGB round trip changed pixels")
	}
	// Appends to dst: a batch is consecutive tensors.
	two, _ := ToTensor(x, src, 3)
	closeTo(t, "second image in batch", two[len(x):], x, 0)
}

// TestAlpha: transparency composites over white for 1 and 3 channels and survives as a fourth
// channel.
func TestAlpha(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	img.SetNRGBA(0, 0, color.NRGBA{255, 0, 0, 0})   // fully transparent red → white
	img.SetNRGBA(1, 0, color.NRGBA{0, 0, 0, 255})   // opaque black
	img.SetNRGBA(2, 0, color.NRGBA{255, 0, 0, 128}) // half red over white → (255, 127, 127)
	rgb, err := ToTensor(nil, img, 3)
	if err != nil {
		t.Fatal(err)
	}
	half := float32(127)/127.5 - 1
	closeTo(t, "over white", rgb, []float32{1, -1, 1, 1, -1, half, 1, -1, half}, 0.01)
	rgba, err := ToTensor(nil, img, 4)
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "alpha plane", rgba[9:], []float32{-1, 1, float32(128)/127.5 - 1}, exactTol)
	gray, err := ToTensor(nil, img, 1)
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "gray over white", gray[:2], []float32{1, -1}, exactTol)
	back, err := FromTensor(rgba, 4, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if a := back.(*image.NRGBA).Pix[4*2+3]; a != 128 {
		t.Errorf("alpha %d, want 128", a)
	}
}

func TestJPEG(t *testing.T) {
	src := gradient(32, 24)
	for i := 2; i < len(src.Pix); i += 4 {
		src.Pix[i] = 128 // smooth chroma: JPEG subsamples it
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "g.jpg")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := ToTensor(nil, img, 3)
	want, _ := ToTensor(nil, src, 3)
	closeTo(t, "JPEG q100", got, want, jpegTol)
}

// TestResize: Catmull-Rom keeps a constant image constant, keeps a ramp's mean, and gives the
// requested non-square size.
func TestResize(t *testing.T) {
	flat := image.NewNRGBA(image.Rect(0, 0, 10, 6))
	for i := 0; i < len(flat.Pix); i += 4 {
		copy(flat.Pix[i:], []uint8{40, 90, 200, 255})
	}
	r, err := Resize(flat, 4, 9)
	if err != nil {
		t.Fatal(err)
	}
	if r.Bounds().Dx() != 4 || r.Bounds().Dy() != 9 {
		t.Fatalf("size %v", r.Bounds())
	}
	for i := 0; i < len(r.Pix); i += 4 {
		if !bytes.Equal(r.Pix[i:i+4], []uint8{40, 90, 200, 255}) {
			t.Fatalf("constant image changed at %d: %v", i/4, r.Pix[i:i+4])
		}
	}
	src := gradient(64, 64)
	half, err := Resize(src, 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	mean := func(img image.Image) float64 {
		x, _ := ToTensor(nil, img, 3)
		s := 0.0
		for _, v := range x[:len(x)/3] { // R plane, a ramp in x
			s += float64(v)
		}
		return s / float64(len(x)/3)
	}
	if d := math.Abs(mean(half) - mean(src)); d > 0.01 {
		t.Errorf("ramp mean moved by %g", d)
	}
	if _, err := Resize(src, 0, 3); !errors.Is(err, ErrShape) {
		t.Errorf("resize to 0×3: %v", err)
	}
}

func TestFloorMultiple(t *testing.T) {
	for _, c := range []struct{ w, h, f, ww, wh int }{{17, 33, 8, 16, 32}, {16, 16, 8, 16, 16}, {5, 100, 8, 8, 96}} {
		if w, h := FloorMultiple(c.w, c.h, c.f); w != c.ww || h != c.wh {
			t.Errorf("FloorMultiple(%d,%d,%d) = %d,%d", c.w, c.h, c.f, w, h)
		}
	}
}

func TestGrid(t *testing.T) {
	a, b := image.NewGray(image.Rect(0, 0, 2, 3)), image.NewGray(image.Rect(0, 0, 2, 3))
	for i := range b.Pix {
		b.Pix[i] = 200
	}
	g, err := Grid([]image.Image{a, b, b}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if g.Bounds() != image.Rect(0, 0, 4, 6) {
		t.Fatalf("bounds %v", g.Bounds())
	}
	if r, _, _, _ := g.At(3, 0).RGBA(); r>>8 != 200 {
		t.Errorf("cell 1 not at the right of cell 0")
	}
	if r, _, _, _ := g.At(0, 4).RGBA(); r>>8 != 200 {
		t.Errorf("cell 2 not below cell 0")
	}
	if _, err := Grid([]image.Image{a, image.NewGray(image.Rect(0, 0, 3, 3))}, 2); !errors.Is(err, ErrShape) {
		t.Errorf("mixed sizes: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "notes.png")
	os.WriteFile(bad, []byte("this is not a picture"), 0o644)
	if _, err := Load(bad); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load(text) = %v; want ErrDecode naming %s", err, bad)
	}
	var buf bytes.Buffer
	png.Encode(&buf, gradient(8, 8))
	trunc := filepath.Join(dir, "trunc.png")
	os.WriteFile(trunc, buf.Bytes()[:buf.Len()/2], 0o644)
	if _, err := Load(trunc); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "trunc.png") {
		t.Errorf("Load(truncated) = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.png")); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("Load(missing) = %v", err)
	}
	if _, err := ToTensor(nil, gradient(2, 2), 2); !errors.Is(err, ErrShape) {
		t.Errorf("2 channels: %v", err)
	}
	if _, err := FromTensor(make([]float32, 5*4), 5, 2, 2); !errors.Is(err, ErrShape) {
		t.Errorf("5 channels: %v", err)
	}
	if _, err := FromTensor(make([]float32, 3), 3, 2, 2); !errors.Is(err, ErrShape) {
		t.Errorf("short data: %v", err)
	}
}

// FuzzDecode: arbitrary bytes either decode to an image that converts to a tensor and back, or
// fail with ErrDecode; nothing panics and huge headers are refused before allocation.
func FuzzDecode(f *testing.F) {
	var p, j bytes.Buffer
	png.Encode(&p, gradient(3, 2))
	jpeg.Encode(&j, gradient(3, 2), nil)
	f.Add(p.Bytes())
	f.Add(j.Bytes())
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add([]byte{0xff, 0xd8, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			return
		}
		b := img.Bounds()
		if b.Dx()*b.Dy() > 1<<16 {
			return // valid but large; conversion is not what this fuzzes
		}
		x, err := ToTensor(nil, img, 3)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := FromTensor(x, 3, b.Dy(), b.Dx()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFromBatch(t *testing.T) {
	// Three 1-channel 2×3 images: values −1, 0, 1 (pixels 0, 128, 255).
	v := make([]float32, 3*6)
	for i := range v {
		v[i] = float32(i/6) - 1
	}
	batch := sdk.FromFloat32([]int64{3, 1, 3, 2}, v)
	for _, c := range []struct {
		cols int
		size image.Point
	}{{0, image.Pt(4, 6)}, {OneRow, image.Pt(6, 3)}, {1, image.Pt(2, 9)}} {
		img, err := FromBatch(batch, c.cols)
		if err != nil {
			t.Fatal(err)
		}
		if img.Bounds().Size() != c.size {
			t.Errorf("cols %d: grid of %v, want %v", c.cols, img.Bounds().Size(), c.size)
		}
	}
	one, err := FromBatch(sdk.FromFloat32([]int64{1, 1, 3, 2}, v[12:]), 0)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := one.(*image.Gray); !ok || g.Bounds().Size() != image.Pt(2, 3) || g.Pix[0] != 255 {
		t.Errorf("a batch of one: %T %v, want the 2×3 gray image itself", one, one.Bounds())
	}
	for _, bad := range []*sdk.Tensor{sdk.FromFloat32([]int64{6, 3}, v), sdk.FromFloat32([]int64{1, 2, 3, 3}, v)} {
		if _, err := FromBatch(bad, 0); !errors.Is(err, ErrShape) {
			t.Errorf("shape %v: err = %v, want ErrShape", bad.Shape, err)
		}
	}
}

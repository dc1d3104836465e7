// Package imageio moves images between files and the float32 NCHW tensors of the VAE tasks: it
// decodes PNG and JPEG, resizes with a Catmull-Rom filter (golang.org/x/image/draw), converts
// pixels to [-1,1] and back, and writes PNG.
//
// Pixel mapping: a channel value p in 0..255 becomes x = p/127.5 − 1, and back
// p = round((x+1)·127.5) clamped to 0..255, so 0 ↦ −1 and 255 ↦ 1 exactly.
// Alpha: images with transparency are composited over white before conversion to 1 or 3
// channels (a transparent pixel reads as white, as most viewers show it); 4-channel tensors keep
// the alpha channel unpremultiplied instead. Grayscale images give three equal channels to a
// 3-channel model and their luminance to a 1-channel one.
package imageio

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // register the JPEG decoder
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"

	xdraw "golang.org/x/image/draw"

	"github.com/modelrt/modelrt/sdk"
)

// Sentinel errors; returned errors wrap one of them.
var (
	// ErrDecode marks a file that is not a PNG or JPEG image, or a corrupt one.
	ErrDecode = errors.New("imageio: cannot decode image")
	// ErrShape marks a tensor or size that cannot be an image here.
	ErrShape = errors.New("imageio: bad shape")
)

// MaxPixels bounds width·height of a decoded image (checked from the header before the pixels
// are decoded), so that a hostile header cannot make the decoder allocate gigabytes.
const MaxPixels = 1 << 26

// Load decodes the PNG or JPEG file at path. Errors name the file.
func Load(path string) (image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("imageio: %w", err)
	}
	img, err := Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// Decode decodes a PNG or JPEG image from r; errors wrap ErrDecode.
func Decode(r io.ReadSeeker) (image.Image, error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (want PNG or JPEG)", ErrDecode, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("%w: %s of %d×%d pixels (at most %d pixels)", ErrDecode, format, cfg.Width, cfg.Height, MaxPixels)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("imageio: %w", err)
	}
	img, _, err := image.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDecode, format, err)
	}
	return img, nil
}

// Resize returns img scaled to w×h with the Catmull-Rom filter (bicubic, a = −0.5), which
// anti-aliases when shrinking. The result is premultiplied RGBA.
func Resize(img image.Image, w, h int) (*image.RGBA, error) {
	if w <= 0 || h <= 0 || int64(w)*int64(h) > MaxPixels {
		return nil, fmt.Errorf("%w: resize to %d×%d", ErrShape, w, h)
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.CatmullRom.Scale(dst, dst.Bounds(), img, img.Bounds(), draw.Src, nil)
	return dst, nil
}

// FloorMultiple returns w and h rounded down to multiples of f (at least f each): the size that
// --fit resizes an image to so that a VAE with downsampling factor f can encode it.
func FloorMultiple(w, h, f int) (int, int) {
	return max(f, w/f*f), max(f, h/f*f)
}

// ToTensor converts img to a (channels, H, W) float32 tensor in [-1,1] (row-major, channel
// planes), appended to dst. channels is 1 (luminance), 3 (RGB) or 4 (RGBA, unpremultiplied).
func ToTensor(dst []float32, img image.Image, channels int) ([]float32, error) {
	if channels != 1 && channels != 3 && channels != 4 {
		return nil, fmt.Errorf("%w: %d channels: images convert to 1 (gray), 3 (RGB) or 4 (RGBA)", ErrShape, channels)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	plane := w * h
	start := len(dst)
	dst = append(dst, make([]float32, channels*plane)...)
	out := dst[start:]
	const m = 0xffff
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			r, g, bl, a := img.At(b.Min.X+x, b.Min.Y+y).RGBA() // premultiplied, 16-bit
			if channels == 4 {
				n := color.NRGBAModel.Convert(color.RGBA64{R: uint16(r), G: uint16(g), B: uint16(bl), A: uint16(a)}).(color.NRGBA)
				out[i], out[plane+i], out[2*plane+i], out[3*plane+i] = unit8(n.R), unit8(n.G), unit8(n.B), unit8(n.A)
				continue
			}
			// Over white: c + (1 − α)·1 in premultiplied terms.
			r, g, bl = r+m-a, g+m-a, bl+m-a
			if channels == 1 {
				// ITU-R 601 luma, as image/color's GrayModel.
				l := (19595*r + 38470*g + 7471*bl + 1<<15) >> 16
				out[i] = unit16(l)
				continue
			}
			out[i], out[plane+i], out[2*plane+i] = unit16(r), unit16(g), unit16(bl)
		}
	}
	return dst, nil
}

func unit8(v uint8) float32   { return float32(v)/127.5 - 1 }
func unit16(v uint32) float32 { return float32(float64(v)/(0xffff/2.0) - 1) }

// toByte maps x in [-1,1] to 0..255: round((x+1)·127.5), clamped; NaN becomes 0.
func toByte(x float32) uint8 {
	v := math.Round((float64(x) + 1) * 127.5)
	if !(v > 0) {
		return 0
	}
	return uint8(min(v, 255))
}

// FromTensor converts one (C,H,W) tensor in [-1,1] to an image: C = 1 gives Gray, 3 opaque
// NRGBA, 4 NRGBA with the fourth channel as alpha. Values are clamped, then rounded.
func FromTensor(data []float32, c, h, w int) (image.Image, error) {
	switch {
	case h <= 0 || w <= 0:
		return nil, fmt.Errorf("%w: image of %d×%d", ErrShape, w, h)
	case c != 1 && c != 3 && c != 4:
		return nil, fmt.Errorf("%w: %d channels: only 1 (gray), 3 (RGB) or 4 (RGBA) make an image", ErrShape, c)
	case len(data) != c*h*w:
		return nil, fmt.Errorf("%w: %d values for (%d,%d,%d)", ErrShape, len(data), c, h, w)
	}
	plane := h * w
	if c == 1 {
		g := image.NewGray(image.Rect(0, 0, w, h))
		for i := range plane {
			g.Pix[i] = toByte(data[i])
		}
		return g, nil
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range plane {
		p := img.Pix[4*i : 4*i+4]
		p[0], p[1], p[2], p[3] = toByte(data[i]), toByte(data[plane+i]), toByte(data[2*plane+i]), 255
		if c == 4 {
			p[3] = toByte(data[3*plane+i])
		}
	}
	return img, nil
}

// Grid lays out equally sized images in rows of cols, left to right, top to bottom; the last row
// may be short (its gap is black).
func Grid(imgs []image.Image, cols int) (image.Image, error) {
	if len(imgs) == 0 || cols <= 0 {
		return nil, fmt.Errorf("%w: grid of %d images in %d columns", ErrShape, len(imgs), cols)
	}
	cols = min(cols, len(imgs))
	cell := imgs[0].Bounds().Size()
	rows := (len(imgs) + cols - 1) / cols
	out := image.NewNRGBA(image.Rect(0, 0, cols*cell.X, rows*cell.Y))
	for i, img := range imgs {
		if img.Bounds().Size() != cell {
			return nil, fmt.Errorf("%w: grid image %d is %v, image 0 is %v", ErrShape, i, img.Bounds().Size(), cell)
		}
		at := image.Pt(i%cols*cell.X, i/cols*cell.Y)
		draw.Draw(out, image.Rectangle{Min: at, Max: at.Add(cell)}, img, img.Bounds().Min, draw.Src)
	}
	return out, nil
}

// OneRow is the column count that lays any batch out in one row (FromBatch, Grid).
const OneRow = math.MaxInt32

// FromBatch converts a (B,C,H,W) float32 tensor in [-1,1] to one image: the image itself when
// B = 1, else a Grid of the B images in cols columns (cols <= 0: ⌈√B⌉ columns, as square as it
// gets; OneRow: one row).
func FromBatch(t *sdk.Tensor, cols int) (image.Image, error) {
	if len(t.Shape) != 4 || t.Shape[0] <= 0 {
		return nil, fmt.Errorf("%w: want a (B,C,H,W) tensor, have shape %v", ErrShape, t.Shape)
	}
	v, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	b, c, h, w := int(t.Shape[0]), int(t.Shape[1]), int(t.Shape[2]), int(t.Shape[3])
	imgs := make([]image.Image, b)
	for i := range b {
		if imgs[i], err = FromTensor(v[i*c*h*w:(i+1)*c*h*w], c, h, w); err != nil {
			return nil, err
		}
	}
	if b == 1 {
		return imgs[0], nil
	}
	if cols <= 0 {
		for cols = 1; cols*cols < b; cols++ {
		}
	}
	return Grid(imgs, cols)
}

// SavePNG writes img to path as PNG, atomically: it writes a temporary file beside path and
// renames it, so that runs saving to one path at once (a daemon's concurrent requests) each
// leave a whole image, never two interleaved, and a reader never sees half of one.
func SavePNG(path string, img image.Image) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("imageio: %w", err)
	}
	tmp := f.Name()
	err = png.Encode(f, img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("imageio: write %s: %w", path, err)
	}
	return nil
}

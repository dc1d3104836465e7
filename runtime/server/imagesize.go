package server

import (
	"bytes"
	"image"
	"net/http"
	"strconv"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/engine"
)

// Image sizes. A VAE's work and memory grow with the pixels it is given: a 4.5 KB PNG of
// 1024×1024 cost a tiny VAE 23 s and 1.3 GB, and an 8191² PNG made the host alone take 2 GB. So
// every image a request gives a model — an upload, or a v2 image or latent tensor — has a
// largest side: the model's training size (its sample_size) times Options.MaxImageFactor, or
// Options.MaxImageSide for a model that declares none. Uploads are checked from their header
// (image.DecodeConfig) and decoded only by the pipeline's image.load stage, after admission.
const (
	DefaultMaxImageFactor = 4
	DefaultMaxImageSide   = 2048
)

// imageLimits is what an image given to a model may be: at most maxSide pixels a side, and
// sides divisible by multiple.
type imageLimits struct {
	maxSide, multiple int
	model             string
}

func metaInt(m *engine.Model, key string) int {
	n, err := strconv.Atoi(m.Info.Metadata[key])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// modelImageLimits returns the limits of the images model m takes.
func (s *Server) modelImageLimits(m *engine.Model) imageLimits {
	l := imageLimits{maxSide: s.opts.MaxImageSide, multiple: max(1, metaInt(m, "downsample_factor")), model: m.Name}
	if n := metaInt(m, "sample_size"); n > 0 {
		l.maxSide = n * s.opts.MaxImageFactor
	}
	return l
}

// pipelineImageLimits returns the limits of an image uploaded to p: the largest side any of
// its VAE models takes, and — when it encodes images — the largest downsampling factor.
func (s *Server) pipelineImageLimits(e *engine.Engine, p *pipelines.Pipeline) imageLimits {
	l := imageLimits{multiple: 1}
	encodes := false
	for _, st := range p.Stages {
		encodes = encodes || st.Use == "vae.encode"
	}
	for _, name := range p.ModelNames() {
		m := e.Model(name)
		if m == nil || m.Task != pipelines.TaskVAE {
			continue
		}
		ml := s.modelImageLimits(m)
		if ml.maxSide > l.maxSide {
			l.maxSide, l.model = ml.maxSide, m.Name
		}
		if encodes {
			l.multiple = max(l.multiple, ml.multiple)
		}
	}
	if l.maxSide == 0 {
		l.maxSide = s.opts.MaxImageSide
	}
	return l
}

// checkSides refuses an image of w×h beyond the limits, naming what.
func (l imageLimits) checkSides(what string, w, h int64) error {
	if w <= 0 || h <= 0 {
		return errorf(http.StatusBadRequest, "invalid_input", "%s: an image of %d×%d pixels", what, w, h)
	}
	if w > int64(l.maxSide) || h > int64(l.maxSide) {
		by := ""
		if l.model != "" {
			by = " for model " + strconv.Quote(l.model)
		}
		return errorf(http.StatusBadRequest, "image_too_large", "%s: an image of %d×%d pixels; at most %d pixels a side%s (--max-image-factor times its sample_size, or --max-image-side)", what, w, h, l.maxSide, by)
	}
	if w%int64(l.multiple) != 0 || h%int64(l.multiple) != 0 {
		return errorf(http.StatusBadRequest, "invalid_input", "%s: an image of %d×%d pixels; model %q needs sides divisible by %d", what, w, h, l.model, l.multiple)
	}
	return nil
}

// checkImageHeader reads the header of an uploaded image: a PNG or JPEG within the limits.
func checkImageHeader(name string, b []byte, l imageLimits) error {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil || format != "png" && format != "jpeg" {
		if err == nil {
			err = errorf(http.StatusBadRequest, "invalid_input", "%s data", format)
		}
		return errorf(http.StatusBadRequest, "invalid_input", "input %q: cannot decode image: %v (want PNG or JPEG)", name, err)
	}
	return l.checkSides("input "+strconv.Quote(name), int64(cfg.Width), int64(cfg.Height))
}

// checkV2Images checks the image and latent tensors of a v2 request to a VAE against its
// limits before admission: an image's sides, a latent's sides times the downsampling factor
// (the image the decoder makes of it), and the batch against Options.MaxBatch.
func (s *Server) checkV2Images(m *engine.Model, inputs []v2Tensor) error {
	if m.Task != pipelines.TaskVAE {
		return nil
	}
	l := s.modelImageLimits(m)
	for _, in := range inputs {
		if in.Name != "image" && in.Name != "latent" || len(in.Shape) != 4 {
			continue // another rank is refused with the rest of the tensor's checks
		}
		if in.Shape[0] < 1 || in.Shape[0] > int64(s.opts.MaxBatch) {
			return badInput(in.Name, "shape %v: a batch of %d; at most %d (--max-batch)", in.Shape, in.Shape[0], s.opts.MaxBatch)
		}
		h, w := in.Shape[2], in.Shape[3]
		if h <= 0 || w <= 0 {
			return badInput(in.Name, "shape %v: height and width must be positive", in.Shape)
		}
		if in.Name == "image" {
			if err := l.checkSides("input \"image\"", w, h); err != nil {
				return err
			}
			continue
		}
		f := int64(l.multiple)
		if h > int64(l.maxSide)/f || w > int64(l.maxSide)/f {
			return errorf(http.StatusBadRequest, "image_too_large", "input \"latent\": shape %v: at most %d latent pixels a side for model %q (it decodes each to %d×%d image pixels, and images are limited to %d a side: --max-image-factor times its sample_size, or --max-image-side)", in.Shape, int64(l.maxSide)/f, m.Name, f, f, l.maxSide)
		}
	}
	return nil
}

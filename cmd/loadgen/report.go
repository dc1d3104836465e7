package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// report is what -out writes and -before reads.
type report struct {
	URL       string    `json:"url"`
	Model     string    `json:"model"`
	MaxTokens int       `json:"max_tokens"`
	Stream    bool      `json:"stream"`
	Requests  int       `json:"requests_per_level"`
	Rounds    int       `json:"rounds,omitempty"` // > 0: a level sent rounds × concurrency requests
	Label     string    `json:"label,omitempty"`
	Levels    []level   `json:"levels"`
	Newcomer  *newcomer `json:"newcomer,omitempty"`
}

func readReport(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-before: %w", err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("-before %s: %w", path, err)
	}
	if len(r.Levels) == 0 {
		return nil, fmt.Errorf("-before %s: no levels", path)
	}
	return &r, nil
}

// save writes the JSON file and the plot when asked for.
func (r *report) save(out, png string, before *report) error {
	if out != "" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := writeAtomic(out, append(b, '\n')); err != nil {
			return err
		}
	}
	if png == "" {
		return nil
	}
	return r.plot(png, before)
}

// series is one line of the plot: a panel, its legend, the value of a level, a colour index.
type series struct {
	p     *plot.Plot
	label string
	y     func(level) float64
	c     int
}

// plot draws two panels against concurrency: aggregate tokens/s, and p50 latency (time to
// first token and inter-token when streaming, the whole request otherwise); before, when
// given, is drawn dashed beside this run.
func (r *report) plot(path string, before *report) error {
	thr, lat := plot.New(), plot.New()
	thr.Title.Text, thr.X.Label.Text, thr.Y.Label.Text = "throughput", "concurrency", "generated tokens/s"
	lat.Title.Text, lat.X.Label.Text, lat.Y.Label.Text = "latency (p50)", "concurrency", "ms"
	runs := []struct {
		name string
		r    *report
		dash bool
	}{{cmp.Or(r.Label, "after"), r, false}}
	if before != nil {
		runs = append([]struct {
			name string
			r    *report
			dash bool
		}{{cmp.Or(before.Label, "before"), before, true}}, runs...)
	}
	colors := []color.Color{color.RGBA{R: 200, A: 255}, color.RGBA{B: 200, A: 255}, color.RGBA{G: 140, A: 255}}
	for _, run := range runs {
		lines := []series{{thr, "tokens/s", func(l level) float64 { return l.TokensPS }, 0}}
		if run.r.Stream {
			lines = append(lines,
				series{lat, "first token", func(l level) float64 { return l.FirstTokenP50 }, 1},
				series{lat, "inter-token", func(l level) float64 { return l.InterTokenP50 }, 2})
		} else {
			lines = append(lines, series{lat, "request", func(l level) float64 { return l.P50MS }, 1})
		}
		for _, s := range lines {
			xys := make(plotter.XYs, len(run.r.Levels))
			for i, l := range run.r.Levels {
				xys[i] = plotter.XY{X: float64(l.Concurrency), Y: s.y(l)}
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			line.Color, points.Color = colors[s.c], colors[s.c]
			if run.dash {
				line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			s.p.Add(line, points)
			label := s.label
			if len(runs) > 1 {
				label = run.name + ": " + label
			}
			s.p.Legend.Add(label, line, points)
		}
	}
	for _, p := range []*plot.Plot{thr, lat} {
		p.Legend.Top, p.Legend.Left = true, true
		p.Add(plotter.NewGrid())
	}
	img := vgimg.New(11*vg.Inch, 4.5*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 4}
	canvases := plot.Align([][]*plot.Plot{{thr, lat}}, tiles, dc)
	thr.Draw(canvases[0][0])
	lat.Draw(canvases[0][1])
	tmp := path + ".tmp.png"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("-plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".loadgen-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

package conformance

import (
	"fmt"
	"math"
	"strings"
)

// MaxReported is how many mismatching elements a Diff lists.
const MaxReported = 5

// relFloor keeps the relative error of an element whose expected value is (near) zero finite;
// such elements are judged by the absolute tolerance anyway.
const relFloor = 1e-12

// Diff is the outcome of comparing two arrays of the same shape.
type Diff struct {
	N          int     // elements compared
	MaxAbs     float64 // max |got − want|
	MaxRel     float64 // max |got − want| / max(|want|, relFloor)
	Mismatches int     // elements with |got − want| > abs + rel·|want| (or NaN)
	// First lists the first MaxReported mismatches in row-major order.
	First []Mismatch
}

// Mismatch is one element out of tolerance.
type Mismatch struct {
	Index     []int // multi-dimensional index
	Got, Want float64
}

// OK reports whether every element was within tolerance.
func (d Diff) OK() bool { return d.Mismatches == 0 }

func (d Diff) String() string {
	if d.OK() {
		return fmt.Sprintf("%d elements, max abs err %.3g, max rel err %.3g", d.N, d.MaxAbs, d.MaxRel)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d elements out of tolerance; max abs err %.3g, max rel err %.3g; first:", d.Mismatches, d.N, d.MaxAbs, d.MaxRel)
	for _, m := range d.First {
		fmt.Fprintf(&b, " %v got %.9g want %.9g;", m.Index, m.Got, m.Want)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// merge folds o into d (for cases with several outputs).
func (d *Diff) merge(o Diff) {
	d.N += o.N
	d.MaxAbs = max(d.MaxAbs, o.MaxAbs)
	d.MaxRel = max(d.MaxRel, o.MaxRel)
	d.Mismatches += o.Mismatches
	for _, m := range o.First {
		if len(d.First) < MaxReported {
			d.First = append(d.First, m)
		}
	}
}

// atRow reports the mismatches of a one-row comparison (shape (1,…)) as row b of a batch.
func (d Diff) atRow(b int) Diff {
	for i := range d.First {
		d.First[i].Index[0] = b
	}
	return d
}

// CompareFloat compares got with want, both of shape shape (row-major), element by element:
// an element passes when |got − want| ≤ tol.Abs + tol.Rel·|want|. When skip is not nil,
// elements whose flat index it reports true are left out (padding positions). It panics
// when the lengths differ from the shape's: callers check shapes first.
func CompareFloat(got, want []float32, shape []int64, tol Tolerance, skip func(i int) bool) Diff {
	n := 1
	for _, s := range shape {
		n *= int(s)
	}
	if len(got) != n || len(want) != n {
		panic(fmt.Sprintf("conformance: CompareFloat of %d and %d elements with shape %v", len(got), len(want), shape))
	}
	var d Diff
	for i := range n {
		if skip != nil && skip(i) {
			continue
		}
		d.N++
		g, w := float64(got[i]), float64(want[i])
		e := math.Abs(g - w)
		rel := e / math.Max(math.Abs(w), relFloor)
		if math.IsNaN(e) {
			e, rel = math.Inf(1), math.Inf(1)
		}
		d.MaxAbs = max(d.MaxAbs, e)
		d.MaxRel = max(d.MaxRel, rel)
		if !(e <= tol.Abs+tol.Rel*math.Abs(w)) {
			d.Mismatches++
			if len(d.First) < MaxReported {
				d.First = append(d.First, Mismatch{Index: unflatten(i, shape), Got: g, Want: w})
			}
		}
	}
	return d
}

// CompareInt compares integer arrays exactly.
func CompareInt(got, want []int64, shape []int64) Diff {
	var d Diff
	for i := range want {
		d.N++
		if i < len(got) && got[i] == want[i] {
			continue
		}
		g := math.NaN()
		if i < len(got) {
			g = float64(got[i])
			d.MaxAbs = max(d.MaxAbs, math.Abs(g-float64(want[i])))
		}
		d.Mismatches++
		if len(d.First) < MaxReported {
			d.First = append(d.First, Mismatch{Index: unflatten(i, shape), Got: g, Want: float64(want[i])})
		}
	}
	return d
}

// unflatten turns a row-major flat index into a multi-dimensional one.
func unflatten(i int, shape []int64) []int {
	idx := make([]int, len(shape))
	for k := len(shape) - 1; k >= 0; k-- {
		s := int(shape[k])
		if s > 0 {
			idx[k] = i % s
			i /= s
		}
	}
	return idx
}

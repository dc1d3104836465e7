package pipelines

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"
)

// ErrNotKnown is returned when a value needed at run time is unknown or
// null.
var ErrNotKnown = errors.New("pipelines: value is null or not known")

// TokenIDsVal is the cty form of a token id sequence, as stages produce it. Token ids are int
// on the host (runtime/tokenizer, runtime/generate); int64 is accepted too, for ids read from a
// tensor.
func TokenIDsVal[T int | int64](ids []T) cty.Value {
	if len(ids) == 0 {
		return cty.ListValEmpty(cty.Number)
	}
	vals := make([]cty.Value, len(ids))
	for i, id := range ids {
		vals[i] = cty.NumberIntVal(int64(id))
	}
	return cty.ListVal(vals)
}

// AsTokenIDs converts a TokenIDs value (as EvalStage returns it) to ids, int as the host's
// tokenizer and decode loop take them. Every element must be a whole number that fits in int.
func AsTokenIDs(v cty.Value) ([]int, error) {
	ns, err := wholeNumbers(v)
	if err != nil {
		return nil, err
	}
	ids := make([]int, len(ns))
	for i, n := range ns {
		if int64(int(n)) != n {
			return nil, fmt.Errorf("pipelines: token id %d: %d does not fit in an int", i, n)
		}
		ids[i] = int(n)
	}
	return ids, nil
}

// wholeNumbers converts a list of whole numbers that fit in int64.
func wholeNumbers(v cty.Value) ([]int64, error) {
	if v.IsNull() || !v.IsWhollyKnown() {
		return nil, ErrNotKnown
	}
	if !v.Type().IsListType() && !v.Type().IsTupleType() {
		return nil, fmt.Errorf("pipelines: token ids: want a list of numbers, have %s", v.Type().FriendlyName())
	}
	ns := make([]int64, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		n, err := wholeNumber(e)
		if err != nil {
			return nil, fmt.Errorf("pipelines: token id %d: %w", len(ns), err)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

func wholeNumber(v cty.Value) (int64, error) {
	if v.IsNull() || !v.IsKnown() {
		return 0, ErrNotKnown
	}
	if v.Type() != cty.Number {
		return 0, fmt.Errorf("want a number, have %s", v.Type().FriendlyName())
	}
	f := v.AsBigFloat()
	n, acc := f.Int64()
	if !f.IsInt() || acc != big.Exact {
		return 0, fmt.Errorf("%s is not a whole number within int64", f.Text('g', -1))
	}
	return n, nil
}

// TensorArg is one entry of an infer stage's inputs, decoded. Exactly one
// of Payload and Data is set.
type TensorArg struct {
	// Payload is the engine's own tensor from a Tensor (or Image) capsule:
	// an output of another stage.
	Payload any
	// DType ("int64", "float32", …), Shape and row-major Data describe a
	// literal tensor.
	DType string
	Shape []int64
	Data  []float64
}

// DecodeTensorArg decodes one value of infer's inputs. It accepts
//   - a tensor or image from another stage (a capsule): its payload;
//   - a number, or a list of numbers nested to any depth: a tensor whose
//     shape is the nesting ([[1, 2, 3]] is (1,3)) and whose dtype is int64
//     when every element is whole, else float32;
//   - an object { dtype = "...", shape = [...], data = [...] } with flat data
//     whose length is the product of shape.
func DecodeTensorArg(v cty.Value) (TensorArg, error) {
	if v.IsNull() || !v.IsWhollyKnown() {
		return TensorArg{}, ErrNotKnown
	}
	ty := v.Type()
	switch {
	case ty.IsCapsuleType():
		return TensorArg{Payload: v.EncapsulatedValue()}, nil
	case ty.IsObjectType() && ty.HasAttribute("data"):
		return decodeTensorObject(v)
	}
	var a TensorArg
	whole := true
	if err := a.flatten(v, 0, &whole); err != nil {
		return TensorArg{}, err
	}
	a.DType = "float32"
	if whole {
		a.DType = "int64"
	}
	return a, nil
}

// flatten appends v's numbers to a.Data and records the nesting as a.Shape,
// checking that the nesting is rectangular.
func (a *TensorArg) flatten(v cty.Value, depth int, whole *bool) error {
	ty := v.Type()
	if ty == cty.Number {
		if depth < len(a.Shape) {
			return fmt.Errorf("pipelines: tensor literal is ragged: a number where depth %d has a list", depth)
		}
		f, _ := v.AsBigFloat().Float64()
		*whole = *whole && f == math.Trunc(f)
		a.Data = append(a.Data, f)
		return nil
	}
	if !ty.IsListType() && !ty.IsTupleType() {
		return fmt.Errorf("pipelines: tensor literal: want numbers or lists of numbers, have %s", ty.FriendlyName())
	}
	n := int64(v.LengthInt())
	switch {
	case depth == len(a.Shape) && len(a.Data) == 0:
		a.Shape = append(a.Shape, n)
	case depth >= len(a.Shape) || a.Shape[depth] != n:
		return fmt.Errorf("pipelines: tensor literal is ragged at depth %d", depth)
	}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			return fmt.Errorf("pipelines: tensor literal has a null element")
		}
		if err := a.flatten(e, depth+1, whole); err != nil {
			return err
		}
	}
	return nil
}

func decodeTensorObject(v cty.Value) (TensorArg, error) {
	var a TensorArg
	ty := v.Type()
	if !ty.HasAttribute("dtype") || !ty.HasAttribute("shape") {
		return a, fmt.Errorf("pipelines: tensor object needs dtype, shape and data")
	}
	dt := v.GetAttr("dtype")
	if dt.Type() != cty.String {
		return a, fmt.Errorf("pipelines: tensor dtype must be a string")
	}
	a.DType = dt.AsString()
	shape, err := wholeNumbers(v.GetAttr("shape"))
	if err != nil {
		return a, fmt.Errorf("pipelines: tensor shape: %w", err)
	}
	a.Shape = shape
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			return a, fmt.Errorf("pipelines: tensor shape %v has a negative dimension", shape)
		}
		want *= d
	}
	data := v.GetAttr("data")
	if !data.Type().IsListType() && !data.Type().IsTupleType() {
		return a, fmt.Errorf("pipelines: tensor data must be a flat list of numbers")
	}
	for it := data.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() || e.Type() != cty.Number {
			return a, fmt.Errorf("pipelines: tensor data must be a flat list of numbers")
		}
		f, _ := e.AsBigFloat().Float64()
		a.Data = append(a.Data, f)
	}
	if int64(len(a.Data)) != want {
		return a, fmt.Errorf("pipelines: tensor data has %d elements, shape %v needs %d", len(a.Data), shape, want)
	}
	return a, nil
}

// OptionStrings returns the model's options as the backend's LoadModel
// receives them: name → value as text (numbers in their shortest form,
// bools as true/false). nil when the model has no options.
func (m *Model) OptionStrings() (map[string]string, error) {
	return optionStrings(m.Options)
}

func optionStrings(v cty.Value) (map[string]string, error) {
	if v.IsNull() {
		return nil, nil
	}
	if !v.IsWhollyKnown() {
		return nil, ErrNotKnown
	}
	ty := v.Type()
	if !ty.IsObjectType() && !ty.IsMapType() {
		return nil, fmt.Errorf("options must be an object like { precision = \"float32\" }, not %s", ty.FriendlyName())
	}
	out := map[string]string{}
	var bad []string
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		name := k.AsString()
		switch {
		case e.IsNull():
			continue
		case e.Type() == cty.String:
			out[name] = e.AsString()
		case e.Type() == cty.Number:
			out[name] = e.AsBigFloat().Text('g', -1)
		case e.Type() == cty.Bool:
			out[name] = fmt.Sprint(e.True())
		default:
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, fmt.Errorf("option values must be strings, numbers or bools; %s %s not", strings.Join(bad, ", "), pluralIs(len(bad)))
	}
	return out, nil
}

func pluralIs(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

package pipelines

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

func TestTokenIDs(t *testing.T) {
	for _, ids := range [][]int{nil, {0}, {15496, 11, 50256}} {
		got, err := AsTokenIDs(TokenIDsVal(ids))
		if err != nil || len(got) != len(ids) || (len(ids) > 0 && !reflect.DeepEqual(got, ids)) {
			t.Errorf("round trip %v: %v, %v", ids, got, err)
		}
	}
	bad := []struct {
		v   cty.Value
		err string
	}{
		{cty.ListVal([]cty.Value{cty.NumberFloatVal(1.5)}), "not a whole number"},
		{cty.NullVal(TokenIDs), "not known"},
		{cty.UnknownVal(TokenIDs), "not known"},
		{cty.StringVal("1"), "want a list of numbers"},
	}
	for _, c := range bad {
		if _, err := AsTokenIDs(c.v); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("AsTokenIDs(%#v) = %v, want error containing %q", c.v, err, c.err)
		}
	}
}

// eval parses and evaluates an HCL expression without variables.
func eval(t *testing.T, src string) cty.Value {
	t.Helper()
	expr, diags := hclsyntax.ParseExpression([]byte(src), "expr", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return v
}

func TestDecodeTensorArg(t *testing.T) {
	good := []struct {
		src   string
		dtype string
		shape []int64
		data  []float64
	}{
		{`[[464, 3290, 11]]`, "int64", []int64{1, 3}, []float64{464, 3290, 11}},
		{`[1, 2.5]`, "float32", []int64{2}, []float64{1, 2.5}},
		{`7`, "int64", nil, []float64{7}},
		{`[[], []]`, "int64", []int64{2, 0}, nil},
		{`{ dtype = "float32", shape = [2, 2], data = [1, 2, 3, 4] }`, "float32", []int64{2, 2}, []float64{1, 2, 3, 4}},
	}
	for _, c := range good {
		a, err := DecodeTensorArg(eval(t, c.src))
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		if a.DType != c.dtype || !reflect.DeepEqual(a.Shape, c.shape) || !reflect.DeepEqual(a.Data, c.data) {
			t.Errorf("%s: got %s %v %v, want %s %v %v", c.src, a.DType, a.Shape, a.Data, c.dtype, c.shape, c.data)
		}
	}
	bad := []struct{ src, err string }{
		{`[[1, 2], [3]]`, "ragged"},
		{`[[1], 2]`, "ragged"},
		{`[[1], [[2]]]`, "ragged"},
		{`["a"]`, "want numbers"},
		{`{ dtype = "float32", shape = [3], data = [1, 2] }`, "has 2 elements, shape [3] needs 3"},
		{`{ dtype = "float32", data = [1, 2] }`, "needs dtype, shape and data"},
		{`{ dtype = "float32", shape = [-1], data = [] }`, "negative dimension"},
	}
	for _, c := range bad {
		if _, err := DecodeTensorArg(eval(t, c.src)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want one containing %q", c.src, err, c.err)
		}
	}
	payload := &struct{}{}
	if a, err := DecodeTensorArg(cty.CapsuleVal(Tensor, payload)); err != nil || a.Payload != payload {
		t.Errorf("capsule: %+v, %v", a, err)
	}
}

func TestOptionStrings(t *testing.T) {
	cfg := loadGood(t, fixtures+"good/text-image-chain", LoadOptions{})
	got, err := cfg.Models["vae"].OptionStrings()
	if err != nil || !reflect.DeepEqual(got, map[string]string{"precision": "float32"}) {
		t.Errorf("vae options %v, %v", got, err)
	}
	if got, err := cfg.Models["gpt2"].OptionStrings(); err != nil || got != nil {
		t.Errorf("gpt2 (no options) %v, %v", got, err)
	}
	m := &Model{Options: eval(t, `{ n = 1.5, on = true, s = "x", off = null }`)}
	got, err = m.OptionStrings()
	if want := map[string]string{"n": "1.5", "on": "true", "s": "x"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("options %v, %v, want %v", got, err, want)
	}
}

package pipelines

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// EnvPrefix is the prefix every variable env() may read must carry. A
// pipeline file is often shared or downloaded; restricting env() to a
// namespace the user sets on purpose keeps it from exfiltrating secrets
// (AWS_SECRET_ACCESS_KEY, tokens) into prompts, outputs or file names.
const EnvPrefix = "MODELRT_"

// maxFileBytes bounds what file() reads: pipeline files embed prompts and
// small templates, not data sets.
const maxFileBytes = 4 << 20

// functions returns the function set of pipeline expressions: cty's standard
// library under Terraform's names, try/can, and the restricted file() and
// env(). Nothing reads the clock or randomness, so a configuration evaluates
// the same way at validate and at run time.
func functions(dir string) map[string]function.Function {
	return map[string]function.Function{
		// numbers
		"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
		"log": stdlib.LogFunc, "max": stdlib.MaxFunc, "min": stdlib.MinFunc,
		"pow": stdlib.PowFunc, "signum": stdlib.SignumFunc, "parseint": stdlib.ParseIntFunc,
		// strings
		"chomp": stdlib.ChompFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
		"indent": stdlib.IndentFunc, "join": stdlib.JoinFunc, "lower": stdlib.LowerFunc,
		"regex": stdlib.RegexFunc, "regexall": stdlib.RegexAllFunc, "replace": stdlib.ReplaceFunc,
		"split": stdlib.SplitFunc, "strlen": stdlib.StrlenFunc, "strrev": stdlib.ReverseFunc,
		"substr": stdlib.SubstrFunc, "title": stdlib.TitleFunc, "trim": stdlib.TrimFunc,
		"trimprefix": stdlib.TrimPrefixFunc, "trimsuffix": stdlib.TrimSuffixFunc,
		"trimspace": stdlib.TrimSpaceFunc, "upper": stdlib.UpperFunc,
		// collections
		"chunklist": stdlib.ChunklistFunc, "coalesce": stdlib.CoalesceFunc,
		"coalescelist": stdlib.CoalesceListFunc, "compact": stdlib.CompactFunc,
		"concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc, "distinct": stdlib.DistinctFunc,
		"element": stdlib.ElementFunc, "flatten": stdlib.FlattenFunc, "index": stdlib.IndexFunc,
		"keys": stdlib.KeysFunc, "length": lengthFunc, "lookup": stdlib.LookupFunc,
		"merge": stdlib.MergeFunc, "range": stdlib.RangeFunc, "reverse": stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc, "setproduct": stdlib.SetProductFunc,
		"setsubtract": stdlib.SetSubtractFunc, "setunion": stdlib.SetUnionFunc,
		"slice": stdlib.SliceFunc, "sort": stdlib.SortFunc, "values": stdlib.ValuesFunc,
		"zipmap": stdlib.ZipmapFunc,
		// encoding
		"jsonencode": stdlib.JSONEncodeFunc, "jsondecode": stdlib.JSONDecodeFunc,
		"csvdecode": stdlib.CSVDecodeFunc,
		// type conversion
		"tostring": stdlib.MakeToFunc(cty.String), "tonumber": stdlib.MakeToFunc(cty.Number),
		"tobool": stdlib.MakeToFunc(cty.Bool), "tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap": stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)), "toset": stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		// errors
		"try": tryfunc.TryFunc, "can": tryfunc.CanFunc,
		// restricted I/O
		"file": fileFunc(dir),
		"env":  envFunc,
	}
}

// FunctionNames lists the names of the function set, sorted.
func FunctionNames() []string {
	fs := functions("")
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// fileFunc reads a UTF-8 file under dir. Absolute paths and paths that leave
// dir (by "..", or by a symlink, which os.Root refuses to follow out of the
// root) are errors: a pipeline file must not read ~/.ssh or /etc.
func fileFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Description: "Reads a UTF-8 text file under the configuration directory.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			if err := checkConfigRelative(name); err != nil {
				return cty.UnknownVal(cty.String), function.NewArgError(0, err)
			}
			data, err := readUnder(dir, name)
			if err != nil {
				return cty.UnknownVal(cty.String), function.NewArgError(0, err)
			}
			if !utf8.Valid(data) {
				return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "%s is not valid UTF-8", name)
			}
			return cty.StringVal(string(data)), nil
		},
	})
}

// checkConfigRelative rejects paths file() must not read, with a message
// that says why.
func checkConfigRelative(name string) error {
	if name == "" {
		return errors.New("empty path")
	}
	if filepath.IsAbs(name) || strings.HasPrefix(name, "/") || filepath.VolumeName(name) != "" {
		return fmt.Errorf("absolute path %q: file() reads only files under the configuration directory; give a relative path", name)
	}
	clean := filepath.Clean(filepath.FromSlash(name))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return fmt.Errorf("path %q leaves the configuration directory; file() reads only files under it", name)
	}
	return nil
}

func readUnder(dir, name string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open configuration directory: %w", err)
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no file %q in the configuration directory %s", name, dir)
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxFileBytes)
	}
	return data, nil
}

// envFunc is env(name) or env(name, default): the value of an environment
// variable whose name starts with EnvPrefix. An unset variable is an error
// unless a default is given.
var envFunc = function.New(&function.Spec{
	Description: "Reads an environment variable whose name starts with " + EnvPrefix + ".",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	VarParam:    &function.Parameter{Name: "default", Type: cty.String},
	Type: func(args []cty.Value) (cty.Type, error) {
		if len(args) > 2 {
			return cty.NilType, function.NewArgErrorf(2, "env takes a name and at most one default")
		}
		return cty.String, nil
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		name := args[0].AsString()
		if !strings.HasPrefix(name, EnvPrefix) {
			return cty.UnknownVal(cty.String), function.NewArgErrorf(0,
				"env() reads only variables whose name starts with %s, not %q", EnvPrefix, name)
		}
		if v, ok := os.LookupEnv(name); ok {
			return cty.StringVal(v), nil
		}
		if len(args) == 2 {
			return args[1], nil
		}
		return cty.UnknownVal(cty.String), function.NewArgErrorf(0,
			"environment variable %s is not set; set it or give a default: env(%q, \"...\")", name, name)
	},
})

// lengthFunc is Terraform's length: cty's counts lists, maps and tuples
// only, and pipeline authors measure prompts and objects too.
var lengthFunc = function.New(&function.Spec{
	Description: "The number of elements of a collection, or of characters of a string.",
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType,
		AllowDynamicType: true, AllowUnknown: true}},
	Type: func(args []cty.Value) (cty.Type, error) {
		if ty := args[0].Type(); ty == cty.String || ty == cty.DynamicPseudoType || ty.IsObjectType() {
			return cty.Number, nil
		}
		return stdlib.LengthFunc.ReturnType([]cty.Type{args[0].Type()})
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			if !args[0].IsKnown() {
				return cty.UnknownVal(cty.Number), nil
			}
			return stdlib.Strlen(args[0])
		}
		if ty := args[0].Type(); ty.IsObjectType() {
			return cty.NumberIntVal(int64(len(ty.AttributeTypes()))), nil
		}
		if !args[0].IsKnown() && args[0].Type() == cty.DynamicPseudoType {
			return cty.UnknownVal(cty.Number), nil
		}
		return stdlib.Length(args[0])
	},
})

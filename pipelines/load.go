package pipelines

import (
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/modelrt/modelrt/sdk"
)

// LoadOptions are the caller-provided parts of loading. The zero value loads
// with no variables, no backend schemas, and model path checks on.
type LoadOptions struct {
	// Vars are `-var name=value` assignments. A value is converted to the
	// variable's declared type: primitive types from the text itself
	// ("3", "true"), other types parsed as an HCL expression ("[1, 2]").
	Vars map[string]string
	// BackendSchemas reports the config schema of a backend plugin (as
	// written in the backend's plugin attribute). nil skips config
	// validation; an error becomes a diagnostic on the plugin attribute.
	BackendSchemas func(plugin string) (*sdk.ConfigSchema, error)
	// NoPathCheck skips checking that model paths exist (for validating a
	// configuration on a machine without the models). It is a negative so
	// that the zero LoadOptions checks.
	NoPathCheck bool
}

// Schemas of the language. Everything is an explicit hcl.BodySchema so that
// an unknown block or attribute anywhere is a diagnostic.
var (
	rootSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "backend", LabelNames: []string{"name"}},
		{Type: "model", LabelNames: []string{"name"}},
		{Type: "pipeline", LabelNames: []string{"name"}},
	}}
	variableSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"},
	}}
	backendSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "plugin", Required: true}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "config"}},
	}
	modelSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "backend", Required: true}, {Name: "path", Required: true},
		{Name: "task", Required: true}, {Name: "options"}, {Name: "chat_template"},
		{Name: "max_batch"}, {Name: "prefill_chunk"}, {Name: "keep_alive"},
	}}
	pipelineSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "description"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "input", LabelNames: []string{"name"}},
			{Type: "stage", LabelNames: []string{"name"}},
			{Type: "output", LabelNames: []string{"name"}},
		},
	}
	inputSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"},
	}}
	outputSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "value", Required: true}, {Name: "description"},
	}}
	stageUseSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "use", Required: true}}}
)

// Load reads a configuration: path is a .hcl file, or a directory whose
// *.hcl files (not its subdirectories) merge into one configuration, as
// Terraform merges a module's files. It returns every diagnostic it finds;
// the Config is non-nil and its Files are set even when there are errors.
func Load(path string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	cfg := &Config{Files: map[string]*hcl.File{}}
	fail := func(summary, detail string) (*Config, hcl.Diagnostics) {
		return cfg, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail}}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fail("Cannot read configuration", err.Error())
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fail("Cannot read configuration", err.Error())
	}
	names := []string{path}
	cfg.Dir = filepath.Dir(abs)
	if fi.IsDir() {
		cfg.Dir = abs
		entries, err := os.ReadDir(path)
		if err != nil {
			return fail("Cannot read configuration", err.Error())
		}
		names = nil
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") {
				names = append(names, filepath.Join(path, e.Name()))
			}
		}
		if len(names) == 0 {
			return fail("No configuration files", fmt.Sprintf("Directory %s holds no .hcl files.", path))
		}
		sort.Strings(names)
	}
	parser := hclparse.NewParser()
	var files []*hcl.File
	var diags hcl.Diagnostics
	for _, n := range names {
		f, d := parser.ParseHCLFile(n)
		diags = append(diags, d...)
		if f != nil {
			files = append(files, f)
		}
	}
	cfg.Files = parser.Files()
	if diags.HasErrors() {
		// A body recovered from a syntax error yields follow-on errors that
		// only repeat the first one.
		return cfg, diags
	}
	return cfg, append(diags, decode(cfg, files, opts)...)
}

// LoadSource loads one file's contents as a configuration whose directory is
// filename's (for relative model paths and file()).
func LoadSource(filename string, src []byte, opts LoadOptions) (*Config, hcl.Diagnostics) {
	cfg := &Config{Files: map[string]*hcl.File{}}
	abs, err := filepath.Abs(filename)
	if err != nil {
		return cfg, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read configuration", Detail: err.Error()}}
	}
	cfg.Dir = filepath.Dir(abs)
	parser := hclparse.NewParser()
	f, diags := parser.ParseHCL(src, filename)
	cfg.Files = parser.Files()
	if diags.HasErrors() || f == nil {
		return cfg, diags
	}
	return cfg, append(diags, decode(cfg, []*hcl.File{f}, opts)...)
}

// Validate loads a configuration and returns every diagnostic at once.
func Validate(path string, opts LoadOptions) hcl.Diagnostics {
	_, diags := Load(path, opts)
	return diags
}

// loader holds the blocks of every file between collecting them and
// decoding them: all names must be known before any reference is checked.
type loader struct {
	cfg       *Config
	opts      LoadOptions
	diags     hcl.Diagnostics
	variables []*hcl.Block
	backends  []*hcl.Block
	models    []*hcl.Block
	pipelines []*hcl.Block
	locals    []*Local
	// declared maps "type.name" to the first declaration, for duplicates
	// across files.
	declared map[string]hcl.Range
}

func decode(cfg *Config, files []*hcl.File, opts LoadOptions) hcl.Diagnostics {
	cfg.Variables = map[string]*Variable{}
	cfg.Locals = map[string]*Local{}
	cfg.Backends = map[string]*Backend{}
	cfg.Models = map[string]*Model{}
	cfg.Pipelines = map[string]*Pipeline{}
	// Set once here so that concurrent EvalStage calls only read the Config.
	cfg.funcs = functions(cfg.Dir)
	l := &loader{cfg: cfg, opts: opts, declared: map[string]hcl.Range{}}
	for _, f := range files {
		l.collect(f)
	}
	for _, b := range l.variables {
		l.variable(b)
	}
	l.bindVars()
	l.evalLocals()
	for _, b := range l.backends {
		l.backend(b)
	}
	for _, b := range l.models {
		l.model(b)
	}
	for _, b := range l.pipelines {
		l.pipeline(b)
	}
	return l.diags
}

func (l *loader) add(d hcl.Diagnostics) bool {
	l.diags = append(l.diags, d...)
	return !d.HasErrors()
}

func at(r hcl.Range) string { return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column) }

func duplicate(kind, name, where string, first, second hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Duplicate %s %q", kind, name),
		Detail: fmt.Sprintf("A %s named %q was already declared at %s. Names must be unique %s.",
			kind, name, at(first), where),
		Subject: second.Ptr(),
	}
}

const acrossFiles = "across all files of a configuration"

// collect records one file's top-level blocks, reporting duplicate names
// against the declarations of earlier files.
func (l *loader) collect(f *hcl.File) {
	content, diags := f.Body.Content(rootSchema)
	l.add(diags)
	for _, b := range content.Blocks {
		if b.Type == "locals" {
			attrs, d := b.Body.JustAttributes()
			l.add(d)
			for _, a := range sortedAttrs(attrs) {
				if prev := l.cfg.Locals[a.Name]; prev != nil {
					l.add(hcl.Diagnostics{duplicate("local value", a.Name, acrossFiles, prev.Range, a.NameRange)})
					continue
				}
				loc := &Local{Name: a.Name, Expr: a.Expr, Range: a.NameRange}
				l.cfg.Locals[a.Name] = loc
				l.locals = append(l.locals, loc)
			}
			continue
		}
		name := b.Labels[0]
		if !l.validName(b) {
			continue
		}
		key := b.Type + "." + name
		if first, dup := l.declared[key]; dup {
			l.add(hcl.Diagnostics{duplicate(b.Type, name, acrossFiles, first, b.DefRange)})
			continue
		}
		l.declared[key] = b.DefRange
		switch b.Type {
		case "variable":
			l.cfg.Variables[name] = &Variable{Name: name, DeclRange: b.DefRange, Type: cty.DynamicPseudoType}
			l.variables = append(l.variables, b)
		case "backend":
			l.cfg.Backends[name] = &Backend{Name: name, DeclRange: b.DefRange, Config: cty.EmptyObjectVal}
			l.backends = append(l.backends, b)
		case "model":
			l.cfg.Models[name] = &Model{Name: name, DeclRange: b.DefRange, Options: cty.NullVal(cty.DynamicPseudoType)}
			l.models = append(l.models, b)
		case "pipeline":
			l.cfg.Pipelines[name] = &Pipeline{Name: name, DeclRange: b.DefRange, cfg: l.cfg}
			l.pipelines = append(l.pipelines, b)
		}
	}
}

// sortedAttrs orders attributes by source position, for diagnostics in
// reading order.
func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := out[i].Range, out[j].Range
		if ri.Filename != rj.Filename {
			return ri.Filename < rj.Filename
		}
		return ri.Start.Byte < rj.Start.Byte
	})
	return out
}

func (l *loader) variable(b *hcl.Block) {
	v := l.cfg.Variables[b.Labels[0]]
	content, diags := b.Body.Content(variableSchema)
	l.add(diags)
	if a := content.Attributes["type"]; a != nil {
		ty, d := typeexpr.TypeConstraint(a.Expr)
		if l.add(d) {
			v.Type = ty
		}
		v.TypeRange = a.Expr.Range()
	} else {
		v.TypeRange = v.DeclRange
	}
	if a := content.Attributes["description"]; a != nil {
		v.Description, _ = l.evalString(a, nil, "description")
	}
	if a := content.Attributes["default"]; a != nil {
		// Defaults are constants, as in Terraform: a variable's value must
		// not depend on the rest of the configuration.
		val, d := a.Expr.Value(nil)
		if l.add(d) {
			cv, err := convert.Convert(val, v.Type)
			if err != nil {
				l.add(hcl.Diagnostics{attrDiag(a, nil, "Invalid default value for variable",
					fmt.Sprintf("The default of variable %q does not match its type: %s.", v.Name, errText(err)))})
				cv = cty.UnknownVal(v.Type)
			}
			v.Default = cv
		} else {
			v.Default = cty.DynamicVal
		}
	}
}

// bindVars gives every variable its value: from LoadOptions.Vars, else its
// default; a variable with neither is an error at its declaration.
func (l *loader) bindVars() {
	for _, name := range keys(l.opts.Vars) {
		if l.cfg.Variables[name] == nil {
			l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Value for undeclared variable",
				Detail: fmt.Sprintf("A value was given for variable %q (-var %s=...), but the configuration declares no such variable.%s",
					name, name, suggest(name, keys(l.cfg.Variables)))}})
		}
	}
	for _, b := range l.variables {
		v := l.cfg.Variables[b.Labels[0]]
		raw, given := l.opts.Vars[v.Name]
		switch {
		case given:
			val, err := parseRaw(raw, v.Type, "<value for var."+v.Name+">")
			if err != nil {
				l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid value for variable",
					Detail:  fmt.Sprintf("-var %s=%q: %s. The variable is declared here.", v.Name, raw, err),
					Subject: v.TypeRange.Ptr()}})
				val = cty.UnknownVal(v.Type)
			}
			v.Value = val
		case v.Default != cty.NilVal:
			v.Value = v.Default
		default:
			l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No value for required variable",
				Detail:  fmt.Sprintf("Variable %q has no default; give it a value with -var %s=...", v.Name, v.Name),
				Subject: v.DeclRange.Ptr()}})
			v.Value = cty.UnknownVal(v.Type)
		}
	}
}

// parseRaw converts a command-line value to ty: primitive types (and any)
// from the text itself, other types by parsing the text as an HCL
// expression, as Terraform does for -var.
func parseRaw(raw string, ty cty.Type, srcName string) (cty.Value, error) {
	if ty.IsPrimitiveType() || ty == cty.DynamicPseudoType {
		v, err := convert.Convert(cty.StringVal(raw), ty)
		if err != nil {
			return cty.NilVal, errors.New(errText(err))
		}
		return v, nil
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), srcName, hcl.InitialPos)
	if diags.HasErrors() {
		return cty.NilVal, fmt.Errorf("not a valid %s expression: %s", TypeName(ty), diags[0].Detail)
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		return cty.NilVal, fmt.Errorf("%s: %s", diags[0].Summary, diags[0].Detail)
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		return cty.NilVal, errors.New(errText(err))
	}
	return cv, nil
}

// evalLocals evaluates local values in dependency order; a local that
// cannot be evaluated becomes unknown so its readers report nothing more.
func (l *loader) evalLocals() {
	sc := &scope{cfg: l.cfg, roots: configRoots, where: "a local value"}
	deps := map[string][]string{}
	refRange := map[[2]string]hcl.Range{}
	bad := map[string]bool{}
	var names []string
	for _, loc := range l.locals {
		names = append(names, loc.Name)
		refs, d := sc.refs(loc.Expr.Variables())
		if !l.add(d) {
			bad[loc.Name] = true
		}
		for _, r := range refs {
			if r.Kind == RefLocal {
				deps[loc.Name] = append(deps[loc.Name], r.Name)
				refRange[[2]string{loc.Name, r.Name}] = r.Range
			}
		}
	}
	order, cycles := topoOrder(names, deps)
	for _, c := range cycles {
		l.add(hcl.Diagnostics{cycleDiag("local values", "local.%s", c, refRange)})
		for _, n := range c {
			bad[n] = true
		}
	}
	for _, n := range order {
		loc := l.cfg.Locals[n]
		if bad[n] {
			loc.Value = cty.DynamicVal
			continue
		}
		for _, d := range deps[n] {
			if bad[d] {
				bad[n] = true
			}
		}
		if bad[n] {
			loc.Value = cty.DynamicVal
			continue
		}
		v, d := loc.Expr.Value(l.cfg.EvalContext(nil))
		if !l.add(d) {
			bad[n] = true
			v = cty.DynamicVal
		}
		loc.Value = v
	}
}

// cycleDiag reports a dependency cycle by naming it, pointing at the
// reference that closes its first edge.
func cycleDiag(what, format string, cycle []string, refRange map[[2]string]hcl.Range) *hcl.Diagnostic {
	parts := make([]string, len(cycle))
	for i, n := range cycle {
		parts[i] = fmt.Sprintf(format, n)
	}
	rng := refRange[[2]string{cycle[0], cycle[1]}]
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Cycle between " + what,
		Detail:   fmt.Sprintf("These depend on each other in a cycle: %s. Each arrow reads the next one's value.", strings.Join(parts, " → ")),
		Subject:  rng.Ptr(),
	}
}

// evalString evaluates attr as a non-null string; ok is false on error or
// when the value is not known (an earlier, reported error).
func (l *loader) evalString(a *hcl.Attribute, ctx *hcl.EvalContext, what string) (string, bool) {
	v, diags := evalAs(a, cty.String, ctx, what)
	if !l.add(diags) || !v.IsKnown() {
		return "", false
	}
	if v.IsNull() {
		l.add(hcl.Diagnostics{attrDiag(a, ctx, "Missing value", fmt.Sprintf("%s %q must not be null.", what, a.Name))})
		return "", false
	}
	return v.AsString(), true
}

// Bounds of the scheduling attributes of a model block.
const (
	maxModelBatch   = 256
	maxPrefillChunk = 4096
)

// modelCount evaluates an optional whole-number model attribute in [1, limit]; 0 when absent
// (the scheduler's default) or invalid (reported).
func (l *loader) modelCount(a *hcl.Attribute, sc *scope, model string, limit int) int {
	if a == nil {
		return 0
	}
	if _, d := sc.refs(a.Expr.Variables()); !l.add(d) {
		return 0
	}
	v, diags := evalAs(a, cty.Number, l.cfg.EvalContext(nil), "model attribute")
	if !l.add(diags) || !v.IsKnown() || v.IsNull() {
		return 0
	}
	n, acc := v.AsBigFloat().Int64()
	if acc != big.Exact || n < 1 || n > int64(limit) {
		l.add(hcl.Diagnostics{attrDiag(a, nil, "Invalid model attribute",
			fmt.Sprintf("Model %q: %s must be a whole number from 1 to %d, got %s.", model, a.Name, limit, v.AsBigFloat().Text('g', -1)))})
		return 0
	}
	return int(n)
}

// maxKeepAlive bounds keep_alive: longer is "keep it loaded" in all but name, and a bound keeps
// the timer arithmetic far from overflow.
const maxKeepAlive = 365 * 24 * time.Hour

// keepAlive evaluates a model's keep_alive: how long the model may sit idle (no request holding
// it) before the daemon unloads it; the next request loads it again. A Go duration string
// ("300ms", "5m", "1h30m") or a number of seconds; "0", 0 and absent mean keep it loaded.
func (l *loader) keepAlive(a *hcl.Attribute, sc *scope, model string) time.Duration {
	if a == nil {
		return 0
	}
	if _, d := sc.refs(a.Expr.Variables()); !l.add(d) {
		return 0
	}
	v, diags := a.Expr.Value(l.cfg.EvalContext(nil))
	if !l.add(diags) || !v.IsWhollyKnown() {
		return 0
	}
	d, err := ParseKeepAlive(v)
	if err != nil {
		l.add(hcl.Diagnostics{attrDiag(a, nil, "Invalid keep_alive",
			fmt.Sprintf("Model %q: keep_alive %s.", model, err))})
		return 0
	}
	return d
}

// ParseKeepAlive reads a keep_alive value: a duration string ("300ms", "5m", "0") or a number
// of seconds, from 0 (keep loaded) to a year.
func ParseKeepAlive(v cty.Value) (time.Duration, error) {
	const want = `must be a duration like "300ms", "5m" or "1h30m", or a number of seconds; "0" keeps the model loaded`
	if v.IsNull() {
		return 0, fmt.Errorf("is null: it %s", want)
	}
	var d time.Duration
	switch v.Type() {
	case cty.String:
		s := v.AsString()
		if s == "0" {
			return 0, nil
		}
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q %s", s, want)
		}
	case cty.Number:
		f, _ := v.AsBigFloat().Float64()
		if f < 0 || f > maxKeepAlive.Seconds() {
			return 0, fmt.Errorf("= %s: must be from 0 to %.0f seconds", v.AsBigFloat().Text('g', -1), maxKeepAlive.Seconds())
		}
		d = time.Duration(f * float64(time.Second))
	default:
		return 0, fmt.Errorf("is a %s: it %s", v.Type().FriendlyName(), want)
	}
	if d < 0 || d > maxKeepAlive {
		return 0, fmt.Errorf("%s: must be from 0 to %s", d, maxKeepAlive)
	}
	return d, nil
}

// checkedString checks the references of a configuration-level attribute
// and evaluates it as a string.
func (l *loader) checkedString(a *hcl.Attribute, sc *scope, what string) (string, bool) {
	if _, d := sc.refs(a.Expr.Variables()); !l.add(d) {
		return "", false
	}
	return l.evalString(a, l.cfg.EvalContext(nil), what)
}

func (l *loader) backend(b *hcl.Block) {
	be := l.cfg.Backends[b.Labels[0]]
	content, diags := b.Body.Content(backendSchema)
	l.add(diags)
	sc := &scope{cfg: l.cfg, roots: configRoots, where: "a backend block"}
	pluginOK := false
	if a := content.Attributes["plugin"]; a != nil {
		be.PluginRange = a.Expr.Range()
		be.Plugin, pluginOK = l.checkedString(a, sc, "backend attribute")
		if pluginOK && strings.ContainsAny(be.Plugin, `/\`) {
			be.PluginPath = be.Plugin
			if !filepath.IsAbs(be.PluginPath) {
				be.PluginPath = filepath.Join(l.cfg.Dir, be.PluginPath)
			}
		}
	}
	var cfgBlock *hcl.Block
	for _, cb := range content.Blocks {
		if cfgBlock != nil {
			l.add(hcl.Diagnostics{duplicate("config block", "config", "in a backend", cfgBlock.DefRange, cb.DefRange)})
			continue
		}
		cfgBlock = cb
		be.ConfigBody = cb.Body
	}
	if !pluginOK {
		return
	}
	var schema *sdk.ConfigSchema
	if l.opts.BackendSchemas != nil {
		s, err := l.opts.BackendSchemas(be.Plugin)
		if err != nil {
			l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot get backend config schema",
				Detail:  fmt.Sprintf("Plugin %q of backend %q did not report its config schema: %s.", be.Plugin, be.Name, err),
				Subject: be.PluginRange.Ptr()}})
			return
		}
		schema = s
	}
	be.Config = l.backendConfig(be, cfgBlock, schema, sc)
}

func (l *loader) model(b *hcl.Block) {
	m := l.cfg.Models[b.Labels[0]]
	content, diags := b.Body.Content(modelSchema)
	l.add(diags)
	sc := &scope{cfg: l.cfg, roots: configRoots, where: "a model block"}
	if a := content.Attributes["backend"]; a != nil {
		bsc := &scope{cfg: l.cfg, roots: modelRoots, where: "a model's backend attribute"}
		t, d := hcl.AbsTraversalForExpr(a.Expr)
		if d.HasErrors() || t.RootName() != string(RefBackend) {
			l.add(hcl.Diagnostics{attrDiag(a, nil, "Invalid backend reference",
				"A model's backend must be a reference to a backend block, like backend.onnxrt.")})
		} else if r, d := bsc.ref(t); l.add(d) {
			m.BackendName = r.Name
			m.Backend = l.cfg.Backends[r.Name]
		}
	}
	if a := content.Attributes["task"]; a != nil {
		if task, ok := l.checkedString(a, sc, "model attribute"); ok {
			m.Task = task
			if !slices.Contains(Tasks, task) {
				l.add(hcl.Diagnostics{attrDiag(a, nil, "Unknown model task",
					fmt.Sprintf("Task %q is not one of %s.%s", task, strings.Join(quoteAll(Tasks), ", "), suggest(task, Tasks)))})
			}
		}
	}
	if a := content.Attributes["options"]; a != nil {
		if _, d := sc.refs(a.Expr.Variables()); l.add(d) {
			v, d := a.Expr.Value(l.cfg.EvalContext(nil))
			if l.add(d) {
				m.Options = v
				if _, err := optionStrings(v); err != nil && err != ErrNotKnown {
					l.add(hcl.Diagnostics{attrDiag(a, nil, "Invalid model options",
						fmt.Sprintf("Model %q: %s.", m.Name, err))})
				}
			}
		}
	}
	if a := content.Attributes["chat_template"]; a != nil {
		l.chatTemplate(m, a, sc)
	}
	m.MaxBatch = l.modelCount(content.Attributes["max_batch"], sc, m.Name, maxModelBatch)
	m.PrefillChunk = l.modelCount(content.Attributes["prefill_chunk"], sc, m.Name, maxPrefillChunk)
	m.KeepAlive = l.keepAlive(content.Attributes["keep_alive"], sc, m.Name)
	if a := content.Attributes["path"]; a != nil {
		m.PathRange = a.Expr.Range()
		p, ok := l.checkedString(a, sc, "model attribute")
		if !ok {
			return
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(l.cfg.Dir, p)
		}
		m.Path = p
		if l.opts.NoPathCheck {
			return
		}
		if _, err := os.Stat(p); err != nil {
			detail := fmt.Sprintf("Model %q: %s does not exist (relative paths are relative to the configuration directory %s).", m.Name, p, l.cfg.Dir)
			if !errors.Is(err, fs.ErrNotExist) {
				detail = fmt.Sprintf("Model %q: %s.", m.Name, err)
			}
			l.add(hcl.Diagnostics{attrDiag(a, nil, "Model path does not exist", detail)})
		}
	}
}

// validName reports whether a block's label can be referenced (model.<name>
// must parse as a traversal), reporting it when not.
func (l *loader) validName(b *hcl.Block) bool {
	name := b.Labels[0]
	if hclsyntax.ValidIdentifier(name) {
		return true
	}
	l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid name",
		Detail:  fmt.Sprintf("%q is not a valid %s name: names are letters, digits, underscores and dashes, starting with a letter.", name, b.Type),
		Subject: b.LabelRanges[0].Ptr()}})
	return false
}

// pipeline decodes a pipeline: its inputs, stages and outputs, the
// references between them, the stage DAG, and a static type check of every
// stage and output expression.
func (l *loader) pipeline(b *hcl.Block) {
	p := l.cfg.Pipelines[b.Labels[0]]
	content, diags := b.Body.Content(pipelineSchema)
	l.add(diags)
	if a := content.Attributes["description"]; a != nil {
		p.Description, _ = l.checkedString(a, &scope{cfg: l.cfg, roots: configRoots, where: "a description"}, "pipeline attribute")
	}
	within := fmt.Sprintf("within pipeline %q", p.Name)
	stages := map[string]*Stage{}
	var declared []*Stage
	outputs := map[string]*Output{}
	for _, blk := range content.Blocks {
		name := blk.Labels[0]
		if !l.validName(blk) {
			continue
		}
		switch blk.Type {
		case "input":
			if prev := p.Input(name); prev != nil {
				l.add(hcl.Diagnostics{duplicate("input", name, within, prev.DeclRange, blk.DefRange)})
				continue
			}
			p.Inputs = append(p.Inputs, l.input(blk))
		case "stage":
			if prev := stages[name]; prev != nil {
				l.add(hcl.Diagnostics{duplicate("stage", name, within, prev.DeclRange, blk.DefRange)})
				continue
			}
			s := l.stage(blk, p)
			stages[name] = s
			declared = append(declared, s)
		case "output":
			if prev := outputs[name]; prev != nil {
				l.add(hcl.Diagnostics{duplicate("output", name, within, prev.DeclRange, blk.DefRange)})
				continue
			}
			o := l.output(blk)
			outputs[name] = o
			p.Outputs = append(p.Outputs, o)
		}
	}

	deps, refRange, bad := l.pipelineRefs(p, declared, stages)
	l.orderStages(p, declared, stages, deps, refRange)

	// Static type check: unknown values of the declared types stand in for
	// inputs and stage outputs, so every type error surfaces before a run.
	ctx := l.cfg.EvalContext(ptr(staticValues(p, stages)))
	for _, s := range p.Stages {
		if s.Type != nil && !bad["stage."+s.Name] {
			_, d := evalStage(s, ctx, true)
			l.add(d)
		}
	}
	for _, o := range p.Outputs {
		if o.Expr != nil && !bad["output."+o.Name] {
			_, d := o.Expr.Value(ctx)
			l.add(d)
		}
	}
}

// pipelineRefs checks the references of every stage and output and returns
// the stage graph: deps[s] lists the stages s reads, in first-reference
// order, refRange[{s, d}] is where s first reads d, and bad marks the
// "stage.x" and "output.x" whose references failed (they are not
// evaluated, which would only repeat the error).
func (l *loader) pipelineRefs(p *Pipeline, declared []*Stage, stages map[string]*Stage) (deps map[string][]string, refRange map[[2]string]hcl.Range, bad map[string]bool) {
	sc := &scope{cfg: l.cfg, pipeline: p, stages: stages, roots: pipelineRoots, where: "a pipeline"}
	deps, refRange, bad = map[string][]string{}, map[[2]string]hcl.Range{}, map[string]bool{}
	for _, s := range declared {
		var travs []hcl.Traversal
		for _, a := range sortedAttrs(s.Attributes) {
			travs = append(travs, a.Expr.Variables()...)
		}
		for _, bp := range s.blockNames() {
			for _, a := range sortedAttrs(s.BlockAttributes[bp]) {
				travs = append(travs, a.Expr.Variables()...)
			}
		}
		refs, d := sc.refs(travs)
		if !l.add(d) {
			bad["stage."+s.Name] = true
		}
		s.Refs = refs
		for _, r := range refs {
			key := [2]string{s.Name, r.Name}
			if _, seen := refRange[key]; r.Kind == RefStage && !seen {
				deps[s.Name] = append(deps[s.Name], r.Name)
				refRange[key] = r.Range
			}
		}
	}
	for _, o := range p.Outputs {
		if o.Expr == nil {
			continue
		}
		refs, d := sc.refs(o.Expr.Variables())
		if !l.add(d) {
			bad["output."+o.Name] = true
		}
		o.Refs = refs
	}
	return deps, refRange, bad
}

// orderStages sets p.Stages to a topological order and each stage's
// DependsOn, reporting every cycle.
func (l *loader) orderStages(p *Pipeline, declared []*Stage, stages map[string]*Stage, deps map[string][]string, refRange map[[2]string]hcl.Range) {
	names := make([]string, len(declared))
	for i, s := range declared {
		names[i] = s.Name
	}
	order, cycles := topoOrder(names, deps)
	for _, c := range cycles {
		l.add(hcl.Diagnostics{cycleDiag("stages", "stage %q", c, refRange)})
	}
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
		p.Stages = append(p.Stages, stages[n])
	}
	for _, s := range p.Stages {
		s.DependsOn = append([]string(nil), deps[s.Name]...)
		sort.Slice(s.DependsOn, func(i, j int) bool { return pos[s.DependsOn[i]] < pos[s.DependsOn[j]] })
	}
}

func ptr[T any](v T) *T { return &v }

func (l *loader) input(b *hcl.Block) *Input {
	in := &Input{Name: b.Labels[0], DeclRange: b.DefRange, Type: cty.String}
	content, diags := b.Body.Content(inputSchema)
	l.add(diags)
	in.TypeRange = in.DeclRange
	if a := content.Attributes["type"]; a != nil {
		in.TypeRange = a.Expr.Range()
		ty, d := typeexpr.TypeConstraint(a.Expr)
		if l.add(d) {
			in.Type = ty
		}
	}
	sc := &scope{cfg: l.cfg, roots: configRoots, where: "an input block"}
	if a := content.Attributes["description"]; a != nil {
		in.Description, _ = l.checkedString(a, sc, "input attribute")
	}
	if a := content.Attributes["default"]; a != nil {
		in.Default = cty.UnknownVal(in.Type)
		if _, d := sc.refs(a.Expr.Variables()); l.add(d) {
			v, d := evalAs(a, in.Type, l.cfg.EvalContext(nil), "input default")
			if l.add(d) {
				in.Default = v
			}
		}
	}
	return in
}

func (l *loader) output(b *hcl.Block) *Output {
	o := &Output{Name: b.Labels[0], DeclRange: b.DefRange}
	content, diags := b.Body.Content(outputSchema)
	l.add(diags)
	if a := content.Attributes["value"]; a != nil {
		o.Expr = a.Expr
	}
	if a := content.Attributes["description"]; a != nil {
		o.Description, _ = l.checkedString(a, &scope{cfg: l.cfg, roots: configRoots, where: "a description"}, "output attribute")
	}
	return o
}

// stage decodes a stage block against the catalogue entry its `use` names.
// The attributes stay unevaluated (EvalStage evaluates them at run time).
func (l *loader) stage(b *hcl.Block, p *Pipeline) *Stage {
	s := &Stage{Name: b.Labels[0], DeclRange: b.DefRange, pipeline: p, UseRange: b.DefRange,
		Blocks: map[string]*hcl.Block{}, BlockAttributes: map[string]hcl.Attributes{}}
	useContent, remain, diags := b.Body.PartialContent(stageUseSchema)
	l.add(diags)
	a := useContent.Attributes["use"]
	if a == nil {
		return s
	}
	s.UseRange = a.Expr.Range()
	v, d := a.Expr.Value(nil)
	if !d.HasErrors() {
		v, _ = convert.Convert(v, cty.String)
	}
	if d.HasErrors() || v == cty.NilVal || v.IsNull() || !v.IsKnown() {
		l.add(hcl.Diagnostics{attrDiag(a, nil, "Invalid stage type",
			`use must be a literal string naming a stage type, like use = "generate".`)})
		return s
	}
	s.Use = v.AsString()
	s.Type = Catalogue[s.Use]
	if s.Type == nil {
		l.add(hcl.Diagnostics{attrDiag(a, nil, "Unknown stage type",
			fmt.Sprintf("There is no stage type %q.%s Stage types: %s.", s.Use, suggest(s.Use, StageTypeNames()), strings.Join(StageTypeNames(), ", ")))})
		return s
	}
	content, diags := remain.Content(s.Type.schema())
	l.add(diags)
	s.Attributes = content.Attributes
	for _, blk := range content.Blocks {
		if prev := s.Blocks[blk.Type]; prev != nil {
			l.add(hcl.Diagnostics{duplicate(blk.Type+" block", blk.Type, fmt.Sprintf("within stage %q (one per stage)", s.Name), prev.DefRange, blk.DefRange)})
			continue
		}
		bc, d := blk.Body.Content(s.Type.Block(blk.Type).schema())
		l.add(d)
		s.Blocks[blk.Type] = blk
		s.BlockAttributes[blk.Type] = bc.Attributes
	}
	l.checkAlternatives(s, b)
	return s
}

func (s *Stage) blockNames() []string {
	if s.Type == nil {
		return nil
	}
	var out []string
	for _, bp := range s.Type.Blocks {
		if s.Blocks[bp.Name] != nil {
			out = append(out, bp.Name)
		}
	}
	return out
}

// checkAlternatives enforces StageType.Alternatives: exactly one group of
// attributes is set, and set in full.
func (l *loader) checkAlternatives(s *Stage, b *hcl.Block) {
	if len(s.Type.Alternatives) == 0 {
		return
	}
	var alts []string
	for _, g := range s.Type.Alternatives {
		alts = append(alts, strings.Join(g, " + "))
	}
	choices := strings.Join(alts, " | ")
	var chosen []string
	for _, g := range s.Type.Alternatives {
		var set, unset []string
		for _, n := range g {
			if s.Attributes[n] != nil {
				set = append(set, n)
			} else {
				unset = append(unset, n)
			}
		}
		if len(set) == 0 {
			continue
		}
		if chosen != nil {
			a := s.Attributes[set[0]]
			l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Conflicting stage inputs",
				Detail: fmt.Sprintf("Stage %q (use = %q) takes exactly one of %s; %s is already set.",
					s.Name, s.Use, choices, strings.Join(chosen, " + ")),
				Subject: a.NameRange.Ptr()}})
			continue
		}
		chosen = g
		if len(unset) > 0 {
			a := s.Attributes[set[0]]
			l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Missing stage input",
				Detail: fmt.Sprintf("Stage %q (use = %q): %s must be set together with %s.",
					s.Name, s.Use, strings.Join(unset, ", "), strings.Join(set, ", ")),
				Subject: a.NameRange.Ptr()}})
		}
	}
	if chosen == nil {
		l.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Missing stage input",
			Detail:  fmt.Sprintf("Stage %q (use = %q) needs exactly one of %s.", s.Name, s.Use, choices),
			Subject: b.DefRange.Ptr()}})
	}
}

// chatTemplate reads a model's chat_template: a causal-lm model's Go text/template.
func (l *loader) chatTemplate(m *Model, a *hcl.Attribute, sc *scope) {
	src, ok := l.checkedString(a, sc, "model attribute")
	if !ok {
		return
	}
	if m.Task != "" && m.Task != TaskCausalLM {
		l.add(hcl.Diagnostics{attrDiag(a, nil, "Chat template on a non-causal-lm model",
			fmt.Sprintf("Model %q is a %s model; only causal-lm models take a chat_template.", m.Name, m.Task))})
		return
	}
	t, err := ParseChatTemplate(m.Name, src)
	if err != nil {
		l.add(hcl.Diagnostics{attrDiag(a, nil, "Invalid chat template",
			fmt.Sprintf("Model %q: %s.", m.Name, err))})
		return
	}
	m.ChatTemplate = t
}

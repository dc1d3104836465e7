package pipelines

import (
	"io"
	"os"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics renders diags with source snippets, as `modelrt
// validate` shows them. files is Config.Files; when nil, the files the
// diagnostics name are read from disk for the snippets. width 0: no
// wrapping, so that each message stays greppable.
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, files map[string]*hcl.File) error {
	if files == nil {
		files = map[string]*hcl.File{}
		for _, d := range diags {
			if d.Subject == nil || files[d.Subject.Filename] != nil {
				continue
			}
			if src, err := os.ReadFile(d.Subject.Filename); err == nil {
				files[d.Subject.Filename] = &hcl.File{Bytes: src}
			}
		}
	}
	return hcl.NewDiagnosticTextWriter(w, files, 0, false).WriteDiagnostics(diags)
}

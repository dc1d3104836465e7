package gpt2

import (
	"fmt"
	"testing"

	"github.com/modelrt/modelrt/native/kernels"
)

// BenchmarkDecodeVariants alternates float32 decode variants (kernels.SetDecodeVariant) over
// rounds at batch 1: "old" is the LM head one dot call per row, 1 KiB prefetch and four panels
// a task; "new" the defaults; "grain4" the defaults but four panels a task.
func BenchmarkDecodeVariants(b *testing.B) {
	type v struct {
		name       string
		rows, pf2k bool
		chunk      int
	}
	vs := []v{{"old", false, false, 0}, {"new", true, true, 4 * 768 * 16 * 4}, {"grain4", true, true, 0}}
	for r := range 4 {
		for _, x := range vs {
			b.Run(fmt.Sprintf("%s/%d", x.name, r), func(b *testing.B) {
				defer kernels.SetDecodeVariant(x.rows, x.pf2k, x.chunk)()
				benchDecode(b, smallModel(b))
			})
		}
	}
}

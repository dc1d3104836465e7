// Command toyplugin serves conformance/internal/toylm as a real plugin process, with the flaw
// named by $TOYLM_FLAW (none when unset), so that the contract checks are also tested across
// the process boundary.
package main

import (
	"os"

	"github.com/modelrt/modelrt/conformance/internal/toylm"
	"github.com/modelrt/modelrt/sdk"
)

func main() { sdk.Serve(toylm.New(toylm.Flaw(os.Getenv("TOYLM_FLAW")))) }

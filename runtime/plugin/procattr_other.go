//go:build !linux

package plugin

import "os/exec"

// orphanGuard is a no-op where the kernel has no parent-death signal; the host's signal
// handling and Close still kill every plugin.
func orphanGuard(cmd *exec.Cmd) {}

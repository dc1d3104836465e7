package plugin

import (
	"os/exec"
	"syscall"
)

// orphanGuard asks the kernel to SIGKILL the plugin when the host dies, however it dies (even
// SIGKILL of the host, which no handler can see): no plugin outlives its host.
func orphanGuard(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

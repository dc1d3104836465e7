package sdk

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// shmCreate makes an anonymous memfd of size bytes and maps it shared. The descriptor is
// close-on-exec: exec.Cmd.ExtraFiles dups it into the one child it is meant for, and no other.
// Its size is sealed: the child holds the same file, and a shrunk segment would make the
// host's next access to a slot fault (SIGBUS), a crash of the host rather than of the plugin.
func shmCreate(size int) (*os.File, []byte, error) {
	fd, err := unix.MemfdCreate("modelrt-shm", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "modelrt-shm")
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("ftruncate: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("seal the size: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return f, mem, nil
}

// shmMap maps an inherited segment, after checking that it is as large as announced.
func shmMap(fd, size int) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Size < int64(size) {
		return nil, fmt.Errorf("the segment has %d bytes, %d announced", st.Size, size)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	unix.Close(fd) // the mapping keeps the segment alive
	return mem, nil
}

func shmUnmap(mem []byte) { _ = unix.Munmap(mem) }

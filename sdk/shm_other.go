//go:build !linux

package sdk

import (
	"errors"
	"os"
)

var errShmUnsupported = errors.New("the shared-memory transport needs Linux (memfd)")

func shmCreate(int) (*os.File, []byte, error) { return nil, nil, errShmUnsupported }

func shmMap(int, int) ([]byte, error) { return nil, errShmUnsupported }

func shmUnmap([]byte) {}

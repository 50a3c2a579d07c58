//go:build !linux

package sandbox

import (
	"errors"
	"os"
	"syscall"
)

// supported reports whether children can be started on this platform.
const supported = false

const exePath = ""

func sysProcAttr() *syscall.SysProcAttr { return nil }

func residentBytes(pid int) (uint64, bool) { return 0, false }

func prepareChild() error { return errUnsupported }

func applyLimits(l childLimits) error { return errUnsupported }

var errUnsupported = errors.New("sandbox: child processes are supported on Linux only")

func killGroup(p *os.Process) { p.Kill() }

func socketPair() (host, child *os.File, err error) { return nil, nil, errUnsupported }

func killedBySignal(st *os.ProcessState) bool { return false }

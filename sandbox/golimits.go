package sandbox

import "runtime/debug"

// applyGoLimits sets the child's Go runtime limits: a soft memory limit
// below the hard cap (the collector works harder before the kernel says
// no), and a goroutine stack limit far below Go's 1 GB default, so a
// runaway native recursion ends the child quickly.
func applyGoLimits(l childLimits) {
	if l.MaxMemory > 0 {
		debug.SetMemoryLimit(int64(l.MaxMemory / 4 * 3))
	}
	if l.MaxStack > 0 {
		debug.SetMaxStack(l.MaxStack)
	}
}

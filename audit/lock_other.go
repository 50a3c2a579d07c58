//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package audit

import "os"

// lockFile is a no-op where flock is not available: one process per log
// file is then the operator's responsibility.
func lockFile(*os.File) (unlock func(), err error) { return func() {}, nil }

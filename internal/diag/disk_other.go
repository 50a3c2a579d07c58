//go:build !(linux || darwin || freebsd || dragonfly)

package diag

// FreeDisk is not known on this platform.
func FreeDisk(dir string) (uint64, bool) { return 0, false }

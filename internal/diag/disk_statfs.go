//go:build linux || darwin || freebsd || dragonfly

package diag

import "syscall"

// FreeDisk returns the bytes available to this process in the file system
// holding dir.
func FreeDisk(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}

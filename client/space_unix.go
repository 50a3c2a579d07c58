//go:build unix

package client

import "golang.org/x/sys/unix"

// freeBytes is the space dir's file system has for an unprivileged
// writer, or -1 when it cannot tell.
func freeBytes(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

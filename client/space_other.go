//go:build !unix

package client

// freeBytes cannot tell on this system.
func freeBytes(string) int64 { return -1 }

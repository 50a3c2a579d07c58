// Package diag reads the state of the running Go runtime without hurting
// it: memory statistics from runtime/metrics (which never stops the world,
// unlike runtime.ReadMemStats), goroutine stacks grouped by identical
// stack, and heap profiles in pprof format. Functions write to an
// io.Writer; the console streams what they write. diag does no network I/O.
//
// Usage:
//
//	diag.WriteStats(os.Stdout, diag.ReadMemStats())
//	diag.WriteGoroutines(os.Stdout)
//	diag.WriteHeapProfile(f) // open with: go tool pprof f
package diag

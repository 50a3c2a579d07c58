package diag

import (
	"io"
	"testing"
)

// BenchmarkMemStats is the cost of the memstats command's work.
func BenchmarkMemStats(b *testing.B) {
	b.Run("read", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ReadMemStats()
		}
	})
	b.Run("read+format", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			WriteStats(io.Discard, ReadMemStats())
		}
	})
}

package interp

import (
	"context"
	"io"
	"testing"
)

// BenchmarkEval is the floor under the console's eval round trip.
//
//	go test -run '^$' -bench Eval ./interp/
func BenchmarkEval(b *testing.B) {
	in, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("prepare", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			in.ss.prepare(chunk{src: "1+2"}, in.allowed, limits{maxElems: 1 << 24})
		}
	})
	b.Run("eval", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if v, err := in.Eval(ctx, "1+2", io.Discard); err != nil || v != "3" {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("yaegi", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			in.yi.EvalWithContext(ctx, "1+2")
		}
	})
}

// BenchmarkNew is the cost of a session's first eval.
func BenchmarkNew(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := New(Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

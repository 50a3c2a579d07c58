package diag

import (
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFitTrend(t *testing.T) {
	var linear, flat []HeapSample
	for i := 0; i < 10; i++ {
		at := time.Duration(i) * 6 * time.Second // 10 per minute
		linear = append(linear, HeapSample{At: at, Cycle: uint64(i), Live: uint64(1<<20 + i*1000), Goroutines: 10 + i})
		flat = append(flat, HeapSample{At: at, Cycle: uint64(i), Live: 1 << 20, Goroutines: 10})
	}
	tr := FitTrend(linear)
	if math.Abs(tr.BytesPerCycle-1000) > 1e-6 || math.Abs(tr.BytesPerMinute-10000) > 1e-3 || tr.R2 < 0.999 || math.Abs(tr.GoroutinesPerMinute-10) > 1e-6 {
		t.Fatalf("linear: %+v", tr)
	}
	if tr := FitTrend(flat); tr.BytesPerMinute != 0 || tr.R2 != 0 {
		t.Fatalf("flat: %+v", tr)
	}
	if tr := FitTrend(linear[:1]); tr.Samples != 1 || tr.BytesPerMinute != 0 {
		t.Fatalf("one sample: %+v", tr)
	}
}

var keptForDiffTest [][]byte

func allocForDiffTest() {
	for i := 0; i < 200; i++ {
		keptForDiffTest = append(keptForDiffTest, make([]byte, 64<<10))
	}
}

func TestDiffHeap(t *testing.T) {
	runtime.GC()
	before, err := HeapProfile()
	if err != nil {
		t.Fatal(err)
	}
	allocForDiffTest()
	runtime.GC()
	after, err := HeapProfile()
	if err != nil {
		t.Fatal(err)
	}
	sites, err := DiffHeap(before, after, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) == 0 || !strings.Contains(sites[0].Function, "allocForDiffTest") || sites[0].Bytes < 8<<20 {
		t.Fatalf("top site: %+v", sites)
	}
	if _, err := DiffHeap([]byte("garbage"), after, 3); err == nil {
		t.Fatal("DiffHeap of garbage: got no error")
	}
}

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

	// The t-statistics: a perfect line is certain, a flat one and two
	// points say nothing, noise around a flat line is not significant,
	// and a small rise under large noise is not either.
	if tr.T < 1000 || tr.GoroutinesT < 1000 {
		t.Errorf("linear: T %v, goroutines T %v; want very large", tr.T, tr.GoroutinesT)
	}
	if tr := FitTrend(flat); tr.T != 0 || tr.GoroutinesT != 0 {
		t.Errorf("flat: T %v %v; want 0", tr.T, tr.GoroutinesT)
	}
	if tr := FitTrend(linear[:2]); tr.T != 0 {
		t.Errorf("two samples: T %v; want 0", tr.T)
	}
	var noisy, weak []HeapSample
	for i := 0; i < 12; i++ {
		at := time.Duration(i) * 6 * time.Second
		jitter := (i%2*2 - 1) * (50 << 10) // ±50 KiB, no trend
		noisy = append(noisy, HeapSample{At: at, Cycle: uint64(i), Live: uint64(1<<20 + jitter)})
		weak = append(weak, HeapSample{At: at, Cycle: uint64(i), Live: uint64(1<<20 + jitter + i*1000)})
	}
	if tr := FitTrend(noisy); math.Abs(tr.T) > 1 {
		t.Errorf("noise: T %v; want |T| <= 1", tr.T)
	}
	if tr := FitTrend(weak); tr.BytesPerMinute <= 0 || tr.T >= 3.4 {
		t.Errorf("a small rise under noise: %+v; want a positive slope, T < 3.4", tr)
	}
}

var keptForDiffTest [][]byte

func allocForDiffTest() {
	// 400 blocks of 64 KiB: the profile samples about one allocation in
	// eight, so the estimate of 25 MiB is far above the 8 MiB checked.
	for i := 0; i < 400; i++ {
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

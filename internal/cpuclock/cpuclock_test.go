package cpuclock

import (
	"runtime"
	"testing"
	"time"
)

// TestClocksAdvance checks that a busy loop shows on both clocks, that the
// thread's clock counts no more than the process's, and that sleeping
// adds next to nothing to the thread's.
func TestClocksAdvance(t *testing.T) {
	if !Measured {
		t.Skip("no thread clocks here")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, p0 := Thread(), Process()
	x := 1.0
	for Thread()-t0 < 20*time.Millisecond {
		for range 1000 {
			x = x*1.0000001 + 1e-9
		}
	}
	busy, proc := Thread()-t0, Process()-p0
	if busy < 20*time.Millisecond || proc < busy-time.Millisecond {
		t.Errorf("busy loop: thread %v, process %v (x=%v)", busy, proc, x)
	}
	t1 := Thread()
	time.Sleep(50 * time.Millisecond)
	if slept := Thread() - t1; slept > 10*time.Millisecond {
		t.Errorf("sleeping 50 ms used %v of the thread's CPU time", slept)
	}
}

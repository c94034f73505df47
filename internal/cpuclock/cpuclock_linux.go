// Package cpuclock reads the CPU time of the calling thread and of the
// process, for the figures that must not count time spent waiting for a
// CPU on a busy machine.
package cpuclock

import (
	"time"

	"golang.org/x/sys/unix"
)

// Measured says whether Thread and Process read anything here (Linux).
const Measured = true

// Thread is the CPU time (user and system) the calling thread has used;
// the caller keeps its goroutine on the thread (runtime.LockOSThread)
// between two readings.
func Thread() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Process is the CPU time (user and system) the process has used.
func Process() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

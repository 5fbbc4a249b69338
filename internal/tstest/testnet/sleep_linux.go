// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package testnet

import (
	"time"

	"golang.org/x/sys/unix"
)

// SleepUntil blocks the calling goroutine's thread in nanosleep(2) until
// t. time.Sleep is not precise enough for an emulated link (a delay proxy): when the
// process is idle, the runtime waits for timers in epoll_wait, whose
// timeout is whole milliseconds, so a sleep of 0.3 ms lasts about 1.1 ms
// here, and a frame that follows another closely on the link would arrive
// up to a millisecond late. nanosleep(2) with no timer slack wakes the
// thread within about 0.1 ms here (a halted vCPU's wake-up), whatever the
// sleep's length.
func SleepUntil(t time.Time) {
	for slackSet := false; ; slackSet = true {
		w := time.Until(t)
		if w <= 0 {
			return
		}
		if !slackSet {
			unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0) // this thread's timers: exact (default slack 50 µs)
		}
		ts := unix.NsecToTimespec(w.Nanoseconds())
		unix.Nanosleep(&ts, nil) // EINTR (the runtime's preemption signal): the loop sleeps the rest
	}
}

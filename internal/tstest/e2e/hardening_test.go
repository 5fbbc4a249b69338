// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// rssKiB is a process's resident memory.
func rssKiB(t *testing.T, p *Proc) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestUnauthenticatedExhaustion replays issue 14's flood: 5000
// connections from one source that never become members (handshakes
// without a credential, handshakes that stall, handshake frames claiming
// 64 KiB). The relay closes each at once or at its deadline, its memory
// grows by less than 64 MiB, and members' portals keep working throughout.
func TestUnauthenticatedExhaustion(t *testing.T) {
	target := echoServer(t)
	env := NewEnv(t)
	env.HubBin = PlainHubBinary(t) // its memory is what is measured
	p := startPairIn(t, env, outletYAML(outletItem("echo", target, "inlet-from-saas")), nil)
	in := p.inlet(t, "echo")
	if got, err := roundTrip(in, "before"); err != nil || got != "before" {
		t.Fatalf("portal before the flood: %q %v", got, err)
	}
	relay := p.hub.Proc
	before := rssKiB(t, relay)

	const total, parallel = 5000, 1000
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	var refused, closed, capped atomic.Int64
	attack := func(i int) {
		c, err := d.Dial("tcp", p.hub.Addr)
		if err != nil {
			capped.Add(1)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		c.Write(wire.Preface(wire.KindControl))
		switch i % 3 {
		case 0: // a full handshake, no credential: refused at once
			st, _ := noiseconn.NewStatic(key.NewNodePrivate())
			hello, _ := wire.Marshal(control.ClientHello{Version: wire.ProtocolVersion})
			nc, err := noiseconn.Initiate(context.Background(), c, &noiseconn.Config{Static: st, Prologue: wire.Prologue("control", wire.OurOffer, nil), Mode: noiseconn.Hybrid},
				func(key.NodePublic, []byte) ([]byte, error) { return hello, nil })
			if err != nil {
				capped.Add(1)
				return
			}
			b, err := wire.ReadMessage(nc)
			if m, derr := control.Decode(b); err == nil && derr == nil && m.Err != nil && m.Err.Code == control.ErrCodeNotMember {
				refused.Add(1)
			}
		case 1: // a frame header claiming 64 KiB: closed at once, nothing allocated
			c.Write([]byte{0xff, 0xff})
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				closed.Add(1)
			}
		default: // silence after the preface, held against the caps for a while
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			c.Read(make([]byte, 1))
		}
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				attack(i)
			}
		}()
	}
	// Members keep working during the flood.
	stop := make(chan struct{})
	var portalErr error
	var portals int
	var pw sync.WaitGroup
	pw.Add(1)
	go func() {
		defer pw.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			msg := fmt.Sprint("during ", portals)
			if got, err := roundTrip(in, msg); err != nil || got != msg {
				portalErr = fmt.Errorf("portal %d during the flood: %q, %v", portals, got, err)
				return
			}
			portals++
		}
	}()
	var peak int64
	for i := range total {
		work <- i
		if i%500 == 0 {
			peak = max(peak, rssKiB(t, relay))
		}
	}
	close(work)
	wg.Wait()
	close(stop)
	pw.Wait()
	peak = max(peak, rssKiB(t, relay))
	if portalErr != nil {
		t.Fatal(portalErr)
	}
	t.Logf("%d attempts: %d refused without a credential, %d oversized frames closed at once, %d turned away at the caps; %d portals during the flood; relay RSS %d → peak %d KiB",
		total, refused.Load(), closed.Load(), capped.Load(), portals, before, peak)
	if growth := peak - before; growth > 64<<10 {
		t.Fatalf("the relay grew by %d KiB under the flood (limit 64 MiB)", growth)
	}
	if refused.Load() == 0 || closed.Load() == 0 {
		t.Fatal("the flood did not reach the relay: this test proves nothing")
	}
	if got, err := roundTrip(in, "after"); err != nil || got != "after" {
		t.Fatalf("portal after the flood: %q %v", got, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package portal

import (
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// Memory benchmarks: what an idle channel and an open stream hold, both
// ends in this process (the portal layer and the multiplexer over
// loopback TCP; an agent adds its target connection and pipe goroutines,
// which scripts/bench measures on the real processes).

// benchNode is a node for benchmarks (newNode needs a *testing.T).
func benchNode(b *testing.B, auth *enroll.Authority, relay string, attrs map[string]string) *Self {
	b.Helper()
	priv := key.NewNodePrivate()
	st, err := noiseconn.NewStatic(priv)
	if err != nil {
		b.Fatal(err)
	}
	cred, err := auth.Issue(enroll.Member{ID: string(priv.Public().ID()), NodeKey: priv.Public().Raw32(), Attributes: attrs, Relay: relay})
	if err != nil {
		b.Fatal(err)
	}
	return &Self{Static: st, Authority: auth.Signer.Public(), Credential: func() []byte { return cred }, Now: auth.Now}
}

// benchPair opens a channel over a loopback TCP pair; the outlet side
// echoes every stream and admits maxStreams at once (the agent's limit
// per peer is 512; a session's accept queue is allocated at that size).
func benchPair(b *testing.B, in, out *Self, relay string, maxStreams int) (inlet, outlet *Channel, conns []net.Conn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	x, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	y, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		var err error
		outlet, err = Answer(ctx, y, AnswerOptions{Self: out, Token: token, Admit: admitAll, Relay: relay, MaxStreams: maxStreams})
		done <- err
	}()
	outCred, err := enroll.VerifyCredential(out.Authority, out.Credential(), out.Static.Public(), out.now())
	if err != nil {
		b.Fatal(err)
	}
	inlet, err = Dial(ctx, x, DialOptions{Self: in, Token: token, Relay: relay, PeerID: outCred.ID})
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			req, err := outlet.Accept(ctx, nil)
			if err != nil {
				return
			}
			st, err := req.Accept()
			if err != nil {
				continue
			}
			go func() {
				io.Copy(st, st)
				st.CloseWrite()
			}()
		}
	}()
	return inlet, outlet, []net.Conn{x, y}
}

// echoOne opens a stream, sends one byte and reads it back; the stream
// stays open unless closeIt.
func echoOne(b *testing.B, ch *Channel, closeIt bool) net.Conn {
	b.Helper()
	st, err := ch.Open(context.Background(), "echo", nil)
	if err != nil {
		b.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.Write([]byte{1}); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(st, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	st.SetDeadline(time.Time{})
	if closeIt {
		st.CloseWrite()
		io.Copy(io.Discard, st)
		st.Close()
	}
	return st
}

// heap is the live heap and the goroutine stacks after a full GC.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// BenchmarkIdleChannelMemory opens channels (hybrid handshake, credentials
// both ways, one portal carried and closed) and reports what each one
// holds once idle: "B/channel-end" is one node's share, with its Noise
// state, its multiplexer's goroutines and its TCP socket's Go side.
func BenchmarkIdleChannelMemory(b *testing.B) {
	if raceEnabled {
		b.Skip("the race detector inflates every allocation")
	}
	const channels = 50
	auth := testAuthority(time.Now())
	auth.Now = time.Now
	var per float64
	for b.Loop() {
		out := benchNode(b, auth, "acme-relay", nil)
		var ins []*Self
		for i := 0; i < channels; i++ {
			ins = append(ins, benchNode(b, auth, "", map[string]string{"x": "true"}))
		}
		before := heap()
		var chs []*Channel
		var conns []net.Conn
		for _, in := range ins {
			ic, oc, cs := benchPair(b, in, out, "acme-relay", 512)
			echoOne(b, ic, true)
			chs, conns = append(chs, ic, oc), append(conns, cs...)
		}
		time.Sleep(50 * time.Millisecond) // the streams' ends settle
		per = float64(heap()-before) / (2 * channels)
		for _, c := range chs {
			c.Close()
		}
		for _, c := range conns {
			c.Close()
		}
	}
	b.ReportMetric(per, "B/channel-end")
}

// BenchmarkOpenStreamMemory holds streams open on one channel (each has
// carried one byte each way) and reports what each holds at both ends:
// "B/stream-end" is one node's share.
func BenchmarkOpenStreamMemory(b *testing.B) {
	if raceEnabled {
		b.Skip("the race detector inflates every allocation")
	}
	const streams = 500
	auth := testAuthority(time.Now())
	auth.Now = time.Now
	var per float64
	for b.Loop() {
		in := benchNode(b, auth, "", nil)
		out := benchNode(b, auth, "acme-relay", nil)
		ic, oc, conns := benchPair(b, in, out, "acme-relay", 1024)
		echoOne(b, ic, true) // the channel's own first-use allocations
		before := heap()
		var sts []net.Conn
		for i := 0; i < streams; i++ {
			sts = append(sts, echoOne(b, ic, false))
		}
		time.Sleep(50 * time.Millisecond)
		per = float64(heap()-before) / (2 * streams)
		for _, st := range sts {
			st.Close()
		}
		ic.Close()
		oc.Close()
		for _, c := range conns {
			c.Close()
		}
	}
	b.ReportMetric(per, "B/stream-end")
}

// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package hub

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
	"github.com/edgeportal/connect/wire/noiseconn"
)

// errSlowPeer means a connection's outbound queue is full: its node is
// not reading. Only messages from other connections see it.
var errSlowPeer = errors.New("the node is not reading its control connection")

// controlConn is one node's authenticated control channel. Its read loop
// runs on the goroutine that accepted it; a writer goroutine drains out.
type controlConn struct {
	s        *Server
	nc       *noiseconn.Conn
	peer     key.NodePublic
	id       string
	version  string
	platform string
	log      *slog.Logger

	out       chan []byte   // messages for the writer; bounded by OutboundQueue
	done      chan struct{} // closed when the connection is closed
	closeOnce sync.Once
	wg        sync.WaitGroup // the writer and the goroutines this connection started

	mu     sync.Mutex // guards member, relay and paused
	member bool       // redeemed here, or was a member when it connected
	relay  string     // the relay this connection registered, or ""
	paused bool       // the customer paused the node

	cmdMu     sync.Mutex // serializes command delivery; guards delivered
	delivered uint64     // highest command seq pushed on this connection
}

func (cc *controlConn) isMember() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.member
}

func (cc *controlConn) setMember() {
	cc.mu.Lock()
	cc.member = true
	cc.mu.Unlock()
}

func (cc *controlConn) relayName() string {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.relay
}

// close closes the connection; the read loop and the writer then end.
func (cc *controlConn) close() {
	cc.closeOnce.Do(func() {
		close(cc.done)
		cc.nc.Close()
	})
}

// goTracked runs f in a goroutine the connection waits for when it ends.
func (cc *controlConn) goTracked(f func()) {
	cc.wg.Add(1)
	go func() {
		defer cc.wg.Done()
		f()
	}()
}

// writer writes queued messages until the connection closes. A failed or
// timed-out write closes the connection.
func (cc *controlConn) writer() {
	for {
		select {
		case <-cc.done:
			return
		case b := <-cc.out:
			if b == nil { // queued by dispatch: close once the answers before it are out
				cc.close()
				return
			}
			cc.nc.SetWriteDeadline(time.Now().Add(WriteTimeout))
			if err := wire.WriteMessage(cc.nc, b); err != nil {
				cc.log.Debug("control write failed; closing", "err", err)
				cc.close()
				return
			}
		}
	}
}

// send queues b, waiting while the queue is full. Only the connection's
// own goroutines use it: they may wait for their own node.
func (cc *controlConn) send(b []byte) error {
	select {
	case cc.out <- b:
		return nil
	case <-cc.done:
		return net.ErrClosed
	}
}

// offer queues b without waiting. Other connections' goroutines use it,
// so one node's slowness never blocks another's read loop.
func (cc *controlConn) offer(b []byte) error {
	select {
	case <-cc.done:
		return net.ErrClosed
	default:
	}
	select {
	case cc.out <- b:
		return nil
	default:
		return errSlowPeer
	}
}

// push offers a hub-initiated message (ID 0).
func (cc *controlConn) push(t control.Type, v any) error {
	b, err := control.Encode(t, 0, v)
	if err != nil {
		return err
	}
	return cc.offer(b)
}

// serveControl runs the hub side of a control connection's handshake, then
// its read loop, until the connection ends.
func (s *Server) serveControl(ctx context.Context, c net.Conn, slot *pendingSlot) {
	hctx, cancel := context.WithTimeout(ctx, s.handshakeTimeout)
	defer cancel()
	hello, _ := wire.Marshal(control.ServerHello{
		Version:  wire.ProtocolVersion,
		Project:  s.dir.Config.Project,
		HubBuild: buildinfo.Version(),
		TimeUnix: s.now().Unix(),
	})
	hsStart := time.Now()
	nc, payload, err := noiseconn.Server(hctx, c, s.dir.HubKey, wire.Prologue("control", nil), hello)
	if err != nil {
		s.metrics.rejected.WithLabelValues("handshake").Inc()
		s.log.Debug("control handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	var ch control.ClientHello
	if err := wire.Unmarshal(payload, &ch); err != nil || ch.Version != wire.ProtocolVersion {
		s.log.Debug("bad client hello", "remote", c.RemoteAddr().String(), "err", err, "version", ch.Version)
		nc.Close()
		return
	}
	s.metrics.handshake.Observe(time.Since(hsStart).Seconds())
	c.SetDeadline(time.Time{})
	slot.release()
	peer := nc.Peer()
	cc := &controlConn{
		s: s, nc: nc, peer: peer, id: string(peer.ID()), version: ch.Build, platform: ch.Platform,
		out: make(chan []byte, OutboundQueue), done: make(chan struct{}),
	}
	cc.log = s.log.With("node", cc.id)
	if _, err := s.auth.Member(ctx, peer); err == nil {
		cc.member = true
		s.touch(cc.id, ch.Build, ch.Platform)
	}
	if !s.members.add(cc) {
		nc.Close() // the server is shutting down
		return
	}
	s.stats.ControlConns.Add(1)
	cc.goTracked(cc.writer)
	defer func() {
		cc.close()
		cc.wg.Wait()
		s.removeConn(cc)
		s.stats.ControlConns.Add(-1)
	}()
	cc.log.Debug("control connection up", "member", cc.member, "remote", c.RemoteAddr().String())
	if cc.member {
		cc.goTracked(func() { s.deliverPending(ctx, cc) })
	}
	if errors.Is(cc.readLoop(ctx), errClosing) {
		// The writer closes the connection once the last answer is out.
		t := time.NewTimer(WriteTimeout)
		defer t.Stop()
		select {
		case <-cc.done:
		case <-t.C:
		}
	}
}

// errClosing means a handler asked to close the connection after its
// answer: the read loop stops and the writer flushes, then closes.
var errClosing = errors.New("closing after the answer")

// readLoop reads and dispatches messages until the connection ends.
func (cc *controlConn) readLoop(ctx context.Context) error {
	for {
		cc.nc.SetReadDeadline(time.Now().Add(ControlIdleTimeout))
		b, err := wire.ReadMessage(cc.nc)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				cc.log.Debug("control connection ended", "err", err)
			}
			return err
		}
		m, err := control.Decode(b)
		if err != nil {
			cc.log.Warn("bad control message; closing", "err", err)
			return err
		}
		if err := cc.s.dispatch(ctx, cc, m); err != nil {
			return err
		}
	}
}

// removeConn forgets a closed connection: its member entry and the relay
// it held.
func (s *Server) removeConn(cc *controlConn) {
	s.members.remove(cc)
	if name := s.relays.release(cc); name != "" {
		cc.log.Info("relay down", "relay", name)
	}
	if cc.isMember() {
		s.touch(cc.id, "", "")
	}
}

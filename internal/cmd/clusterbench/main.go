// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command clusterbench measures the hub as a cluster: a throwaway
// PostgreSQL (pgtest), two relay nodes sharing it as real processes, and
// N simulated agents in this process — real control connections (Noise,
// hybrid) with real credentials, issued with the authority key from the
// AUTH directory as internal/perf's hub memory figure does, and real relay
// registrations, half on each relay node. It reports each relay node's
// memory per idle agent, then restarts one relay node and reports how
// long until every agent is back (they reconnect as agents do: jittered
// backoff, the next relay address each attempt) and the statements and
// transactions the database saw per reconnect.
//
//	go run ./internal/cmd/clusterbench [-agents 10000] [-json FILE]
//
// A development tool; nothing imports it. Run it from the module root.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgeportal/connect/enroll"
	"github.com/edgeportal/connect/hub/authority"
	"github.com/edgeportal/connect/internal/tstest/pgtest"
	"github.com/edgeportal/connect/wire"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/controlconn"
	"github.com/edgeportal/connect/wire/key"
)

// Report is every number of a run.
type Report struct {
	Agents             int     `json:"agents"`
	KiBPerAgent        []int64 `json:"relay_kib_per_idle_agent"` // per relay node
	RSSBeforeKiB       []int64 `json:"relay_rss_before_kib"`
	RSSAfterKiB        []int64 `json:"relay_rss_after_kib"`
	ConnectSeconds     float64 `json:"connect_all_seconds"`
	Reconnects         int64   `json:"reconnects"`
	BackSeconds        float64 `json:"all_back_after_restart_seconds"`
	QueriesPerConn     float64 `json:"queries_per_first_connection"`
	QueriesPerReconn   float64 `json:"queries_per_reconnect"`
	XactsPerReconn     float64 `json:"transactions_per_reconnect"`
	QueriesPerSecIdle  float64 `json:"queries_per_second_idle"`
	ReconnectQueriesPS float64 `json:"queries_per_second_during_reconnect"`
}

func main() {
	n := flag.Int("agents", 10000, "simulated agents")
	jsonOut := flag.String("json", "", "also write the numbers to this file")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	r, err := run(ctx, *n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(b))
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	worst := max(r.KiBPerAgent[0], r.KiBPerAgent[1])
	fmt.Printf("memory per idle agent per relay node: %d and %d KiB (target ≤ 32 KiB) %s\n", r.KiBPerAgent[0], r.KiBPerAgent[1], verdict(worst <= 32))
	fmt.Printf("all agents back after a relay node restart: %.1f s (target ≤ 60 s) %s\n", r.BackSeconds, verdict(r.BackSeconds <= 60))
	fmt.Printf("database per reconnect: %.1f statements, %.1f transactions; idle: %.1f statements/s\n", r.QueriesPerReconn, r.XactsPerReconn, r.QueriesPerSecIdle)
	if *jsonOut != "" {
		os.WriteFile(*jsonOut, b, 0o644)
	}
}

type relayProc struct {
	dir, addr, metrics string
	cmd                *exec.Cmd
	done               chan struct{}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func hubCmd(bin string, args ...string) error {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args[:2], " "), err, out)
	}
	return nil
}

func (p *relayProc) start(bin string) error {
	p.cmd = exec.Command(bin, "serve", "--dir", p.dir, "--log-level", "warn", "--metrics", p.metrics)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(p.dir, "admin.sock")); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("relay node in %s did not start", p.dir)
}

func (p *relayProc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	os.Remove(filepath.Join(p.dir, "admin.sock"))
}

func rssKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// queries scrapes a relay node's statement counter.
func queries(metricsAddr string) float64 {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "hub_store_queries_total "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func xacts(ctx context.Context, dsn string) float64 {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0
	}
	defer c.Close(ctx)
	var n float64
	c.QueryRow(ctx, `select xact_commit + xact_rollback from pg_stat_database where datname = 'relays'`).Scan(&n)
	return n
}

// agent is one simulated agent.
type agent struct {
	i      int
	static key.NodePrivate
	cred   []byte
	relay  string
	up     atomic.Bool
	mu     sync.Mutex // guards conn
	conn   *controlconn.Conn
}

func (a *agent) connect(ctx context.Context, addr string, peer key.NodePublic) error {
	c, err := controlconn.Dial(ctx, controlconn.Options{Addr: addr, Kind: wire.KindControl, Static: a.static, Peer: peer,
		Hello: control.ClientHello{Version: wire.ProtocolVersion, Build: "clusterbench", Credential: a.cred}})
	if err != nil {
		return err
	}
	if err := c.Call(ctx, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: a.relay}, nil); err != nil {
		c.Close()
		return fmt.Errorf("register %s: %w", a.relay, err)
	}
	a.mu.Lock()
	a.conn = c
	a.mu.Unlock()
	a.up.Store(true)
	return nil
}

// run keeps the agent connected as an agent does: on a loss, jittered
// backoff from 500 ms, the next relay address each attempt.
func (a *agent) run(ctx context.Context, addrs []string, start int, peer key.NodePublic, reconnects *atomic.Int64) {
	attempt := start
	for ctx.Err() == nil {
		a.mu.Lock()
		c := a.conn
		a.mu.Unlock()
		if c != nil {
			select {
			case <-ctx.Done():
				c.Close()
				return
			case <-c.Done():
			}
			a.up.Store(false)
			c.Close()
			attempt++
		}
		backoff := 500 * time.Millisecond
		for ctx.Err() == nil {
			wait := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			err := a.connect(ctx, addrs[attempt%len(addrs)], peer)
			if err == nil {
				reconnects.Add(1)
				break
			}
			attempt++
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

func run(ctx context.Context, n int) (*Report, error) {
	pg, err := pgtest.New(ctx)
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	c, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		return nil, err
	}
	for _, db := range []string{"relays", "auth"} {
		if _, err := c.Exec(ctx, "create database "+db); err != nil {
			return nil, err
		}
	}
	c.Close(ctx)
	work, err := os.MkdirTemp("", "clusterbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "initech-hub")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/hub").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the hub (run from the module root): %v: %s", err, out)
	}
	relays := []*relayProc{
		{dir: filepath.Join(work, "hub1"), addr: freeAddr(), metrics: freeAddr()},
		{dir: filepath.Join(work, "hub2"), addr: freeAddr(), metrics: freeAddr()},
	}
	auth := filepath.Join(work, "auth")
	if err := hubCmd(bin, "init", "--dir", relays[0].dir, "--addr", relays[0].addr, "--store", pg.DSN("relays")); err != nil {
		return nil, err
	}
	if err := hubCmd(bin, "authority", "init", "--dir", auth, "--hub-dir", relays[0].dir, "--store", pg.DSN("auth")); err != nil {
		return nil, err
	}
	if err := hubCmd(bin, "init", "--dir", relays[1].dir, "--addr", relays[1].addr, "--store", pg.DSN("relays"), "--key-from", relays[0].dir); err != nil {
		return nil, err
	}
	for _, p := range relays {
		if err := p.start(bin); err != nil {
			return nil, err
		}
		defer p.stop()
	}
	ad, err := authority.LoadDir(auth)
	if err != nil {
		return nil, err
	}
	auth0, err := ad.Authority(nil)
	if err != nil {
		return nil, err
	}
	peer := ad.Config.RelayKey
	addrs := []string{relays[0].addr, relays[1].addr}
	time.Sleep(time.Second)
	r := &Report{Agents: n}
	for _, p := range relays {
		r.RSSBeforeKiB = append(r.RSSBeforeKiB, rssKiB(p.cmd.Process.Pid))
	}
	q0 := queries(relays[0].metrics) + queries(relays[1].metrics)

	agents := make([]*agent, n)
	for i := range agents {
		static := key.NewNodePrivate()
		relay := fmt.Sprintf("bench-%05d", i)
		cred, err := auth0.Issue(enroll.Member{ID: string(static.Public().ID()), NodeKey: static.Public().Raw32(), Relay: relay})
		if err != nil {
			return nil, err
		}
		agents[i] = &agent{i: i, static: static, cred: cred, relay: relay}
	}
	fmt.Fprintf(os.Stderr, "clusterbench: connecting %d agents across two relay nodes\n", n)
	start := time.Now()
	work2 := make(chan *agent)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work2 {
				var err error
				for try := 0; try < 5; try++ {
					if err = a.connect(ctx, addrs[a.i%2], peer); err == nil {
						break
					}
					time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for _, a := range agents {
		work2 <- a
	}
	close(work2)
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return nil, fmt.Errorf("connecting: %v", e)
	}
	r.ConnectSeconds = time.Since(start).Seconds()
	q1 := queries(relays[0].metrics) + queries(relays[1].metrics)
	r.QueriesPerConn = (q1 - q0) / float64(n)

	actx, stopAgents := context.WithCancel(ctx)
	var reconnects atomic.Int64
	var agentsWG sync.WaitGroup
	for _, a := range agents {
		agentsWG.Add(1)
		go func() {
			defer agentsWG.Done()
			a.run(actx, addrs, a.i%2, peer, &reconnects)
		}()
	}
	defer func() {
		stopAgents()
		agentsWG.Wait()
	}()
	// Keep the idle connections alive (the relay closes one silent for 90 s).
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-actx.Done():
				return
			case <-t.C:
			}
			for _, a := range agents {
				a.mu.Lock()
				c := a.conn
				a.mu.Unlock()
				if c != nil && a.up.Load() {
					pctx, cancel := context.WithTimeout(actx, 10*time.Second)
					c.Call(pctx, control.TypePing, control.Ping{TimeUnix: time.Now().Unix()}, nil)
					cancel()
				}
			}
		}
	}()
	time.Sleep(5 * time.Second)
	for i, p := range relays {
		rss := rssKiB(p.cmd.Process.Pid)
		r.RSSAfterKiB = append(r.RSSAfterKiB, rss)
		per := n / 2
		if i == 0 {
			per = n - n/2
		}
		r.KiBPerAgent = append(r.KiBPerAgent, (rss-r.RSSBeforeKiB[i])/int64(per))
	}
	qIdle0 := queries(relays[0].metrics) + queries(relays[1].metrics)
	time.Sleep(6 * time.Second)
	qIdle1 := queries(relays[0].metrics) + queries(relays[1].metrics)
	r.QueriesPerSecIdle = (qIdle1 - qIdle0) / 6

	// Restart relay node 2: its agents reconnect (to relay node 1 first,
	// as agents round-robin), then come back to both.
	fmt.Fprintf(os.Stderr, "clusterbench: restarting relay node 2\n")
	q1a := queries(relays[0].metrics)
	x0 := xacts(ctx, pg.DSN(""))
	restart := time.Now()
	relays[1].stop()
	if err := relays[1].start(bin); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		down := 0
		for _, a := range agents {
			if !a.up.Load() {
				down++
			}
		}
		if down == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d agents still down 3 minutes after the restart", down)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.BackSeconds = time.Since(restart).Seconds()
	r.Reconnects = reconnects.Load()
	time.Sleep(time.Second)
	dq := queries(relays[0].metrics) - q1a + queries(relays[1].metrics)
	r.QueriesPerReconn = dq / float64(max(r.Reconnects, 1))
	r.XactsPerReconn = (xacts(ctx, pg.DSN("")) - x0) / float64(max(r.Reconnects, 1))
	r.ReconnectQueriesPS = dq / (r.BackSeconds + 1)
	return r, nil
}

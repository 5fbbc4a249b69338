// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command perf is the benchmark behind scripts/bench: it starts a hub and
// nodes as real processes on loopback, a sink, an echo and (when
// installed) an iperf3 server, and measures a direct TCP connection and
// the same through an inlet → hub → outlet portal in the same run, so
// machine noise cancels in the ratios. Figures that noise moves are the
// medians of interleaved rounds (direct, portal, direct, portal, …).
//
// It prints one row per target of the data path (issue 16) with the
// measured value and PASS or MISS; --json writes the same rows and the
// raw figures behind them. A path delayed by 20 ms one way between each
// node and the hub is emulated with this tool's own delay proxy
// (delay.go); rows say what it costs itself.
//
//	go run ./internal/cmd/perf [--short] [--json FILE] [--nodes N] [--rounds N] [--latency]
//
// A development tool; nothing imports it.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Options size a run.
type Options struct {
	Short    bool
	Rounds   int           // interleaved rounds of the noisy figures
	Duration time.Duration // per throughput figure
	RTTs     int           // request/response samples per round
	Setups   int           // new portals per round (channel up)
	Channels int           // first portals of a new channel (agent restarts)
	Conc     int           // concurrent portals
	Nodes    int           // idle simulated nodes at the hub
	Peers    int           // simulated peers holding idle channels
	Streams  int           // open streams on one channel
	Shakes   int           // handshakes per mode

	DelayedDuration time.Duration // delayed-path throughput figure
	DelayedSetups   int           // new portals on the delayed path
	DelayedChannels int           // first portals of a new channel on it
	OneWay          time.Duration // node ↔ hub one-way delay
	Rate            float64       // node ↔ hub link rate, bytes/s
}

// FullOptions and ShortOptions are the two sizes of a run.
var (
	FullOptions = Options{Rounds: 3, Duration: 4 * time.Second, RTTs: 3000, Setups: 300, Channels: 15, Conc: 1000,
		Nodes: 1000, Peers: 1000, Streams: 400, Shakes: 200,
		DelayedDuration: 5 * time.Second, DelayedSetups: 20, DelayedChannels: 4, OneWay: 20 * time.Millisecond, Rate: 125e6}
	ShortOptions = Options{Short: true, Rounds: 1, Duration: time.Second, RTTs: 300, Setups: 40, Channels: 2, Conc: 100,
		Nodes: 50, Peers: 30, Streams: 60, Shakes: 20,
		DelayedDuration: time.Second, DelayedSetups: 3, DelayedChannels: 1, OneWay: 20 * time.Millisecond, Rate: 125e6}
)

func main() {
	if to := os.Getenv(relayEnv); to != "" {
		runRelay(to)
		return
	}
	short := flag.Bool("short", false, "a quick run (tests, CI): fewer samples, one round")
	jsonOut := flag.String("json", "", "also write the rows and raw figures to this `FILE`")
	nodes := flag.Int("nodes", 0, "idle simulated nodes for the hub memory figure (default 1000, --short 50)")
	rounds := flag.Int("rounds", 0, "interleaved rounds of the noisy figures (default 3, --short 1)")
	latency := flag.Bool("latency", false, "only the latency figures, round after round (for work on the open path)")
	flag.Parse()
	o := FullOptions
	if *short {
		o = ShortOptions
	}
	if *nodes > 0 {
		o.Nodes = *nodes
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if *latency {
		if err := Latency(ctx, max(*rounds, 1), os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "perf:", err)
			os.Exit(1)
		}
		return
	}
	r, err := Run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		os.Exit(1)
	}
	Print(os.Stdout, r)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "perf:", err)
			os.Exit(1)
		}
	}
}

// agentProc is one node process.
type agentProc struct {
	name     string // log file prefix
	args     []string
	stateDir string
	metrics  string // its metrics listener
	cmd      *exec.Cmd
}

type world struct {
	dir, bin                string
	hubDir, authDir, hubAdr string
	hub                     *exec.Cmd
	others                  []*exec.Cmd // authority
	mu                      sync.Mutex  // guards agents
	agents                  []*agentProc
}

func (w *world) tool(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(w.bin, name), args...)
	var eb bytes.Buffer
	cmd.Stderr = &eb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, args[0], err, strings.TrimSpace(eb.String()))
	}
	return string(out), nil
}

func (w *world) spawn(logName, bin string, args ...string) (*exec.Cmd, error) {
	f, err := os.OpenFile(filepath.Join(w.dir, logName+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(w.bin, bin), args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func stop(c *exec.Cmd) {
	if c == nil || c.Process == nil {
		return
	}
	c.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
	}
}

func (w *world) close() {
	w.mu.Lock()
	agents := w.agents
	w.mu.Unlock()
	for _, a := range agents {
		stop(a.cmd)
	}
	for _, c := range w.others {
		stop(c)
	}
	stop(w.hub)
	if os.Getenv("PERF_KEEP") != "" {
		fmt.Fprintf(os.Stderr, "perf: the processes' logs are kept in %s\n", w.dir)
		return
	}
	os.RemoveAll(w.dir)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func await(ctx context.Context, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startAgent runs a node and waits until its control connection is up.
func (w *world) startAgent(ctx context.Context, a *agentProc) error {
	cmd, err := w.spawn(a.name, "initech-agent", a.args...)
	if err != nil {
		return err
	}
	a.cmd = cmd
	return w.awaitConnected(ctx, a)
}

// nodeStatus is the part of `status --json` the bench reads.
type nodeStatus struct {
	HubConnected bool `json:"hub_connected"`
	Relay        struct {
		Name      string `json:"name"`
		Connected bool   `json:"connected"`
	} `json:"relay"`
	Inlets []struct {
		Listening string `json:"listening"`
	} `json:"inlets"`
	Channels []struct {
		Suite   string `json:"suite"`
		Streams int    `json:"streams"`
	} `json:"channels"`
}

func (w *world) status(a *agentProc) (*nodeStatus, error) {
	out, err := w.tool("initech-agent", "status", "--state-dir", a.stateDir, "--json")
	if err != nil {
		return nil, err
	}
	var st nodeStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("status of %s: %w", a.name, err)
	}
	return &st, nil
}

// awaitConnected waits until the node is connected, its relay (if it has
// one) registered and its inlets listening.
func (w *world) awaitConnected(ctx context.Context, a *agentProc) error {
	return await(ctx, "node "+a.name, func() bool {
		st, err := w.status(a)
		if err != nil || !st.HubConnected || st.Relay.Name != "" && !st.Relay.Connected {
			return false
		}
		for _, in := range st.Inlets {
			if in.Listening == "" {
				return false
			}
		}
		return true
	})
}

// restart stops a node and starts it again (its channels end with it).
func (w *world) restart(ctx context.Context, a *agentProc) error {
	stop(a.cmd)
	return w.startAgent(ctx, a)
}

// targets are the services behind the outlets.
type targets struct {
	sink, echo string
	chain      string // the echo through a chain of plain relay processes
	// iperf serves the direct runs, iperfPortal the runs through
	// portals: iperf3 -s takes one test at a time, and a test that
	// arrives while it still tears the last one down fails.
	iperf, iperfPortal string
	stop               func()
}

// serve runs a TCP server on loopback until the returned func is called.
func serve(handle func(net.Conn)) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// sink reads to EOF and answers with the byte count.
func sink(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := c.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	binary.Write(c, binary.BigEndian, n)
}

func echo(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

func startTargets(ctx context.Context, dir string) (*targets, error) {
	t := &targets{}
	var stops []func()
	var stopSink, stopEcho func()
	t.sink, stopSink = serve(sink)
	t.echo, stopEcho = serve(echo)
	stops = append(stops, stopSink, stopEcho)
	chain, stopChain, err := relayChain(t.echo)
	if err != nil {
		for _, s := range stops {
			s()
		}
		return nil, fmt.Errorf("relay chain: %w", err)
	}
	t.chain = chain
	stops = append(stops, stopChain)
	if path, err := exec.LookPath("iperf3"); err == nil {
		for _, addr := range []*string{&t.iperf, &t.iperfPortal} {
			*addr = freeAddr()
			_, port, _ := net.SplitHostPort(*addr)
			cmd := exec.Command(path, "-s", "-B", "127.0.0.1", "-p", port)
			if err := cmd.Start(); err != nil {
				return nil, fmt.Errorf("iperf3 -s: %w", err)
			}
			stops = append(stops, func() { cmd.Process.Kill(); cmd.Wait() })
			if err := await(ctx, "iperf3 -s", func() bool {
				c, err := net.Dial("tcp", *addr)
				if err == nil {
					c.Close()
				}
				return err == nil
			}); err != nil {
				return nil, err
			}
		}
	}
	t.stop = func() {
		for _, s := range stops {
			s()
		}
	}
	return t, nil
}

// pair is an inlet node and an outlet node, with an inlet per target.
type pair struct {
	vendor, cust            *agentProc
	inSink, inEcho, inIperf string
	relay                   string
}

func build(dir string) (string, error) {
	bin := filepath.Join(dir, "bin")
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	for name, pkg := range map[string]string{"initech-agent": "./cmd/agent", "initech-hub": "./cmd/hub"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s: %v %s", pkg, err, b)
		}
	}
	return bin, nil
}

// setup builds both binaries and starts a hub and its authority.
func setup(ctx context.Context, log io.Writer) (*world, error) {
	dir, err := os.MkdirTemp("", "bench-") // not "perf-": perf(1) takes /tmp/perf-* for JIT maps and loses the symbols
	if err != nil {
		return nil, err
	}
	w := &world{dir: dir}
	fmt.Fprintln(log, "building the agent and the hub …")
	if w.bin, err = build(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	w.hubDir, w.authDir, w.hubAdr = filepath.Join(dir, "hub"), filepath.Join(dir, "auth"), freeAddr()
	for _, args := range [][]string{
		{"init", "--dir", w.hubDir, "--addr", w.hubAdr},
		{"authority", "init", "--dir", w.authDir, "--hub-dir", w.hubDir},
	} {
		if _, err := w.tool("initech-hub", args...); err != nil {
			w.close()
			return nil, err
		}
	}
	if w.hub, err = w.spawn("hub", "initech-hub", "serve", "--dir", w.hubDir, "--log-level", "warn", "--addr", w.hubAdr); err != nil {
		w.close()
		return nil, err
	}
	auth, err := w.spawn("authority", "initech-hub", "authority", "serve", "--dir", w.authDir, "--log-level", "warn")
	if err != nil {
		w.close()
		return nil, err
	}
	w.others = append(w.others, auth)
	if err := await(ctx, "hub", func() bool {
		_, e1 := os.Stat(filepath.Join(w.hubDir, "admin.sock"))
		_, e2 := os.Stat(filepath.Join(w.authDir, "admin.sock"))
		return e1 == nil && e2 == nil
	}); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// startPair enrolls and starts an outlet node serving relay (outlets
// sink, echo and iperf) and an inlet node with an inlet to each; both
// reach the hub at the addresses given ("" for the hub's own).
func (w *world) startPair(ctx context.Context, name, relay string, t *targets, vendorHub, custHub string) (*pair, error) {
	ticket := func(file string, args ...string) (string, error) {
		p := filepath.Join(w.dir, file)
		_, err := w.tool("initech-hub", append([]string{"ticket", "create", "--dir", w.authDir, "--out", p}, args...)...)
		return p, err
	}
	vt, err := ticket(name+"-v.ticket", "--attribute", "inlet-from-saas", "--relay", name+"-saas")
	if err != nil {
		return nil, err
	}
	ct, err := ticket(name+"-c.ticket", "--attribute", "outlet-from-saas", "--relay", relay)
	if err != nil {
		return nil, err
	}
	p := &pair{relay: relay, inSink: freeAddr(), inEcho: freeAddr()}
	outlets := fmt.Sprintf("  - {from: sink, to: %q, allow: inlet-from-saas}\n  - {from: echo, to: %q, allow: inlet-from-saas}\n", t.sink, t.echo)
	inlets := fmt.Sprintf("  - {from: %q, via: %s, to: sink}\n  - {from: %q, via: %s, to: echo}\n", p.inSink, relay, p.inEcho, relay)
	if t.iperf != "" {
		p.inIperf = freeAddr()
		outlets += fmt.Sprintf("  - {from: iperf, to: %q, allow: inlet-from-saas}\n", t.iperfPortal)
		inlets += fmt.Sprintf("  - {from: %q, via: %s, to: iperf}\n", p.inIperf, relay)
	}
	vcfg, ccfg := filepath.Join(w.dir, name+"-v.yaml"), filepath.Join(w.dir, name+"-c.yaml")
	if err := os.WriteFile(vcfg, []byte("policy:\n  resource-type: tcp-inlet\n  allow: outlet-from-saas\ntcp-inlet:\n"+inlets), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(ccfg, []byte("relay: "+relay+"\ntcp-outlet:\n"+outlets), 0o600); err != nil {
		return nil, err
	}
	mk := func(side, tk, cfg, hub string) *agentProc {
		a := &agentProc{name: name + "-" + side, stateDir: filepath.Join(w.dir, name+"-"+side), metrics: freeAddr()}
		a.args = []string{"run", "--log-level", "warn", "--enrollment-ticket", tk, "--config", cfg, "--state-dir", a.stateDir, "--metrics", a.metrics}
		if hub != "" {
			a.args = append(a.args, "--hub", hub)
		}
		return a
	}
	p.cust, p.vendor = mk("customer", ct, ccfg, custHub), mk("vendor", vt, vcfg, vendorHub)
	// The outlet node first, so its relay is up when the inlet node starts.
	for _, a := range []*agentProc{p.cust, p.vendor} {
		w.mu.Lock()
		w.agents = append(w.agents, a)
		w.mu.Unlock()
		if err := w.startAgent(ctx, a); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// stopPair stops both nodes of p.
func (w *world) stopPair(p *pair) {
	for _, a := range []*agentProc{p.vendor, p.cust} {
		stop(a.cmd)
		w.mu.Lock()
		for i, x := range w.agents {
			if x == a {
				w.agents = append(w.agents[:i], w.agents[i+1:]...)
				break
			}
		}
		w.mu.Unlock()
	}
}

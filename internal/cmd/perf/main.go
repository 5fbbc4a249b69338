// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command perf is the benchmark behind scripts/bench: it starts a hub and
// two nodes as real processes on loopback, a sink and an echo target, and
// measures a direct TCP connection and the same through an inlet → hub →
// outlet portal in one run, so machine noise cancels in the ratios.
//
//	go run ./internal/cmd/perf [--short] [--json FILE] [--nodes N]
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
	"time"
)

// Options size a run.
type Options struct {
	Short    bool
	Duration time.Duration // per throughput figure
	RTTs     int
	Setups   int
	Conc     int
	Nodes    int
}

// Report is every number of a run.
type Report struct {
	Direct, Portal Figures
	ConcTotal      time.Duration `json:"concurrent_total_ns"`
	ConcCount      int           `json:"concurrent_count"`
	ConcFailures   int           `json:"concurrent_failures"`
	HubRSSBefore   int64         `json:"hub_rss_before_kib"`
	HubRSSAfter    int64         `json:"hub_rss_after_kib"`
	IdleNodes      int           `json:"idle_nodes"`
	HubKiBPerNode  float64       `json:"hub_kib_per_node"`
	AgentRSS       []int64       `json:"agent_idle_rss_kib"`
}

// Figures are the measurements of one path.
type Figures struct {
	Gbps1, Gbps4            float64
	RTTMean, RTTP50, RTTP99 time.Duration
	SetupP50, SetupP99      time.Duration
}

func main() {
	short := flag.Bool("short", false, "a quick run (CI)")
	jsonOut := flag.String("json", "", "also write the numbers to this file")
	nodes := flag.Int("nodes", 0, "idle simulated nodes for the hub memory figure (default 1000, --short 100)")
	flag.Parse()
	o := Options{Short: *short, Duration: 5 * time.Second, RTTs: 5000, Setups: 300, Conc: 1000, Nodes: 1000}
	if *short {
		o = Options{Short: true, Duration: time.Second, RTTs: 500, Setups: 50, Conc: 200, Nodes: 100}
	}
	if *nodes > 0 {
		o.Nodes = *nodes
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	r, err := Run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		os.Exit(1)
	}
	Print(os.Stdout, r)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "perf:", err)
			os.Exit(1)
		}
	}
}

type world struct {
	dir, bin                string
	procs                   []*exec.Cmd
	hubDir, authDir, hubAdr string
	vendor, cust            string // state dirs
	inletSink               string
	inletEcho               string
}

func (w *world) tool(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(w.bin, name), args...)
	var eb bytes.Buffer
	cmd.Stderr = &eb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %v: %v: %s", name, args, err, eb.String())
	}
	return string(out), nil
}

func (w *world) start(name string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(filepath.Join(w.dir, filepath.Base(args[len(args)-1])+"-"+name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(w.bin, name), args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w.procs = append(w.procs, cmd)
	return cmd, nil
}

func (w *world) close() {
	for _, p := range w.procs {
		p.Process.Signal(os.Interrupt)
		p.Wait()
	}
	os.RemoveAll(w.dir)
}

func freeAddr() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return ln.Addr().String()
}

func await(what string, cond func() bool) error {
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return nil
		}
	}
	return fmt.Errorf("timed out waiting for %s", what)
}

// serve runs a TCP server on loopback.
func serve(handle func(net.Conn)) (string, func()) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String(), func() { ln.Close() }
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

func setup(ctx context.Context, o Options, log io.Writer) (*world, string, string, func(), error) {
	dir, err := os.MkdirTemp("", "perf-")
	if err != nil {
		return nil, "", "", nil, err
	}
	w := &world{dir: dir, bin: filepath.Join(dir, "bin")}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, "", "", nil, err
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	fmt.Fprintln(log, "building the agent and the hub …")
	for name, pkg := range map[string]string{"initech-agent": "./cmd/agent", "initech-hub": "./cmd/hub"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(w.bin, name), pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, "", "", nil, fmt.Errorf("build: %v %s", err, b)
		}
	}
	sinkAddr, stopSink := serve(sink)
	echoAddr, stopEcho := serve(echo)
	w.hubDir, w.authDir, w.hubAdr = filepath.Join(dir, "hub"), filepath.Join(dir, "auth"), freeAddr()
	for _, args := range [][]string{
		{"init", "--dir", w.hubDir, "--addr", w.hubAdr},
		{"authority", "init", "--dir", w.authDir, "--hub-dir", w.hubDir},
	} {
		if _, err := w.tool("initech-hub", args...); err != nil {
			return nil, "", "", nil, err
		}
	}
	if _, err := w.start("initech-hub", "serve", "--dir", w.hubDir, "--log-level", "warn", "--addr", w.hubAdr); err != nil {
		return nil, "", "", nil, err
	}
	if _, err := w.start("initech-hub", "authority", "serve", "--dir", w.authDir, "--log-level", "warn"); err != nil {
		return nil, "", "", nil, err
	}
	if err := await("hub", func() bool {
		_, e1 := os.Stat(filepath.Join(w.hubDir, "admin.sock"))
		_, e2 := os.Stat(filepath.Join(w.authDir, "admin.sock"))
		return e1 == nil && e2 == nil
	}); err != nil {
		return nil, "", "", nil, err
	}
	ticket := func(name string, args ...string) (string, error) {
		p := filepath.Join(dir, name)
		_, err := w.tool("initech-hub", append([]string{"ticket", "create", "--dir", w.authDir, "--out", p}, args...)...)
		return p, err
	}
	vt, err := ticket("v.ticket", "--attribute", "inlet-from-saas", "--relay", "saas-relay")
	if err != nil {
		return nil, "", "", nil, err
	}
	ct, err := ticket("c.ticket", "--attribute", "outlet-from-saas", "--relay", "acme-relay")
	if err != nil {
		return nil, "", "", nil, err
	}
	vcfg, ccfg := filepath.Join(dir, "v.yaml"), filepath.Join(dir, "c.yaml")
	os.WriteFile(vcfg, []byte("policy:\n  resource-type: tcp-inlet\n  allow: outlet-from-saas\n"), 0o600)
	os.WriteFile(ccfg, []byte(fmt.Sprintf("relay: acme-relay\ntcp-outlet:\n  - {from: sink, to: %q, allow: inlet-from-saas}\n  - {from: echo, to: %q, allow: inlet-from-saas}\n", sinkAddr, echoAddr)), 0o600)
	w.vendor, w.cust = filepath.Join(dir, "vendor"), filepath.Join(dir, "customer")
	if _, err := w.start("initech-agent", "run", "--log-level", "warn", "--enrollment-ticket", vt, "--config", vcfg, "--state-dir", w.vendor); err != nil {
		return nil, "", "", nil, err
	}
	if _, err := w.start("initech-agent", "run", "--log-level", "warn", "--enrollment-ticket", ct, "--config", ccfg, "--state-dir", w.cust); err != nil {
		return nil, "", "", nil, err
	}
	for _, sd := range []string{w.vendor, w.cust} {
		if err := await("relay of "+sd, func() bool {
			out, err := w.tool("initech-agent", "status", "--state-dir", sd, "--json")
			return err == nil && strings.Contains(out, `"connected": true`)
		}); err != nil {
			return nil, "", "", nil, err
		}
	}
	w.inletSink, w.inletEcho = freeAddr(), freeAddr()
	for _, in := range [][2]string{{w.inletSink, "sink"}, {w.inletEcho, "echo"}} {
		if _, err := w.tool("initech-agent", "tcp-inlet", "create", "--state-dir", w.vendor, "--from", in[0], "--via", "acme-relay", "--to", in[1]); err != nil {
			return nil, "", "", nil, err
		}
	}
	return w, sinkAddr, echoAddr, func() { stopSink(); stopEcho(); w.close() }, nil
}

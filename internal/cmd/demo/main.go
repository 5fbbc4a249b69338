// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command demo runs the product's walk-through on one machine, on
// loopback, with the embedded defaults: it builds the agent and hub, starts
// a hub, the vendor's SaaS node, the customer's node and two sample web
// services, connects them as the README describes, and prints what to
// curl. With --check it curls both portals itself and exits.
//
// Run it with scripts/demo.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	check := flag.Bool("check", false, "curl both portals, print the result and exit")
	keep := flag.String("dir", "", "work directory (default: a new temporary one)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *check, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	dir, bin string
	procs    []*exec.Cmd
}

func (d *demo) build(name, pkg string) error {
	cmd := exec.Command("go", "build", "-o", filepath.Join(d.bin, name), pkg)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func (d *demo) tool(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(d.bin, name), args...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return string(out), nil
}

func (d *demo) start(logName, name string, args ...string) error {
	f, err := os.Create(filepath.Join(d.dir, logName+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(d.bin, name), args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return err
	}
	d.procs = append(d.procs, cmd)
	return nil
}

func (d *demo) stop() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		d.procs[i].Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func(c *exec.Cmd) { c.Wait(); close(done) }(d.procs[i])
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			d.procs[i].Process.Kill()
		}
	}
}

// addr returns 127.0.0.1:preferred if it is free, else a random free port.
func addr(preferred int) string {
	for _, a := range []string{fmt.Sprintf("127.0.0.1:%d", preferred), "127.0.0.1:0"} {
		ln, err := net.Listen("tcp", a)
		if err == nil {
			s := ln.Addr().String()
			ln.Close()
			return s
		}
	}
	return "127.0.0.1:0"
}

func web(body string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	return ln.Addr().String(), nil
}

func await(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func get(a string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + a + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func run(ctx context.Context, check bool, dir string) error {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "demo-"); err != nil {
			return err
		}
	}
	d := &demo{dir: dir, bin: filepath.Join(dir, "bin")}
	defer d.stop()
	fmt.Println("building the agent and the hub …")
	for name, pkg := range map[string]string{"initech-agent": "./cmd/agent", "initech-hub": "./cmd/hub"} {
		if err := d.build(name, pkg); err != nil {
			return err
		}
	}
	saasWeb, err := web("Hello from the Initech SaaS platform\n")
	if err != nil {
		return err
	}
	githubWeb, err := web("Hello from ACME's private GitHub (github.local)\n")
	if err != nil {
		return err
	}
	status := func(state string) func() bool {
		return func() bool {
			out, err := d.tool("initech-agent", "status", "--state-dir", state, "--json")
			return err == nil && strings.Contains(out, `"connected": true`)
		}
	}

	// 1. Vendor: its keys, the relay, the authority behind it (two
	// processes, two directories), and the SaaS node's enroller ticket.
	vendorDir, hubDir, authDir := filepath.Join(dir, "vendor"), filepath.Join(dir, "hub"), filepath.Join(dir, "auth")
	hubAddr := addr(7400)
	for _, args := range [][]string{
		{"keys", "create", "--dir", vendorDir},
		{"init", "--dir", hubDir, "--addr", hubAddr},
		{"authority", "init", "--dir", authDir, "--hub-dir", hubDir, "--vendor-dir", vendorDir},
	} {
		if _, err := d.tool("initech-hub", args...); err != nil {
			return err
		}
	}
	if err := d.start("relay", "initech-hub", "serve", "--dir", hubDir); err != nil {
		return err
	}
	if err := d.start("authority", "initech-hub", "authority", "serve", "--dir", authDir); err != nil {
		return err
	}
	if err := await(ctx, "the relay and the authority", func() bool {
		_, err := os.Stat(filepath.Join(hubDir, "admin.sock"))
		b, _ := os.ReadFile(filepath.Join(dir, "authority.log"))
		return err == nil && strings.Contains(string(b), "connected to the relay")
	}); err != nil {
		return err
	}
	if _, err := d.tool("initech-hub", "ticket", "create", "--dir", authDir, "--expires-in", "24h", "--usage-count", "1",
		"--attribute", "outlet-to-saas", "--attribute", "inlet-from-saas", "--relay", "saas-relay",
		"--enroller", "--enroller-may-grant", "inlet-to-saas,outlet-from-saas", "--enroller-relays", "acme-*",
		"--out", filepath.Join(dir, "saas.ticket")); err != nil {
		return err
	}

	// 2. The SaaS node, and a ticket for the customer.
	s1 := filepath.Join(dir, "saas-node")
	if err := d.start("saas-node", "initech-agent", "run", "--state-dir", s1, "--config", "examples/saas.yaml",
		"--enrollment-ticket", filepath.Join(dir, "saas.ticket"), "--variable", "SAAS_ADDRESS="+saasWeb); err != nil {
		return err
	}
	if err := await(ctx, "the SaaS node's relay", status(s1)); err != nil {
		return err
	}
	if _, err := d.tool("initech-agent", "ticket", "create", "--state-dir", s1, "--expires-in", "24h", "--usage-count", "1",
		"--attribute", "inlet-to-saas", "--attribute", "outlet-from-saas", "--relay", "acme-relay", "--out", filepath.Join(dir, "acme.ticket")); err != nil {
		return err
	}

	// 3. The customer node (its inlet on loopback rather than 0.0.0.0).
	customerInlet := addr(7000)
	b, err := os.ReadFile("examples/customer.yaml")
	if err != nil {
		return err
	}
	customerYAML := filepath.Join(dir, "customer.yaml")
	if err := os.WriteFile(customerYAML, []byte(strings.Replace(string(b), "127.0.0.1:7000", customerInlet, 1)), 0o600); err != nil {
		return err
	}
	s2 := filepath.Join(dir, "customer-node")
	if err := d.start("customer-node", "initech-agent", "run", "--state-dir", s2, "--config", customerYAML,
		"--enrollment-ticket", filepath.Join(dir, "acme.ticket"), "--variable", "RELAY=acme-relay", "--variable", "GITHUB_ADDRESS="+githubWeb); err != nil {
		return err
	}
	if err := await(ctx, "the customer node's relay", status(s2)); err != nil {
		return err
	}

	// 4. The SaaS reaches the customer's GitHub.
	saasInlet := addr(8000)
	if _, err := d.tool("initech-agent", "tcp-inlet", "create", "--state-dir", s1, "--from", saasInlet, "--via", "acme-relay", "--to", "github"); err != nil {
		return err
	}
	fmt.Printf(`
The demo is up (logs and state in %s):

  relay            %s   (its directory %s holds only its Noise key)
  authority        %s   (dials out to the relay; the only signing key)
  SaaS node        %s   (relay saas-relay, outlet saas → %s)
  customer node    %s   (relay acme-relay, outlet github → %s)

Try:
  curl http://%s/    # the SaaS reaches the customer's GitHub
  curl http://%s/    # the customer reaches the SaaS

  %s status --state-dir %s
  %s members list --dir %s

`, dir, hubAddr, hubDir, authDir, s1, saasWeb, s2, githubWeb, saasInlet, customerInlet,
		filepath.Join(d.bin, "initech-agent"), s2, filepath.Join(d.bin, "initech-hub"), authDir)
	if check {
		for _, c := range []struct{ addr, want string }{{saasInlet, "ACME's private GitHub"}, {customerInlet, "SaaS platform"}} {
			got, err := get(c.addr)
			if err != nil || !strings.Contains(got, c.want) {
				return fmt.Errorf("curl http://%s/ = %q, %v", c.addr, got, err)
			}
			fmt.Printf("curl http://%s/ → %s", c.addr, got)
		}
		fmt.Println("demo check passed")
		return nil
	}
	fmt.Println("Press Ctrl-C to stop.")
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.Canceled) {
		fmt.Println("\nstopping …")
	}
	return nil
}

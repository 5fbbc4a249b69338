// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// relayEnv makes this binary (or its test binary) a plain TCP relay to
// the address it names instead of the benchmark.
const relayEnv = "PERF_RELAY_TO"

// chainLen is the number of relay processes in the reference chain: as
// many processes between client and target as a portal crosses (inlet
// node, relay, outlet node).
const chainLen = 3

// relayChain starts chainLen plain TCP relay processes in a chain to
// target and returns the first one's address. They only read and write
// (io.Copy, as the hub splices): a round trip through them is what
// process wake-ups alone cost on this machine, the floor under a
// portal's.
func relayChain(target string) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}
	addr := target
	for range chainLen {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), relayEnv+"="+addr)
		out, err := cmd.StdoutPipe()
		if err != nil {
			stop()
			return "", nil, err
		}
		if err := cmd.Start(); err != nil {
			stop()
			return "", nil, fmt.Errorf("relay process: %w", err)
		}
		cmds = append(cmds, cmd)
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			stop()
			return "", nil, fmt.Errorf("relay process did not say its address: %w", err)
		}
		addr = strings.TrimSpace(line)
	}
	return addr, stop, nil
}

// runRelay is a relay process: it prints its address, then relays every
// connection to to until it is killed.
func runRelay(to string) {
	r, err := newTCPRelay(to)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	fmt.Println(r.Addr())
	select {}
}

// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// throughput writes 256 KiB chunks for d over n connections to a sink and
// counts what the sink received (Gbit/s).
func throughput(addr string, n int, d time.Duration) (float64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex // guards total and firstErr
	var total int64
	var firstErr error
	buf := make([]byte, 256<<10)
	rand.Read(buf)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(err error) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(d + time.Minute))
			for time.Since(start) < d {
				if _, err := c.Write(buf); err != nil {
					fail(err)
					return
				}
			}
			c.(*net.TCPConn).CloseWrite()
			var got int64
			if err := binary.Read(c, binary.BigEndian, &got); err != nil {
				fail(fmt.Errorf("sink count: %w", err))
				return
			}
			mu.Lock()
			total += got
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(total) * 8 / el.Seconds() / 1e9, nil
}

// iperf3 runs `iperf3 -c` against addr with n parallel streams for d and
// returns what the server received (Gbit/s).
func iperf3(ctx context.Context, addr string, n int, d time.Duration) (float64, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, d+time.Minute)
	defer cancel()
	secs := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	cmd := exec.CommandContext(ctx, "iperf3", "-c", host, "-p", port, "-t", secs, "-P", strconv.Itoa(n), "-J")
	out, err := cmd.Output()
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		if err == nil {
			err = jerr
		}
		return 0, fmt.Errorf("iperf3 -c %s -P %d: %w", addr, n, err)
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3 -c %s -P %d: %s", addr, n, res.Error)
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3 -c %s -P %d: %w", addr, n, err)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// rtt sends 64-byte messages one at a time over one connection and
// returns the round trips after a warm-up.
func rtt(addr string, n int) ([]time.Duration, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute + time.Duration(n)*10*time.Millisecond))
	msg, back := make([]byte, 64), make([]byte, 64)
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n+50; i++ {
		t := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return nil, err
		}
		if i >= 50 { // warm-up
			ds = append(ds, time.Since(t))
		}
	}
	return ds, nil
}

// firstByte connects to an echo, sends one byte and waits for it back.
func firstByte(addr string) (time.Duration, error) {
	t := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return 0, err
	}
	return time.Since(t), nil
}

// setupTimes measures n new connections to their first echoed byte, one
// after another, paced at every (0: back to back).
func setupTimes(addr string, n int, every time.Duration) ([]time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t := time.Now()
		d, err := firstByte(addr)
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		ds = append(ds, d)
		if w := every - time.Since(t); w > 0 {
			time.Sleep(w)
		}
	}
	return ds, nil
}

// concurrent opens n portals at once, each echoing size bytes, and checks
// every byte. It returns the time until the last finished and how many
// failed.
func concurrent(addr string, n, size int) (time.Duration, int) {
	var wg sync.WaitGroup
	var mu sync.Mutex // guards failures
	failures := 0
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func() { mu.Lock(); failures++; mu.Unlock() }
			c, err := net.Dial("tcp", addr)
			if err != nil {
				fail()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			msg := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, size/3+1)[:size]
			var wwg sync.WaitGroup
			wwg.Add(1)
			go func() {
				defer wwg.Done()
				c.Write(msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			wwg.Wait()
			if err != nil || !bytes.Equal(got, msg) {
				fail()
			}
		}()
	}
	wg.Wait()
	return time.Since(start), failures
}

// stalled opens a portal to an echo, sends it stallBytes and never reads
// the echo: its stream's window fills and stays full. It returns when the
// portal is open and its writes have stopped moving; stop ends it.
func stalled(addr string, stallBytes int) (stop func(), err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards sent
	sent := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for total := 0; total < stallBytes; {
			n, err := c.Write(buf)
			total += n
			mu.Lock()
			sent = total
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	// Wait until the writes stop moving: every buffer on the way is full.
	last := -1
	for i := 0; i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		now := sent
		mu.Unlock()
		if now == last {
			break
		}
		last = now
	}
	return func() { c.Close(); wg.Wait() }, nil
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return -1
}

// scrape reads a node's Prometheus metrics: the sum of each metric's
// samples, by name, and by name plus label text ("name{a=\"b\"}").
func scrape(addr string) (map[string]float64, error) {
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", addr, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		series := line[:sp]
		m[series] += v
		if i := strings.IndexByte(series, '{'); i >= 0 {
			m[series[:i]] += v
		}
	}
	return m, sc.Err()
}

// memSample is one reading of a node's memory.
type memSample struct {
	RSSKiB     int64   `json:"rss_kib"`
	HeapBytes  float64 `json:"heap_inuse_bytes"`
	StackBytes float64 `json:"stack_inuse_bytes"`
	Goroutines float64 `json:"goroutines"`
}

// sampleMem reads a node's RSS and its Go runtime's figures.
func sampleMem(a *agentProc) (memSample, error) {
	s := memSample{RSSKiB: rssKiB(a.cmd.Process.Pid)}
	m, err := scrape(a.metrics)
	if err != nil {
		return s, err
	}
	s.HeapBytes, s.StackBytes, s.Goroutines = m["go_memstats_heap_inuse_bytes"], m["go_memstats_stack_inuse_bytes"], m["go_goroutines"]
	if s.RSSKiB <= 0 {
		return s, fmt.Errorf("RSS of %s unreadable", a.name)
	}
	return s, nil
}

// settle waits until a node's goroutine count has stopped changing
// (streams and channels closed just before have wound down), for at most
// ten seconds.
func settle(ctx context.Context, a *agentProc) {
	last, same := -1.0, 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && same < 3 && ctx.Err() == nil; {
		time.Sleep(200 * time.Millisecond)
		m, err := scrape(a.metrics)
		if err != nil {
			return
		}
		if g := m["go_goroutines"]; g == last {
			same++
		} else {
			last, same = g, 0
		}
	}
}

// memDelta is the growth between two samples, per item.
type memDelta struct {
	Items         int       `json:"items"`
	Before, After memSample `json:"-"`
	RSSKiB        float64   `json:"rss_kib_per_item"`
	HeapStackKiB  float64   `json:"heap_stack_kib_per_item"`
	Goroutines    float64   `json:"goroutines_per_item"`
}

func delta(before, after memSample, n int) memDelta {
	return memDelta{Items: n, Before: before, After: after,
		RSSKiB:       float64(after.RSSKiB-before.RSSKiB) / float64(n),
		HeapStackKiB: (after.HeapBytes + after.StackBytes - before.HeapBytes - before.StackBytes) / 1024 / float64(n),
		Goroutines:   (after.Goroutines - before.Goroutines) / float64(n)}
}

// holdStreams opens n portals to an echo through addr, one after another
// at most rate per second, checks each with one echoed byte and keeps
// them open; close ends them.
func holdStreams(addr string, n int, rate float64) (close func(), err error) {
	var conns []net.Conn
	close = func() {
		for _, c := range conns {
			c.Close()
		}
	}
	every := time.Duration(float64(time.Second) / rate)
	for i := 0; i < n; i++ {
		t := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			close()
			return nil, err
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Write([]byte{1}); err != nil {
			close()
			return nil, err
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			close()
			return nil, fmt.Errorf("stream %d: %w", i, err)
		}
		c.SetDeadline(time.Time{})
		if w := every - time.Since(t); w > 0 {
			time.Sleep(w)
		}
	}
	return close, nil
}

// productCPU returns the CPU time the relay and both nodes of p have
// run so far (Linux; 0 elsewhere).
func productCPU(w *world, p *pair) func() time.Duration {
	pids := []int{w.hub.Process.Pid, p.cust.cmd.Process.Pid, p.vendor.cmd.Process.Pid}
	return func() (d time.Duration) {
		for _, pid := range pids {
			d += procCPU(pid)
		}
		return d
	}
}

// procCPU is the CPU time all threads of process pid have run so far,
// from /proc/PID/task/*/schedstat (nanoseconds; Linux), or 0.
func procCPU(pid int) time.Duration {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var total time.Duration
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fs := strings.Fields(string(b)); len(fs) > 0 {
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			total += time.Duration(n)
		}
	}
	return total
}

// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Package clitest holds the testscript commands both programs' CLI tests
// use (cmd/*/main_test.go, scripts in cmd/*/testdata/*.txtar):
//
//	exits CODE PROG ARGS...   run PROG, fail unless it exits with CODE; its
//	                          stdout and stderr are then what `stdout` and
//	                          `stderr` match
//	oneline                   the last command's stderr is exactly one line
//	sleep DURATION            wait (a ticket's expiry, say)
//	freeport NAME             set $NAME to a free loopback port
//	await-port HOST:PORT      wait (at most 30 s) until something listens
//	stamped VERSION OUT       build a small Go binary whose embedded version
//	                          (the -ldflags stamp buildinfo reads) is VERSION
//	capture NAME REGEXP       set $NAME to the first submatch of REGEXP in
//	                          the last command's stdout (an identifier a
//	                          later command needs)
//	snapshot DIR OUT          write every file under DIR, with its mode, size,
//	                          modification time and SHA-256, to OUT, so
//	                          `cmp` shows that a refusal changed nothing
//
// It is imported only by tests.
package clitest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/edgeportal/connect/internal/buildinfo"
)

// AwaitTimeout bounds every wait of these commands.
const AwaitTimeout = 30 * time.Second

// Cmds returns the commands above, for testscript.Params.Cmds. Add more
// to the map it returns.
func Cmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"exits":      exits,
		"oneline":    oneline,
		"sleep":      sleep,
		"freeport":   freeport,
		"await-port": awaitPort,
		"stamped":    stamped,
		"snapshot":   snapshot,
		"capture":    capture,
	}
}

func capture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture NAME REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: no match for %q in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

func exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: %q is not an exit code", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

func oneline(ts *testscript.TestScript, neg bool, args []string) {
	stderr := ts.ReadFile("stderr")
	one := strings.Count(stderr, "\n") == 1 && strings.HasSuffix(stderr, "\n") && strings.TrimSpace(stderr) != ""
	if one == neg {
		ts.Fatalf("stderr is not one line (negated: %v):\n%s", neg, stderr)
	}
}

func sleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}

func freeport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport NAME")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	ts.Setenv(args[0], port)
}

func awaitPort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: await-port HOST:PORT")
	}
	deadline := time.Now().Add(AwaitTimeout)
	for {
		c, err := net.DialTimeout("tcp", args[0], time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("nothing listens on %s after %s: %v", args[0], AwaitTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stampedCache holds binaries already built, by version: building is
// the slow part, and scripts ask for the same few versions.
var stampedCache struct {
	sync.Mutex // guards dir and built
	dir        string
	built      map[string]string
}

func stamped(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: stamped VERSION OUT")
	}
	version, out := args[0], ts.MkAbs(args[1])
	stampedCache.Lock()
	defer stampedCache.Unlock()
	if stampedCache.built == nil {
		dir, err := os.MkdirTemp("", "clitest-stamped-")
		ts.Check(err)
		stampedCache.dir, stampedCache.built = dir, map[string]string{}
		src := filepath.Join(dir, "src")
		ts.Check(os.Mkdir(src, 0o755))
		ts.Check(os.WriteFile(filepath.Join(src, "go.mod"), []byte("module stamped\n\ngo 1.21\n"), 0o644))
		ts.Check(os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644))
	}
	bin, ok := stampedCache.built[version]
	if !ok {
		bin = filepath.Join(stampedCache.dir, "bin-"+version)
		cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X "+buildinfo.VersionSymbol+"="+version, ".")
		cmd.Dir = filepath.Join(stampedCache.dir, "src")
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			ts.Fatalf("stamped %s: go build: %v\n%s", version, err, b)
		}
		stampedCache.built[version] = bin
	}
	b, err := os.ReadFile(bin)
	ts.Check(err)
	ts.Check(os.MkdirAll(filepath.Dir(out), 0o755))
	ts.Check(os.WriteFile(out, b, 0o755))
}

// Cleanup removes what the commands left outside the scripts' work
// directories; call it from TestMain's end or t.Cleanup.
func Cleanup() {
	stampedCache.Lock()
	defer stampedCache.Unlock()
	if stampedCache.dir != "" {
		os.RemoveAll(stampedCache.dir)
		stampedCache.dir, stampedCache.built = "", nil
	}
}

func snapshot(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: snapshot DIR OUT")
	}
	root := ts.MkAbs(args[0])
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		sum := ""
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum = fmt.Sprintf("%x", sha256.Sum256(data))
		}
		fmt.Fprintf(&b, "%s %v %d %s %s\n", rel, fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano), sum)
		return nil
	})
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(b.String()), 0o644))
}

// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

// Command pgserver starts a throwaway PostgreSQL (package pgtest) outside
// `go test`, for benchmarks and manual cluster runs: it prints the DSN on
// stdout, serves until interrupted, then stops the server and removes its
// directory.
//
//	go run ./internal/cmd/pgserver            # prints postgres://hub@127.0.0.1:PORT/postgres?sslmode=disable
//	go run ./internal/cmd/pgserver -for 10m   # stops by itself after 10 minutes
//
// A development tool; nothing imports it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgeportal/connect/internal/tstest/pgtest"
)

func main() {
	limit := flag.Duration("for", 0, "stop after this long (0 = until interrupted)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *limit)
		defer cancel()
	}
	s, err := pgtest.New(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgserver:", err)
		os.Exit(1)
	}
	fmt.Println(s.DSN(""))
	fmt.Fprintf(os.Stderr, "pgserver: serving from %s; interrupt to stop\n", s.Dir)
	<-ctx.Done()
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "pgserver:", err)
		os.Exit(1)
	}
}

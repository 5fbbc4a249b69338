// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package installer

import (
	"context"
	"os"

	"github.com/kardianos/service"

	"github.com/edgeportal/connect/internal/brand"
)

func serviceName() string { return brand.ServiceName() }

// runner adapts a blocking run function to kardianos' Start/Stop.
type runner struct {
	run    func(ctx context.Context) error
	cancel context.CancelFunc
	done   chan error
}

func (r *runner) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() {
		err := r.run(ctx)
		if err != nil && ctx.Err() == nil {
			// A crash-like exit makes the service manager's recovery
			// action restart us; a clean Stop would not.
			os.Exit(1)
		}
		r.done <- err
	}()
	return nil
}

func (r *runner) Stop(service.Service) error {
	r.cancel()
	<-r.done
	return nil
}

// RunAsService runs fn under the platform's service manager when the
// process was started by one that needs a handshake (the Windows service
// control manager); elsewhere it just calls fn(ctx). systemd and launchd
// start `run` as a plain foreground process.
func RunAsService(ctx context.Context, fn func(ctx context.Context) error) error {
	if !needsServiceHandshake() {
		return fn(ctx)
	}
	r := &runner{run: fn}
	svc, err := service.New(r, &service.Config{Name: brand.ServiceName()})
	if err != nil {
		return err
	}
	if err := svc.Run(); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		return err
	default:
		return nil
	}
}

// InsecureFakeManagerEnv, after the brand's environment prefix, names a
// directory that replaces the OS service manager with a minimal fake of
// kardianos/service's Service: "install" records the command line there,
// "start" runs it as a detached process. It exists so tests exercise the
// whole install flow with real processes on machines without a running
// systemd. Not for production.
const InsecureFakeManagerEnv = "INSECURE_FAKE_SERVICE_MANAGER"

// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

//go:build !windows

package installer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/kardianos/service"
)

type fakeService struct {
	dir  string
	spec Spec
}

type fakeRecord struct {
	Exe  string   `json:"exe"`
	Args []string `json:"args"`
}

func newFakeService(dir string, s Spec) (service.Service, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &fakeService{dir: dir, spec: s}, nil
}

func (f *fakeService) path(ext string) string { return filepath.Join(f.dir, f.spec.Name+ext) }

func (f *fakeService) Install() error {
	if _, err := os.Stat(f.path(".json")); err == nil {
		return fmt.Errorf("service %s already exists", f.spec.Name)
	}
	b, _ := json.Marshal(fakeRecord{Exe: f.spec.Executable, Args: f.spec.Arguments()})
	return os.WriteFile(f.path(".json"), b, 0o600)
}

func (f *fakeService) Uninstall() error {
	if err := os.Remove(f.path(".json")); err != nil {
		return service.ErrNotInstalled
	}
	return nil
}

func (f *fakeService) pid() int {
	b, err := os.ReadFile(f.path(".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(string(b))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

func (f *fakeService) Start() error {
	b, err := os.ReadFile(f.path(".json"))
	if err != nil {
		return service.ErrNotInstalled
	}
	if f.pid() != 0 {
		return nil
	}
	var r fakeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	log, err := os.OpenFile(f.path(".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(r.Exe, r.Args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return os.WriteFile(f.path(".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
}

func (f *fakeService) Stop() error {
	pid := f.pid()
	if pid == 0 {
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	os.Remove(f.path(".pid"))
	return nil
}

func (f *fakeService) Restart() error {
	if err := f.Stop(); err != nil {
		return err
	}
	return f.Start()
}

func (f *fakeService) Status() (service.Status, error) {
	if _, err := os.Stat(f.path(".json")); err != nil {
		return service.StatusUnknown, service.ErrNotInstalled
	}
	if f.pid() != 0 {
		return service.StatusRunning, nil
	}
	return service.StatusStopped, nil
}

func (f *fakeService) Run() error { return errors.New("the fake service manager cannot run services") }

func (f *fakeService) Logger(chan<- error) (service.Logger, error) { return service.ConsoleLogger, nil }

func (f *fakeService) SystemLogger(chan<- error) (service.Logger, error) {
	return service.ConsoleLogger, nil
}

func (f *fakeService) String() string   { return f.spec.Name }
func (f *fakeService) Platform() string { return "insecure-fake" }

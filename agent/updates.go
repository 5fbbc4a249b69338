// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/update"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
)

// Update files in the state directory.
const (
	UpdateMarkerFile = "update.json" // an update handed over to a new binary
	updateWorkDir    = "update"
)

// TrialTimeout bounds the new binary's trial (reach the hub, register the
// relay) before the old binary is put back.
var TrialTimeout = 60 * time.Second

// ErrRestart is returned by Run when the node replaced its binary and must
// be restarted into it (see Reexec).
var ErrRestart = errors.New("restart into the updated binary")

type updateMarker struct {
	From string    `json:"from"`
	To   string    `json:"to"`
	At   time.Time `json:"at"`
}

// hubSource fetches releases over the control connection.
type hubSource struct{ n *Node }

func (s hubSource) hub(ctx context.Context) (*hubConn, error) {
	return s.n.currentHub(ctx, 10*time.Second)
}

func (s hubSource) Manifest(ctx context.Context, channel, version string) ([]byte, error) {
	h, err := s.hub(ctx)
	if err != nil {
		return nil, err
	}
	var resp control.ReleaseManifest
	if err := h.Call(ctx, control.TypeReleaseCheck, control.ReleaseCheck{Channel: channel, Version: version}, &resp); err != nil {
		return nil, err
	}
	return resp.Manifest, nil
}

func (s hubSource) Chunk(ctx context.Context, channel, version, platform string, off int64) ([]byte, error) {
	h, err := s.hub(ctx)
	if err != nil {
		return nil, err
	}
	var resp control.ReleaseChunk
	err = h.Call(ctx, control.TypeReleaseFetch, control.ReleaseFetch{Channel: channel, Version: version, Platform: platform, Offset: off}, &resp)
	return resp.Data, err
}

func (n *Node) releaseKey() key.SigningPublic {
	if s := brand.ReleaseKey(); s != "" {
		if k, err := key.ParseSigningPublic(s); err == nil {
			return k
		}
	}
	return n.enr.ReleaseKey
}

// startExe is the binary's path as resolved when the process started: on
// Linux os.Executable follows the running inode, which an update renames
// to .prev, so it must not be asked again afterwards.
var startExe, startExeErr = func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}()

func executable() (string, error) { return startExe, startExeErr }

func (n *Node) updateOptions(version string) (update.Options, error) {
	exe, err := executable()
	if err != nil {
		return update.Options{}, err
	}
	if version == "" {
		version = n.cfg.Update.Pin
	}
	return update.Options{
		Current:    buildinfo.Version(),
		Platform:   buildinfo.Platform(),
		Project:    n.enr.Project,
		Channel:    n.cfg.Update.Channel,
		Version:    version,
		ReleaseKey: n.releaseKey(),
		Exe:        exe,
		WorkDir:    filepath.Join(n.opts.StateDir, updateWorkDir),
		Trial:      n.trial,
	}, nil
}

// trial runs the new binary against this state directory: it must reach
// the hub and register the relay within TrialTimeout.
func (n *Node) trial(ctx context.Context, exe string) error {
	ctx, cancel := context.WithTimeout(ctx, TrialTimeout)
	defer cancel()
	args := []string{"run", "--state-dir", n.opts.StateDir, "--update-trial"}
	if n.opts.HubAddr != "" {
		args = append(args, "--hub", n.opts.HubAddr)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	tail := strings.TrimSpace(out.String())
	if i := strings.LastIndexByte(tail, '\n'); i >= 0 {
		tail = tail[i+1:]
	}
	if ctx.Err() != nil {
		return fmt.Errorf("did not reach the hub within %s", TrialTimeout)
	}
	if tail == "" {
		return err
	}
	return fmt.Errorf("%v: %s", err, tail)
}

// Update implements localapi.Backend: check for (and unless check, apply)
// a release. A successful update restarts the node into the new binary.
func (n *Node) Update(ctx context.Context, r localapi.UpdateRequest) (localapi.UpdateResult, error) {
	o, err := n.updateOptions(r.Version)
	if err != nil {
		return localapi.UpdateResult{}, err
	}
	out := localapi.UpdateResult{Current: o.Current}
	if r.Check {
		m, err := update.Check(ctx, hubSource{n}, o)
		if err != nil {
			return out, err
		}
		out.Available = m.Version
		out.Message = fmt.Sprintf("%s is available on channel %s (running %s)", m.Version, m.Channel, o.Current)
		return out, nil
	}
	res, err := update.Apply(ctx, hubSource{n}, o)
	out.Available = res.To
	if err != nil {
		n.log.Error("update failed", "from", o.Current, "to", res.To, "err", err)
		n.metrics.updates.WithLabelValues("failed").Inc()
		if res.To != "" {
			n.reportUpdate(ctx, control.UpdateResult{From: o.Current, To: res.To, OK: false, Reason: err.Error()})
		}
		return out, err
	}
	out.Updated, out.Message = res.Updated, res.Message
	if res.Updated {
		n.metrics.updates.WithLabelValues("updated").Inc()
		saveJSON(filepath.Join(n.opts.StateDir, UpdateMarkerFile), updateMarker{From: res.From, To: res.To, At: time.Now().UTC()})
		n.log.Info("updated; restarting into the new version", "from", res.From, "to", res.To)
		n.mu.Lock()
		n.restart = true
		stop := n.stop
		n.mu.Unlock()
		// Run returns; the local API shuts down gracefully, so this
		// answer still reaches the CLI.
		stop()
	}
	return out, nil
}

func (n *Node) reportUpdate(ctx context.Context, r control.UpdateResult) {
	if h, err := n.currentHub(ctx, 5*time.Second); err == nil {
		h.Call(ctx, control.TypeUpdateResult, r, nil)
	}
}

// finishUpdate reports a completed update once the new binary is connected.
func (n *Node) finishUpdate(ctx context.Context, h *hubConn) {
	path := filepath.Join(n.opts.StateDir, UpdateMarkerFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var m updateMarker
	if json.Unmarshal(b, &m) != nil || m.To != buildinfo.Version() {
		os.Remove(path)
		return
	}
	if err := h.Call(ctx, control.TypeUpdateResult, control.UpdateResult{From: m.From, To: m.To, OK: true}, nil); err == nil {
		os.Remove(path)
		n.log.Info("update complete", "from", m.From, "to", m.To)
	}
}

// autoUpdate checks on the configured schedule, inside the maintenance
// window, unless the customer turned updates off (or a package manager
// owns the binary).
func (n *Node) autoUpdate(ctx context.Context) {
	if !n.autoUpdateEnabled() {
		return
	}
	every := n.cfg.Update.CheckEvery
	if every <= 0 {
		every = 6 * time.Hour
	}
	w, err := parseWindow(n.cfg.Update.Window)
	if err != nil {
		n.log.Error("update window ignored", "err", err)
	}
	t := time.NewTimer(min(every, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(every)
		if w != nil && !w.contains(time.Now()) {
			continue
		}
		if _, err := n.Update(ctx, localapi.UpdateRequest{}); err != nil && !errors.Is(err, update.ErrInProgress) {
			n.log.Warn("scheduled update check failed", "err", err)
		}
	}
}

func (n *Node) autoUpdateEnabled() bool {
	if a := n.cfg.Update.Auto; a != nil {
		return *a
	}
	// Packaged installs defer to the package manager by default.
	b, err := os.ReadFile(filepath.Join(n.opts.StateDir, "installed.json"))
	if err == nil {
		var m struct{ Packaged bool }
		if json.Unmarshal(b, &m) == nil && m.Packaged {
			return false
		}
	}
	return true
}

// window is a weekly maintenance window in local time.
type window struct {
	day        time.Weekday
	anyDay     bool
	start, end int // minutes after midnight
}

func parseWindow(s string) (*window, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	w := &window{anyDay: true}
	fields := strings.Fields(s)
	if len(fields) == 2 {
		days := map[string]time.Weekday{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
		d, ok := days[strings.ToLower(fields[0])[:min(3, len(fields[0]))]]
		if !ok {
			return nil, fmt.Errorf("update window %q: unknown day %q", s, fields[0])
		}
		w.day, w.anyDay = d, false
		fields = fields[1:]
	}
	if len(fields) != 1 {
		return nil, fmt.Errorf("update window %q: want [DAY] HH:MM-HH:MM", s)
	}
	a, b, ok := strings.Cut(fields[0], "-")
	if !ok {
		return nil, fmt.Errorf("update window %q: want [DAY] HH:MM-HH:MM", s)
	}
	var err error
	if w.start, err = minutes(a); err != nil {
		return nil, fmt.Errorf("update window %q: %w", s, err)
	}
	if w.end, err = minutes(b); err != nil {
		return nil, fmt.Errorf("update window %q: %w", s, err)
	}
	return w, nil
}

func minutes(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func (w *window) contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	in := w.start <= m && m < w.end
	if w.end <= w.start { // over midnight
		in = m >= w.start || m < w.end
	}
	return in && (w.anyDay || t.Weekday() == w.day)
}

// RunTrial is the new binary's trial after an update: reach the hub with
// this node's identity, refresh the credential, register the relay, exit.
func RunTrial(ctx context.Context, o Options) error {
	n := New(o)
	if err := CheckStateDir(o.StateDir, false); err != nil {
		return err
	}
	static, _, err := loadOrCreateKey(o.StateDir)
	if err != nil {
		return err
	}
	n.static = static
	enr, err := LoadEnrollment(o.StateDir)
	if err != nil || enr == nil {
		return fmt.Errorf("trial: not enrolled (%v)", err)
	}
	cred, err := PeekCredentialOf(enr)
	if err != nil {
		return err
	}
	n.enr, n.cred = enr, cred
	if err := n.refreshCredential(ctx); err != nil {
		return fmt.Errorf("trial: %w", err)
	}
	var last error
	for _, addr := range n.hubAddrs() {
		h, err := dialHub(ctx, addr, static, enr.HubKey, n.credential(), nil)
		if err != nil {
			last = err
			continue
		}
		defer h.Close()
		if relay := n.relayName(); relay != "" {
			if err := h.Call(ctx, control.TypeRegisterRelay, control.RegisterRelayRequest{Name: relay}, nil); err != nil {
				return fmt.Errorf("trial: relay %s: %w", relay, err)
			}
		}
		return nil
	}
	return fmt.Errorf("trial: %w", last)
}

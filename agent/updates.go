// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeportal/connect/agent/localapi"
	"github.com/edgeportal/connect/agent/statedir"
	"github.com/edgeportal/connect/agent/update"
	"github.com/edgeportal/connect/internal/brand"
	"github.com/edgeportal/connect/internal/buildinfo"
	"github.com/edgeportal/connect/wire/control"
	"github.com/edgeportal/connect/wire/key"
)

// TrialTimeout bounds a new version's trial (reach the hub, register the
// relay) before the previous version is put back. The environment variable
// <PREFIX>UPDATE_TRIAL_TIMEOUT (a duration) overrides it, e.g. for a hub
// behind a slow path.
var TrialTimeout = 60 * time.Second

// trialTimeout is TrialTimeout or its override from the environment.
func trialTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(brand.EnvPrefix() + "UPDATE_TRIAL_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return TrialTimeout
}

// RestartExitCode is the exit code that asks the service manager to start
// the node again, into the version just handed over to (the units list it
// in RestartForceExitStatus and SuccessExitStatus; Windows treats it as a
// crash, which triggers the recovery action).
const RestartExitCode = 75

// ErrRestart is returned by Run when the node handed over to another
// version and must be restarted into it (see Reexec).
var ErrRestart = errors.New("restart into the updated binary")

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

// releaseKeyFor is the key releases must verify with: the build's, else
// the one the node's ticket named.
func releaseKeyFor(enr *Enrollment) key.SigningPublic {
	if s := brand.ReleaseKey(); s != "" {
		if k, err := key.ParseSigningPublic(s); err == nil {
			return k
		}
	}
	if enr == nil {
		return key.SigningPublic{}
	}
	return enr.ReleaseKey
}

func (n *Node) releaseKey() key.SigningPublic { return releaseKeyFor(n.enr) }

// startExe is the binary's path as resolved when the process started: on
// Linux os.Executable follows the running inode, which an in-place update
// renames to .prev, so it must not be asked again afterwards.
var startExe, startExeErr = func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}()

func executable() (string, error) { return startExe, startExeErr }

func (n *Node) updateDir() string { return UpdateDir(n.opts.StateDir) }

// UpdateDir is the update directory of a state directory: staged releases
// and update.LoadState's state (pending trial, failed releases, the last
// result), for `doctor` and `status` to show.
func UpdateDir(stateDir string) string { return filepath.Join(stateDir, statedir.UpdateDir) }

func (n *Node) updateOptions(version string) (update.Options, error) {
	exe, err := executable()
	if err != nil {
		return update.Options{}, err
	}
	explicit := version != ""
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
		Dir:        n.updateDir(),
		Binary:     brand.AgentBinary(),
		Explicit:   explicit,
		Exe:        exe,
		Trial:      n.trialExe,
	}, nil
}

// trial runs a staged version's trial as a child process (a foreground
// node, which no service manager would restart after a crash): verified
// first, it must reach the hub and register the relay within TrialTimeout.
func (n *Node) trial(ctx context.Context, version string) error {
	exe, err := update.VerifyStaged(n.updateDir(), version, brand.AgentBinary(), n.enr.Project, buildinfo.Platform(), n.releaseKey())
	if err != nil {
		return err
	}
	return n.trialExe(ctx, exe)
}

func (n *Node) trialExe(ctx context.Context, exe string) error {
	timeout := trialTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
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
		return fmt.Errorf("did not reach the hub within %s", timeout)
	}
	if tail == "" {
		return err
	}
	return fmt.Errorf("%v: %s", err, tail)
}

// Update implements localapi.Backend: check for (and unless check, apply)
// a release. A successful update restarts the node into the new version:
// under a service manager by exiting (RestartExitCode) so it starts the
// launcher again, in the foreground by re-executing the launcher in place
// after the new version passed a trial run.
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
		if st, err := update.LoadState(o.Dir); err == nil {
			if f, ok := st.FailedBefore(m.Version); ok {
				out.Message += fmt.Sprintf("; it failed on this node before (%s)", f.Reason)
			}
		}
		return out, nil
	}
	if !launcherSupported {
		return n.updateInPlace(ctx, o, out)
	}
	staged, res, err := update.Stage(ctx, hubSource{n}, o)
	out.Available = res.To
	if err != nil {
		return out, n.updateFailed(ctx, res, err)
	}
	if staged == nil {
		out.Message = res.Message
		return out, nil
	}
	how := "through the service manager"
	if !supervised() {
		how = "in place"
		if err := n.trial(ctx, staged.Version); err != nil {
			reason := fmt.Sprintf("new version %s failed its trial (%v); rolled back to %s", staged.Version, err, o.Current)
			if ferr := update.Fail(o.Dir, o.Current, staged.Version, reason); ferr != nil {
				n.log.Error("could not record the failed update", "err", ferr)
			}
			n.metrics.updates.WithLabelValues("failed").Inc()
			n.log.Error("update failed", "from", o.Current, "to", staged.Version, "err", reason)
			n.sendResult(ctx)
			return out, errors.New(reason)
		}
	}
	if err := update.BeginTrial(o.Dir, o.Current, staged.Version, o.Explicit); err != nil {
		return out, n.updateFailed(ctx, res, err)
	}
	n.metrics.updates.WithLabelValues("updated").Inc()
	out.Updated = true
	out.Message = fmt.Sprintf("updated %s → %s; restarting into it %s", o.Current, staged.Version, how)
	n.log.Info("update staged and verified; restarting into the new version", "from", o.Current, "to", staged.Version, "how", how)
	n.restartSoon()
	return out, nil
}

// updateInPlace is Update where a process cannot exec (Windows).
func (n *Node) updateInPlace(ctx context.Context, o update.Options, out localapi.UpdateResult) (localapi.UpdateResult, error) {
	res, err := update.ApplyInPlace(ctx, hubSource{n}, o)
	out.Available = res.To
	if err != nil {
		return out, n.updateFailed(ctx, res, err)
	}
	out.Updated, out.Message = res.Updated, res.Message
	if res.Updated {
		n.metrics.updates.WithLabelValues("updated").Inc()
		// The trial ran before the swap; the hub hears of it once the
		// new binary is connected.
		if err := update.Record(o.Dir, update.Outcome{From: res.From, To: res.To, OK: true}); err != nil {
			n.log.Error("could not record the update", "err", err)
		}
		n.log.Info("updated; restarting into the new version", "from", res.From, "to", res.To)
		n.restartSoon()
	}
	return out, nil
}

// updateFailed logs, counts and reports (when a release was chosen) an
// update that failed before any hand-over, and returns err.
func (n *Node) updateFailed(ctx context.Context, res update.Result, err error) error {
	n.log.Error("update failed", "from", res.From, "to", res.To, "err", err)
	n.metrics.updates.WithLabelValues("failed").Inc()
	if res.To != "" && !errors.Is(err, update.ErrInProgress) {
		n.reportUpdate(ctx, control.UpdateResult{From: res.From, To: res.To, OK: false, Reason: err.Error()})
	}
	return err
}

// restartSoon stops the node for a restart into another version. Run
// returns and the local API shuts down gracefully, so an answer in flight
// (the CLI's update) still reaches its client.
func (n *Node) restartSoon() {
	n.mu.Lock()
	n.restart = true
	stop := n.stop
	n.mu.Unlock()
	stop()
}

func (n *Node) reportUpdate(ctx context.Context, r control.UpdateResult) {
	if h, err := n.currentHub(ctx, 5*time.Second); err == nil {
		h.Call(ctx, control.TypeUpdateResult, r, nil)
	}
}

// sendResult sends the pending update outcome to the hub, if any, and
// forgets it once the hub has it.
func (n *Node) sendResult(ctx context.Context) {
	h, err := n.currentHub(ctx, 5*time.Second)
	if err != nil {
		return
	}
	n.sendResultTo(ctx, h)
}

func (n *Node) sendResultTo(ctx context.Context, h *hubConn) {
	dir := n.updateDir()
	r, err := update.PendingResult(dir)
	if err != nil || r == nil {
		return
	}
	if err := h.Call(ctx, control.TypeUpdateResult, control.UpdateResult{From: r.From, To: r.To, OK: r.OK, Reason: r.Reason}, nil); err != nil {
		n.log.Warn("could not report the update result to the hub; will retry on the next connection", "err", err)
		return
	}
	update.Acknowledged(dir, *r)
}

// finishUpdate runs once the node is connected (after the relay was
// registered, or refused): a version on trial confirms it is up, and the
// pending outcome of the last update goes to the hub.
func (n *Node) finishUpdate(ctx context.Context, h *hubConn) {
	n.mu.Lock()
	up := n.hub == h && (n.relayName() == "" || n.relayUp)
	n.mu.Unlock()
	if up {
		self := buildinfo.Version()
		if ok, err := update.Confirm(n.updateDir(), self); err != nil {
			n.log.Error("could not confirm the update", "err", err)
		} else if ok {
			n.log.Info("update complete: the new version reached the hub and registered its relay", "version", self)
		}
	}
	n.sendResultTo(ctx, h)
}

// watchTrial runs at the node's start: a node that is the version on
// trial must be up (finishUpdate confirms) within TrialTimeout, else it
// records why and exits so the launcher puts the previous version back; a
// node of another version than the one promised ends the trial as failed.
func (n *Node) watchTrial(ctx context.Context) {
	dir, self := n.updateDir(), buildinfo.Version()
	onTrial, t, err := update.StartCheck(dir, self)
	switch {
	case err != nil:
		n.log.Error("update state", "err", err)
		return
	case !onTrial && t.To != "":
		n.log.Error("update failed: its trial ended without a launcher putting the previous version back, or the node came back at another version than promised; not retrying that release", "promised", t.To, "running", self)
		n.metrics.updates.WithLabelValues("failed").Inc()
		return
	case !onTrial:
		return
	}
	timeout := trialTimeout()
	n.log.Info("on trial after an update: must reach the hub and register the relay", "from", t.From, "to", t.To, "attempt", t.Attempts, "deadline", timeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return
	case <-timer.C:
	}
	st, err := update.LoadState(dir)
	if err != nil || st.Trial == nil || st.Trial.To != self {
		return // confirmed (or no longer ours)
	}
	n.mu.Lock()
	why := orElse(n.relayErr, n.hubErr)
	n.mu.Unlock()
	reason := fmt.Sprintf("%s did not reach the hub and register its relay within %s", self, timeout)
	if why != "" {
		reason += ": " + why
	}
	if err := update.FailTrial(dir, self, reason); err != nil {
		n.log.Error("could not record the failed trial", "err", err)
	}
	n.log.Error("update failed its trial; restarting into the previous version", "reason", reason)
	n.restartSoon()
}

// autoUpdate checks on the configured schedule, inside the maintenance
// window, unless the customer turned updates off (or a package manager
// owns the binary).
func (n *Node) autoUpdate(ctx context.Context) {
	n.watchTrial(ctx)
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
	m, err := statedir.ReadMarker(n.opts.StateDir)
	return err != nil || m == nil || !m.Packaged
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
	if err := statedir.Ensure(o.StateDir, false); err != nil {
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
		h, err := dialHub(ctx, n.dial(), addr, static, enr.HubKey, n.credential(), nil)
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

package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
)

// reloadDebounce coalesces the burst of events one save or one ConfigMap
// symlink swap produces.
const reloadDebounce = 100 * time.Millisecond

// reloadPoll also re-reads the file periodically, for filesystems where
// change events are not delivered.
const reloadPoll = 5 * time.Second

// watch re-reads the config when its file changes. It watches the directory,
// not the file: editors replace files by rename, and Kubernetes updates a
// mounted ConfigMap by swapping a ..data symlink inside the directory.
func (a *app) watch(ctx context.Context) {
	last, _ := os.ReadFile(a.path)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.log.Warn("config watch unavailable; polling only", slog.Any("err", err))
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(a.path)); err != nil {
			a.log.Warn("config watch unavailable; polling only", slog.Any("err", err))
		}
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	poll := time.NewTicker(reloadPoll)
	defer poll.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			debounce = time.After(reloadDebounce)
		case err := <-errs:
			a.log.Warn("config watch error", slog.Any("err", err))
		case <-poll.C:
			debounce = time.After(0)
		case <-debounce:
			debounce = nil
			data, err := os.ReadFile(a.path)
			if err != nil {
				// Mid-swap the file can be briefly absent; the next event or poll retries.
				continue
			}
			if bytes.Equal(data, last) {
				continue
			}
			last = data
			a.reload(ctx, data)
		}
	}
}

// reload swaps in a new engine built from data, or keeps the last good config
// and says why. The Engine is the whole configuration, swapped as one pointer;
// a new one has a new verified-principal cache and step-up memo, so nothing
// learned under the old config is served under the new one.
func (a *app) reload(ctx context.Context, data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg, err := config.Parse(data, a.v)
	if err == nil {
		var engine *extauthz.Engine
		if engine, err = extauthz.NewEngine(cfg, a.keys, a.engineOpts); err == nil {
			// Give a newly added issuer its first keys before it takes traffic.
			wctx, cancel := context.WithTimeout(ctx, reloadKeyWait)
			engine.WaitFirstFetch(wctx)
			cancel()
			a.srv.Swap(engine)
			// Stop refreshing the keys of issuers that left the config.
			a.keys.Retain(engine.Pipeline().JWT())
		}
	}
	if err != nil {
		a.metrics.ConfigRefused()
		a.log.Error("config reload refused; still serving the last good config",
			slog.String("config", a.path), slog.String("problems", err.Error()))
		return
	}
	a.metrics.Reloads.WithLabelValues("ok").Inc()
	a.metrics.ConfigApplied(cfg, time.Now())
	a.log.Info("config reloaded", slog.String("config", a.path),
		slog.Int("issuers", len(cfg.Issuers)), slog.Int("routes", len(cfg.Routes)))
	logWarnings(a.log, cfg)
	if cfg.Tracing != a.tracingCfg {
		a.log.Warn("config reloaded, but its tracing block changed: tracing is set up at start; restart to apply it",
			slog.String("config", a.path))
	}
}

// reloadKeyWait bounds how long a reload waits for new issuers' first keys.
const reloadKeyWait = 5 * time.Second

package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedNATS runs the NATS server that the -procs children share when
// no -nats URL is given: on a loopback port the kernel picks, with
// JetStream in memory for the long-poll chat's log. It lives as long as the
// parent; a restart of the parent starts a new one (new log epoch).
//
// Only this run's processes may use it: every other local process can
// reach a loopback port, and one connected could read every chat message,
// publish what /receive refuses, close any /clock?Id= or purge the streams.
// The server therefore requires a user and a random password made for
// this run, which the children get in their environment (readable by the
// same user only, unlike the command line).
//
// Its store directory, $TMPDIR/tornago-nats-*, holds a file the parent
// keeps locked (flock) while it runs; the lock goes with the parent
// however it ends. The parent removes the directory on a clean stop; when
// the parent is killed (kill -9), its children remove it as they stop (the
// kernel sends them SIGTERM) and, should they be killed too, the next
// -procs start removes every such directory whose lock is free.
type embeddedNATS struct {
	srv  *server.Server
	dir  string
	lock *os.File
	url  string
}

const (
	// jetStreamMemory bounds the embedded JetStream's memory storage.
	jetStreamMemory = 256 << 20
	// natsDirPattern names the embedded NATS's store directories in
	// os.TempDir().
	natsDirPattern = "tornago-nats-*"
	// natsDirLock is the file in the store directory its owner locks.
	natsDirLock = "owner.lock"
	// natsUser is the embedded NATS's only user.
	natsUser = "tornago"
	// natsDirEnv hands the store directory to the children, which remove
	// it when they outlive the parent.
	natsDirEnv = "TORNAGO_CHILD_NATS_DIR"
)

func startNATS(log *slog.Logger) (*embeddedNATS, error) {
	removeStaleNATSDirs(log)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("embedded nats: secret: %w", err)
	}
	password := hex.EncodeToString(secret)
	// JetStream wants a store directory even when every stream is in
	// memory.
	dir, err := os.MkdirTemp("", natsDirPattern)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	// O_CLOEXEC (Go's default): the children do not inherit the lock, so
	// it is free once the parent is gone, whatever the children do.
	lock, err := os.OpenFile(filepath.Join(dir, natsDirLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded nats: lock %s: %w", dir, err)
	}
	e := &embeddedNATS{dir: dir, lock: lock}
	e.srv, err = server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Username: natsUser, Password: password,
		JetStream: true, StoreDir: dir, JetStreamMaxMemory: jetStreamMemory, JetStreamMaxStore: 64 << 20,
	})
	if err != nil {
		e.removeDir()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	e.srv.Start()
	if !e.srv.ReadyForConnections(10 * time.Second) {
		e.srv.Shutdown()
		e.removeDir()
		return nil, fmt.Errorf("embedded nats: not ready after 10s")
	}
	u, err := url.Parse(e.srv.ClientURL())
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded nats: client URL: %w", err)
	}
	u.User = url.UserPassword(natsUser, password)
	e.url = u.String()
	return e, nil
}

// URL is the client URL the children connect to, with the credentials:
// never log it or put it on a command line (redactURL).
func (e *embeddedNATS) URL() string { return e.url }

// Dir is the server's store directory.
func (e *embeddedNATS) Dir() string { return e.dir }

// Close stops the server and removes its store directory.
func (e *embeddedNATS) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.removeDir()
}

func (e *embeddedNATS) removeDir() {
	os.RemoveAll(e.dir)
	e.lock.Close() // after: a sweep must not find the lock free first
}

// removeStaleNATSDirs removes the store directories of embedded NATS
// servers whose parent is gone (their lock is free). A directory without
// the lock file is left alone: it may be one being made right now.
func removeStaleNATSDirs(log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), natsDirPattern))
	for _, d := range dirs {
		if removeOrphanedNATSDir(d) {
			log.Info("removed the store directory of an embedded nats whose parent is gone", "dir", d)
		}
	}
}

// removeOrphanedNATSDir removes dir, a store directory of an embedded
// NATS, if this user owns it and no process holds its lock, and reports
// whether it did.
func removeOrphanedNATSDir(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return false
	}
	f, err := os.OpenFile(filepath.Join(dir, natsDirLock), os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false // its parent runs
	}
	// Held until f closes: a concurrent sweep cannot take it meanwhile.
	return os.RemoveAll(dir) == nil
}

// redactURL returns u (a NATS URL, or several separated by commas) with
// any password or token replaced by "xxxxx", for logs and errors.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, s := range parts {
		p, err := url.Parse(strings.TrimSpace(s))
		switch {
		case err != nil && strings.Contains(s, "@"):
			parts[i] = "(unparsable URL with credentials)"
		case err != nil:
		case p.User != nil:
			if _, has := p.User.Password(); !has {
				// A token alone (nats://TOKEN@host) is a secret too.
				p.User = url.User("xxxxx")
			}
			parts[i] = p.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

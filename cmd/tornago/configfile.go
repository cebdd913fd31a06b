package main

// -config FILE: a TOML file with any flag's value, by the flag's name, and
// the protocol server's namespaces. Flags win over TORNAGO_* variables,
// which win over the file, which wins over the defaults.
//
//	port = 8888
//	log-level = "debug"
//	api-key = "..."                 # better here (mode 0600) than in argv
//	trusted-proxies = ["10.0.0.1", "10.1.0.0/16"]
//
//	[[namespace]]
//	name = "chat"
//	publish = true
//	history = { max_messages = 100, max_age = "1h" }

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
)

// namespaceConfig is one [[namespace]] of the config file: the options of
// the topics "name:..." (name "" is the default namespace: topics without
// ':'). PROTOCOL.md, "Topics and namespaces".
type namespaceConfig struct {
	Name           string        `toml:"name"`
	History        historyConfig `toml:"history"`
	Publish        bool          `toml:"publish"`
	SubscribeToken bool          `toml:"subscribe_token"`
	MaxDataBytes   int           `toml:"max_data_bytes"`
	Presence       bool          `toml:"presence"`
	JoinLeave      bool          `toml:"join_leave"`
	Latest         bool          `toml:"latest"`
	// JoinLeaveMaxNames: over this many subscribers (or joins and leaves
	// in an interval), join/leave pushes carry counts only (default 100).
	JoinLeaveMaxNames int `toml:"join_leave_max_names"`
}

// historyConfig is a namespace's history: each topic keeps its newest
// messages within every bound set (none set: no history).
type historyConfig struct {
	MaxMessages int           `toml:"max_messages"`
	MaxBytes    int           `toml:"max_bytes"`
	MaxAge      time.Duration `toml:"max_age"`
}

// options is h as the hubs take it.
func (h historyConfig) options() pubsub.HistoryOptions {
	return pubsub.HistoryOptions{MaxMessages: h.MaxMessages, MaxBytes: h.MaxBytes, MaxAge: h.MaxAge}
}

// namespaces are ns as the protocol server takes them (nil: none
// configured, the built-in ones apply).
func namespaces(ns []namespaceConfig) []realtime.Namespace {
	if ns == nil {
		return nil
	}
	out := make([]realtime.Namespace, len(ns))
	for i, n := range ns {
		out[i] = realtime.Namespace{Name: n.Name, History: n.History.options(), Publish: n.Publish,
			SubscribeToken: n.SubscribeToken, MaxDataBytes: n.MaxDataBytes, Presence: n.Presence, JoinLeave: n.JoinLeave,
			Latest:            n.Latest,
			JoinLeaveMaxNames: n.JoinLeaveMaxNames}
	}
	return out
}

// fileConfig is what a config file holds besides flags.
type fileConfig struct {
	Namespaces []namespaceConfig
}

// namespaceKey is the config file's table array of namespaces.
const namespaceKey = "namespace"

// loadConfigFile reads the config file at path and sets from it every flag
// of fs not set yet (call it after fs.Parse and applyEnv: flags and the
// environment win). Unknown keys, a value a flag refuses and invalid
// namespaces are errors naming the file and the key.
func loadConfigFile(fs *flag.FlagSet, path string) (fileConfig, error) {
	var fc fileConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return fc, fmt.Errorf("-config: %w", err)
	}
	var raw map[string]toml.Primitive
	md, err := toml.Decode(string(b), &raw)
	if err != nil {
		return fc, fmt.Errorf("-config %s: %w", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys) // errors in a stable order
	for _, k := range keys {
		if k == namespaceKey {
			if err := md.PrimitiveDecode(raw[k], &fc.Namespaces); err != nil {
				return fc, fmt.Errorf("-config %s: [[namespace]]: %w", path, err)
			}
			continue
		}
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			return fc, fmt.Errorf("-config %s: %q is not a flag of tornago (see tornago -h), nor %q", path, k, namespaceKey)
		}
		var v any
		if err := md.PrimitiveDecode(raw[k], &v); err != nil {
			return fc, fmt.Errorf("-config %s: %s: %w", path, k, err)
		}
		s, err := flagText(v)
		if err != nil {
			return fc, fmt.Errorf("-config %s: %s: %w", path, k, err)
		}
		if given[k] {
			continue // the command line or the environment set it
		}
		if err := fs.Set(k, s); err != nil {
			// The value, unless the flag is a secret's.
			shown := strconv.Quote(s)
			if secretFlags[k] {
				shown = "(secret)"
			}
			return fc, fmt.Errorf("-config %s: %s = %s: %w", path, k, shown, err)
		}
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fc, fmt.Errorf("-config %s: unknown key %q (a namespace has name, history {max_messages, max_bytes, max_age}, publish, subscribe_token, max_data_bytes, presence, join_leave, latest)", path, und[0].String())
	}
	if err := checkNamespaces(fc.Namespaces); err != nil {
		return fc, fmt.Errorf("-config %s: %w", path, err)
	}
	return fc, nil
}

// flagText is a TOML value as a flag's text: strings as they are, numbers
// and booleans in Go syntax, an array of strings joined with commas (the
// list flags, -trusted-proxies).
func flagText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", errors.New("a list must hold strings")
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("a %T is not a flag's value: want a string, number, boolean or list of strings", v)
}

// checkNamespaces validates the file's namespaces.
func checkNamespaces(ns []namespaceConfig) error {
	seen := map[string]bool{}
	for i, n := range ns {
		where := fmt.Sprintf("namespace %d (%q)", i+1, n.Name)
		if len(n.Name) > 64 {
			return fmt.Errorf("%s: a name has at most 64 bytes", where)
		}
		for _, c := range []byte(n.Name) {
			if c <= ' ' || c > '~' || c == ':' || c == '#' {
				return fmt.Errorf("%s: a name is printable ASCII without space, ':' or '#'", where)
			}
		}
		if seen[n.Name] {
			return fmt.Errorf("%s: named twice", where)
		}
		seen[n.Name] = true
		h := n.History
		switch {
		case h.MaxMessages < 0 || h.MaxBytes < 0 || h.MaxAge < 0:
			return fmt.Errorf("%s: history bounds must not be negative", where)
		case n.MaxDataBytes < 0:
			return fmt.Errorf("%s: max_data_bytes must not be negative", where)
		case n.JoinLeaveMaxNames < 0:
			return fmt.Errorf("%s: join_leave_max_names must not be negative", where)
		case n.JoinLeave && !n.Presence:
			return fmt.Errorf("%s: join_leave needs presence", where)
		}
	}
	return nil
}

// secretFlags are flags whose values are never logged nor put in a
// -procs child's command line (supervise passes them in the environment).
var secretFlags = map[string]bool{"nats": true, "api-key": true, "token-hmac-secret": true}

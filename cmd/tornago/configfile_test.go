package main

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tornago.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFilePrecedence: flags win over TORNAGO_* variables, which win
// over the file, which wins over the defaults; the file's namespaces come
// back validated.
func TestConfigFilePrecedence(t *testing.T) {
	p := writeConfig(t, `
port = 9000
log-level = "warn"
ping = "5s"
access-log = true
trusted-proxies = ["10.0.0.1", "10.1.0.0/16"]
api-key = "from-file"

[[namespace]]
name = "chat"
publish = true
max_data_bytes = 4096
history = { max_messages = 100, max_bytes = 65536, max_age = "1h" }

[[namespace]]
name = "user"
subscribe_token = true
latest = true
`)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	port := fs.Int("port", 8888, "")
	level := fs.String("log-level", "info", "")
	ping := fs.Duration("ping", 25*time.Second, "")
	access := fs.Bool("access-log", false, "")
	trusted := fs.String("trusted-proxies", "", "")
	key := fs.String("api-key", "", "")
	format := fs.String("log-format", "text", "")
	fs.String("config", "", "")
	if err := fs.Parse([]string{"-port", "9001"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TORNAGO_LOG_LEVEL": "debug"}
	if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	fc, err := loadConfigFile(fs, p)
	if err != nil {
		t.Fatal(err)
	}
	if *port != 9001 || *level != "debug" || *ping != 5*time.Second || !*access ||
		*trusted != "10.0.0.1,10.1.0.0/16" || *key != "from-file" || *format != "text" {
		t.Errorf("port %d (flag 9001), level %q (env debug), ping %v, access %v, trusted %q, key %q, format %q (default text)",
			*port, *level, *ping, *access, *trusted, *key, *format)
	}
	ns := namespaces(fc.Namespaces)
	if len(ns) != 2 || ns[0].Name != "chat" || !ns[0].Publish || ns[0].MaxDataBytes != 4096 ||
		ns[0].History.MaxMessages != 100 || ns[0].History.MaxBytes != 65536 || ns[0].History.MaxAge != time.Hour ||
		ns[1].Name != "user" || !ns[1].SubscribeToken || ns[1].History.Keeps() ||
		ns[0].Latest || !ns[1].Latest {
		t.Errorf("namespaces %+v", ns)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, c := range []struct{ text, says string }{
		{`port = "x"`, `port = "x"`},
		{`nosuch = 1`, `"nosuch" is not a flag`},
		{`config = "other.toml"`, `"config" is not a flag`},
		{`port = 1 2`, "toml"},
		{`api-key = 12.5e`, "toml"},
		{"port = {a = 1}", "not a flag's value"},
		{"trusted-proxies = [1, 2]", "list must hold strings"},
		{"api-key = \"s\"\nport = \"nope\"", "port"},
		{"[[namespace]]\nname = \"a\"\nhistroy = { max_messages = 1 }", `unknown key "namespace.histroy"`},
		{"[[namespace]]\nname = \"a:b\"", "without space, ':'"},
		{"[[namespace]]\nname = \"a\"\n[[namespace]]\nname = \"a\"", "named twice"},
		{"[[namespace]]\nname = \"a\"\nhistory = { max_messages = -1 }", "negative"},
		{"[[namespace]]\nname = \"a\"\nhistory = { max_age = \"soon\" }", "namespace"},
		{"[[namespace]]\nname = \"a\"\njoin_leave = true", "needs presence"},
		{"[[namespace]]\nname = \"a\"\npresence = true\njoin_leave = true\njoin_leave_max_names = -1", "join_leave_max_names must not be negative"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.Int("port", 8888, "")
		fs.String("api-key", "", "")
		fs.String("trusted-proxies", "", "")
		fs.String("config", "", "")
		_, err := loadConfigFile(fs, writeConfig(t, c.text))
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%q: %v, want an error saying %q", c.text, err, c.says)
		}
	}
	// A secret's refused value is not repeated in the error.
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Func("api-key", "", func(string) error { return errors.New("refused") })
	_, err := loadConfigFile(fs, writeConfig(t, `api-key = "very-secret-value"`))
	if err == nil || strings.Contains(err.Error(), "very-secret-value") {
		t.Errorf("error %v: want one without the secret", err)
	}
	if _, err := loadConfigFile(fs, filepath.Join(t.TempDir(), "absent.toml")); err == nil || !strings.Contains(err.Error(), "-config") {
		t.Errorf("absent file: %v", err)
	}
}

// TestBinaryConfigFile: the binary reads -config (and TORNAGO_CONFIG):
// the file's api-key enables the API, its namespaces replace the built-in
// ones (a protocol client may subscribe to the file's "room" namespace,
// not to the built-in "chat" any more), and an invalid file exits 2 with
// the reason.
func TestBinaryConfigFile(t *testing.T) {
	bin := buildTornago(t)
	p := writeConfig(t, `
api-key = "file-key"
log-level = "warn"

[[namespace]]
name = "room"
publish = true
history = { max_messages = 10 }
`)
	addr, _, _, _ := startBuiltEnv(t, bin, freeAddr(t), []string{"TORNAGO_CONFIG=" + p})
	c := dialProto(t, addr)
	c.do("connect", map[string]any{})
	if fs := c.do("subscribe", map[string]any{"topic": "room:a"}); fs[len(fs)-1]["error"] != nil {
		t.Errorf("subscribe room:a: %s", fs[len(fs)-1]["error"])
	}
	if fs := c.do("subscribe", map[string]any{"topic": "chat:a"}); !strings.Contains(string(fs[len(fs)-1]["error"]), `"code":102`) {
		t.Errorf("subscribe chat:a: %s, want error 102", fs[len(fs)-1])
	}
	if code, body := apiPost(t, addr, "publish", "file-key", `{"topic":"room:a","data":"hi"}`); code != 200 {
		t.Errorf("publish with the file's key: %d %s", code, body)
	}
	if fs := c.do("ping", map[string]any{}); len(fs) != 2 || !strings.Contains(string(fs[0]["push"]), `"hi"`) {
		t.Errorf("the publication: %s", fs)
	}
	// The command line wins over the file: another key.
	addr, _, _, _ = startBuiltEnv(t, bin, freeAddr(t), nil, "-config", p, "-api-key", "flag-key")
	if code, _ := apiPost(t, addr, "publish", "file-key", `{"topic":"room:a","data":1}`); code != 401 {
		t.Errorf("the file's key with -api-key given: %d, want 401", code)
	}

	bad := writeConfig(t, "[[namespace]]\nname = \"x y\"\n")
	out, err := exec.Command(bin, "-config", bad, "-port", "0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "namespace 1") {
		t.Errorf("invalid file: %v %s, want exit 2 naming the namespace", err, out)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
)

// nginxPath finds Debian's nginx (in /usr/sbin, which a non-root PATH may
// lack), or "".
func nginxPath() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// makeCert writes a self-signed certificate for 127.0.0.1 and localhost
// (cert.pem, key.pem in dir) and returns a pool that trusts it.
func makeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "tornago proxy test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}

// freePort returns a loopback port that was free a moment ago, below the
// kernel's ephemeral range when it can (a port from ":0", closed again,
// may be taken by any concurrent test's outgoing connection before the
// server binds it).
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		p := 10000 + mrand.IntN(20000)
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			ln.Close()
			return p
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startDemosBehindProxy runs the demo routes trusting 127.0.0.1 (the
// proxy), with the binary's access log (JSON, into the returned buffer),
// plus /test/who, which answers what the server believes about the client
// and the proxy headers that reached it.
func startDemosBehindProxy(t *testing.T) (string, *syncBuffer) {
	t.Helper()
	opts := demoAppOptions(longPollOptions{})
	opts.TrustedProxies = []string{"127.0.0.1"}
	access := &syncBuffer{}
	opts.AccessLog = accessLogger(slog.New(slog.NewJSONHandler(access, nil)))
	addr := startDemoApp(t, opts, nil, func(app *loop.Application) {
		app.HandleFunc("/test/who", func(r *loop.Request) {
			r.Write(map[string]string{"ip": r.RemoteIP(), "scheme": r.Scheme(), "host": r.Host(), "peer": r.RemoteAddr(),
				"forwarded": strings.Join(r.Headers("Forwarded"), " | "), "x_real_ip": strings.Join(r.Headers("X-Real-IP"), " | "),
				"x_forwarded_for": strings.Join(r.Headers("X-Forwarded-For"), " | ")})
		})
	})
	return addr, access
}

// syncBuffer collects nginx's stderr from its own goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recipeConfig is deploy/nginx.conf with its listen addresses, upstream and
// certificate paths replaced; every replaced line must be there, so that the
// test fails when the recipe changes under it.
func recipeConfig(t *testing.T, dir, backend string, tlsPort, httpPort int) string {
	t.Helper()
	recipe, err := os.ReadFile("deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(recipe)
	for _, r := range [][2]string{
		{"server 127.0.0.1:8888;", "server " + backend + ";"},
		{"listen 443 ssl;", fmt.Sprintf("listen 127.0.0.1:%d ssl;", tlsPort)},
		{"listen [::]:443 ssl;", ""},
		{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", httpPort)},
		{"listen [::]:80;", ""},
		{"/etc/ssl/tornago/fullchain.pem", filepath.Join(dir, "cert.pem")},
		{"/etc/ssl/tornago/privkey.pem", filepath.Join(dir, "key.pem")},
	} {
		if strings.Count(conf, r[0]) != 1 {
			t.Fatalf("deploy/nginx.conf: %q appears %d times, want once", r[0], strings.Count(conf, r[0]))
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	return conf
}

// startNginx runs Debian's nginx as a child (no daemon, no root paths) with
// the recipe, and returns once it accepts TLS on tlsPort.
func startNginx(t *testing.T, exe, backend string, tlsPort, httpPort int, pool *x509.CertPool, dir string) {
	t.Helper()
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tornago.conf"), []byte(recipeConfig(t, dir, backend, tlsPort, httpPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The main file stands in for Debian's /etc/nginx/nginx.conf, which
	// includes conf.d/*.conf inside http. As root, nginx would run its
	// workers as nobody, who cannot enter the test's private directory.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	main := user + `worker_processes 1;
events { worker_connections 256; }
http {
	access_log ` + filepath.Join(dir, "access.log") + `;
	client_body_temp_path ` + filepath.Join(tmp, "body") + `;
	proxy_temp_path ` + filepath.Join(tmp, "proxy") + `;
	fastcgi_temp_path ` + filepath.Join(tmp, "fastcgi") + `;
	uwsgi_temp_path ` + filepath.Join(tmp, "uwsgi") + `;
	scgi_temp_path ` + filepath.Join(tmp, "scgi") + `;
	include ` + filepath.Join(dir, "tornago.conf") + `;
}
`
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command(exe, "-p", dir, "-c", conf, "-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+"; error_log stderr;")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful: workers finish, then exit
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("nginx log:\n%s", logs.String())
			if b, err := os.ReadFile(filepath.Join(dir, "access.log")); err == nil {
				t.Logf("nginx access log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort), &tls.Config{RootCAs: pool})
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not serving TLS after 10s: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNginxTLSProxy runs the shipped recipe, deploy/nginx.conf, in front of
// the demo server with a certificate made here, and uses it as clients
// would: Python's websocket-client and gorilla over wss:// with the
// certificate verified, a long poll, the server's view of the client's
// address, and Chromium loading the page over https.
func TestNginxTLSProxy(t *testing.T) {
	exe := nginxPath()
	requireTool(t, exe != "", "nginx (apt-get install nginx)")
	dir := t.TempDir()
	pool := makeCert(t, dir)
	backend, access := startDemosBehindProxy(t)
	tlsPort, httpPort := freePort(t), freePort(t)
	startNginx(t, exe, backend, tlsPort, httpPort, pool, dir)
	public := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	tlsConf := &tls.Config{RootCAs: pool}

	// httpsFrom is a client whose connections to nginx leave from src:
	// 127.0.0.2 is a client address distinct from the proxy's 127.0.0.1.
	httpsFrom := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: tlsConf},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}

	t.Run("RemoteIP", func(t *testing.T) {
		// A client that claims another address in X-Forwarded-For: nginx
		// appends the real one, and Tornago takes the rightmost untrusted.
		req, _ := http.NewRequest("GET", "https://"+public+"/test/who", nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("X-Forwarded-Proto", "http")
		resp, err := httpsFrom("127.0.0.2").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var who map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&who); err != nil {
			t.Fatal(err)
		}
		if who["ip"] != "127.0.0.2" || who["scheme"] != "https" || who["host"] != public || !strings.HasPrefix(who["peer"], "127.0.0.1:") {
			t.Errorf("server saw %v; want ip 127.0.0.2, scheme https, host %s, peer the proxy", who, public)
		}
	})

	// A client that forges every proxy header nginx passes through or
	// rewrites: none of it may decide RemoteIP, Scheme or Host, and the
	// recipe must not hand Forwarded (which it would pass on untouched) or
	// the client's X-Real-IP to the backend at all.
	t.Run("Spoofing", func(t *testing.T) {
		for _, tc := range []struct{ name, header, value string }{
			{"forwarded for", "Forwarded", "for=6.6.6.6;proto=http;host=evil.example"},
			{"forwarded for loopback", "Forwarded", "for=127.0.0.1"},
			{"forwarded for v6 loopback", "Forwarded", `for="[::1]"`},
			{"forwarded proto", "Forwarded", "proto=http"},
			{"forwarded host", "Forwarded", "host=evil.example"},
			{"forwarded malformed", "Forwarded", `for=6.6.6.6;;"`},
			{"x-real-ip", "X-Real-IP", "6.6.6.6"},
			{"x-real-ip loopback", "X-Real-IP", "127.0.0.1"},
			{"x-forwarded-for loopback", "X-Forwarded-For", "127.0.0.1"},
			{"x-forwarded-host", "X-Forwarded-Host", "evil.example"},
			{"x-forwarded-proto", "X-Forwarded-Proto", "http"},
		} {
			req, _ := http.NewRequest("GET", "https://"+public+"/test/who?case="+url.QueryEscape(tc.name), nil)
			req.Header.Set(tc.header, tc.value)
			resp, err := httpsFrom("127.0.0.2").Do(req)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var who map[string]string
			err = json.NewDecoder(resp.Body).Decode(&who)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if who["ip"] != "127.0.0.2" || who["scheme"] != "https" || who["host"] != public {
				t.Errorf("%s: %s: %s: server saw ip %s scheme %s host %s; want 127.0.0.2 https %s",
					tc.name, tc.header, tc.value, who["ip"], who["scheme"], who["host"], public)
			}
			if who["forwarded"] != "" || who["x_real_ip"] != "127.0.0.2" || who["x_forwarded_for"] == "" {
				t.Errorf("%s: the backend got Forwarded %q X-Real-IP %q X-Forwarded-For %q; want none, nginx's 127.0.0.2, nginx's list",
					tc.name, who["forwarded"], who["x_real_ip"], who["x_forwarded_for"])
			}
		}
		// The access log names the client nginx saw, for every one of them.
		var n int
		for line := range strings.SplitSeq(access.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "access" || !strings.HasPrefix(fmt.Sprint(rec["path"]), "/test/who") {
				continue
			}
			n++
			if ip := fmt.Sprint(rec["remote_ip"]); ip != "127.0.0.2" {
				t.Errorf("access log: %s", line)
			}
		}
		if n == 0 {
			t.Errorf("no access record for /test/who in:\n%s", access.String())
		}

		// A foreign page that names itself the public host: the origin
		// check must still compare with the host nginx forwards.
		d := gws.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: tlsConf}
		for _, h := range []http.Header{
			{"Origin": {"https://evil.example"}, "Forwarded": {"host=evil.example;proto=https"}},
			{"Origin": {"http://evil.example"}, "Forwarded": {"host=evil.example"}},
			{"Origin": {"https://evil.example"}, "X-Forwarded-Host": {"evil.example"}},
		} {
			c, resp, err := d.Dial("wss://"+public+"/clock", h)
			if err == nil {
				c.Close()
			}
			if resp == nil || resp.StatusCode != 403 {
				st := 0
				if resp != nil {
					st = resp.StatusCode
				}
				t.Errorf("upgrade with %v: status %d (%v), want 403", h, st, err)
			}
		}
	})

	t.Run("Redirect", func(t *testing.T) {
		resp, err := httpsFrom("127.0.0.1").Get(fmt.Sprintf("http://127.0.0.1:%d/index", httpPort))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != 301 || !strings.HasPrefix(loc, "https://127.0.0.1/") {
			t.Errorf("plain HTTP: %d Location %q, want 301 to https", resp.StatusCode, loc)
		}
	})

	t.Run("Python", func(t *testing.T) {
		const py = "/usr/bin/python3"
		_, err := os.Stat(py)
		requireTool(t, err == nil, py)
		requireTool(t, exec.Command(py, "-c", "import websocket").Run() == nil, "python3-websocket (Debian package; `import websocket`)")
		// websocket-client sends Origin: http://127.0.0.1:PORT, which the
		// origin check must match against the public host nginx forwards.
		script := `
import ssl, sys, websocket
ws = websocket.create_connection(sys.argv[1], timeout=10, sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": sys.argv[2]})
print(ws.recv())
ws.send("through nginx")
print(ws.recv())
ws.close()
`
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, py, "-c", script, "wss://"+public+"/ws", filepath.Join(dir, "cert.pem")).CombinedOutput()
		if err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		if got := string(out); got != "Welcome\nnew message :through nginx\n" {
			t.Fatalf("python got %q", got)
		}
	})

	t.Run("GorillaClock", func(t *testing.T) {
		d := gws.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: tlsConf}
		c, resp, err := d.Dial("wss://"+public+"/clock", http.Header{"Origin": {"https://" + public}})
		if err != nil {
			st := 0
			if resp != nil {
				st = resp.StatusCode
			}
			t.Fatalf("dial /clock: %v (status %d)", err, st)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var tick struct{ Seq, TS int64 }
		if err := json.Unmarshal(b, &tick); err != nil || tick.Seq <= 0 || tick.TS <= 0 {
			t.Fatalf("tick %q: %v", b, err)
		}
		// A foreign page is refused even through the proxy.
		_, resp, err = d.Dial("wss://"+public+"/clock", http.Header{"Origin": {"https://evil.example"}})
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Errorf("foreign origin: err %v, want 403", err)
		}
	})

	t.Run("LongPoll", func(t *testing.T) {
		c := httpsFrom("127.0.0.1")
		base := "https://" + public
		waiting := make(chan pollReply, 1)
		go func() {
			var r pollReply
			post(t, c, base+"/update-message", url.Values{"cursor": {"0"}}, &r)
			waiting <- r
		}()
		// Give the poll time to park (not asserted: a message posted
		// first is answered at once just the same).
		time.Sleep(200 * time.Millisecond)
		var id struct{ ID int64 }
		post(t, c, base+"/new-message", url.Values{"msg": {"via nginx"}}, &id)
		select {
		case r := <-waiting:
			if len(r.Messages) != 1 || r.Messages[0].Body != "via nginx" {
				t.Fatalf("poll %+v", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("long poll through nginx got no answer")
		}
	})

	t.Run("Chromium", func(t *testing.T) {
		chrome := chromiumPath()
		requireTool(t, chrome != "", "chromium (apt-get install chromium)")
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chrome),
			chromedp.Flag("headless", "new"),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("ignore-certificate-errors", true),
		)
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		defer cancelAlloc()
		ctx, cancelCtx := chromedp.NewContext(actx)
		defer cancelCtx()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(ctx, chromedp.Navigate("https://"+public+"/")); err != nil {
			t.Fatalf("navigate: %v", err)
		}
		var s pageState
		deadline := time.Now().Add(15 * time.Second)
		for {
			if err := chromedp.Run(ctx, chromedp.Evaluate(readState, &s)); err != nil {
				t.Fatalf("read page state: %v", err)
			}
			if s.ClockState == "open" && s.ChatState == "open" && len(s.Ticks) >= 2 &&
				slices.Contains(s.Messages, "connected over WebSocket") && s.LongPollState == "open" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("page through nginx: %+v", s)
			}
			time.Sleep(100 * time.Millisecond)
		}
		var proto string
		if err := chromedp.Run(ctx, chromedp.Evaluate(`location.protocol`, &proto)); err != nil || proto != "https:" {
			t.Errorf("page protocol %q %v", proto, err)
		}
	})

	// Every request above went through nginx, upgrades included: nginx
	// logs an upgraded request when its connection ends, so wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "access.log"))
		if err != nil {
			t.Fatal(err)
		}
		log := string(b)
		if strings.Contains(log, `"GET /ws HTTP/1.1" 101`) && strings.Contains(log, `"GET /clock HTTP/1.1" 101`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx access log lacks the upgrades:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

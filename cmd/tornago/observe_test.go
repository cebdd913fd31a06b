package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func getBody(t *testing.T, u string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBinaryMetricsAndPprof: the binary run with -metrics and -pprof serves
// both on their own listeners, and /metrics counts the demo's traffic.
func TestBinaryMetricsAndPprof(t *testing.T) {
	maddr, paddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	addr, _, _, stderr := startBinary(t, "-ping", "0", "-metrics", maddr, "-pprof", paddr, "-block-threshold", "100ms")
	c, _, err := gws.DefaultDialer.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.WriteMessage(gws.TextMessage, []byte("hi"))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	want := `tornago_websocket_messages_received_total{loop="0",route="/echo"} 1`
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := getBody(t, "http://"+maddr+"/metrics")
		if code == 200 && strings.Contains(body, want) && strings.Contains(body, `tornago_connections_open{kind="websocket",loop="0"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics (%d) lacks %s:\n%s\nstderr:\n%s", code, want, body, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Close()
	if code, body := getBody(t, "http://"+paddr+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/: %d %.200s", code, body)
	}
	if code, _ := getBody(t, "http://"+paddr+"/debug/pprof/heap"); code != 200 {
		t.Fatalf("/debug/pprof/heap: %d", code)
	}
}

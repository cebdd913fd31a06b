// Command gorilla is the bench's reference server: the goroutine-per-connection
// Go default (net/http + gorilla/websocket, the chat example's read and write
// pumps) with the same routes as cmd/tornago: /echo, /clock?Id=, /ws, /receive.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// client is one pushed-to connection: a buffered queue drained by its own
// write goroutine, as in gorilla's chat example.
type client struct {
	ws   *websocket.Conn
	send chan []byte
}

type hub struct {
	mu      sync.Mutex
	clients map[*client]struct{}
}

func (h *hub) add(c *client) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.send)
	}
	h.mu.Unlock()
}

// publish queues msg for everyone; a full queue drops (slow consumer).
func (h *hub) publish(msg []byte) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for c := range h.clients {
		select {
		case c.send <- msg:
			n++
		default:
		}
	}
	return n
}

func (h *hub) serve(w http.ResponseWriter, r *http.Request, welcome string) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &client{ws: ws, send: make(chan []byte, 256)}
	h.add(c)
	if welcome != "" {
		c.send <- []byte(welcome)
	}
	go func() { // write pump
		for msg := range c.send {
			ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if ws.WriteMessage(websocket.TextMessage, msg) != nil {
				break
			}
		}
		ws.Close()
	}()
	for { // read pump
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	h.remove(c)
	ws.Close()
}

func main() {
	port := flag.Int("port", 8890, "TCP port")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			t, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if ws.WriteMessage(t, msg) != nil {
				return
			}
		}
	})
	clock := &hub{clients: map[*client]struct{}{}}
	mux.HandleFunc("/clock", func(w http.ResponseWriter, r *http.Request) { clock.serve(w, r, "") })
	go func() {
		var seq int64
		for range time.Tick(time.Second) {
			seq++
			now := time.Now()
			msg, _ := json.Marshal(map[string]any{"time": now.Format(time.RFC3339Nano), "ts": now.UnixNano(), "seq": seq})
			clock.publish(msg)
		}
	}()
	chat := &hub{clients: map[*client]struct{}{}}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { chat.serve(w, r, "Welcome") })
	mux.HandleFunc("/receive", func(w http.ResponseWriter, r *http.Request) {
		n := chat.publish([]byte(r.URL.Query().Get("msg")))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"delivered": %d}`, n)
	})
	addr := fmt.Sprintf(":%d", *port)
	log.Info("gorilla reference listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
}

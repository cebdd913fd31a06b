// Command gorilla is the bench's reference server: the goroutine-per-connection
// Go default (net/http + gorilla/websocket, the chat example's read and write
// pumps) with the same routes as cmd/tornago: /echo, /echo-deflate, /clock?Id=,
// /ws, /receive, /index and the long-poll store's /new-message and
// /poll-message, with cmd/tornago's limits where gorilla has the knob (message
// sizes, 10 MiB bodies), so that tornago-bench attack compares like with like.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// deflateUpgrader negotiates permessage-deflate (gorilla: no context
// takeover either way) for /echo-deflate.
var deflateUpgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }, EnableCompression: true}

// Limits mirrored from cmd/tornago: its /echo routes take 64 MiB messages,
// /ws the default 10 MiB, HTTP bodies 10 MiB.
const (
	echoMaxMessage = 64 << 20
	chatMaxMessage = 10 << 20
	maxBody        = 10 << 20
)

// msgArg is the msg argument from the query or, whatever the method, an
// urlencoded body (Tornado's get_argument, as cmd/tornago reads it); net/http's
// ParseForm reads bodies of POST, PUT and PATCH only.
func msgArg(w http.ResponseWriter, r *http.Request) (string, int) {
	if v := r.URL.Query()["msg"]; len(v) > 0 {
		return v[len(v)-1], 0
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return "", 0
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return "", http.StatusRequestEntityTooLarge
	}
	q, err := url.ParseQuery(string(b))
	if err != nil {
		return "", http.StatusBadRequest
	}
	return q.Get("msg"), 0
}

// store is cmd/tornago's long-poll chat store (the 1,000 newest messages),
// short polls only.
type store struct {
	mu    sync.Mutex
	epoch int64
	first int64
	msgs  []chatMessage
}

type chatMessage struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
}

func (s *store) add(body string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.first + int64(len(s.msgs))
	s.msgs = append(s.msgs, chatMessage{ID: id, Body: body})
	if drop := len(s.msgs) - 1000; drop > 0 {
		s.msgs = append(s.msgs[:0:0], s.msgs[drop:]...)
		s.first += int64(drop)
	}
	return id
}

func (s *store) after(cursor int64) []chatMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := max(cursor+1-s.first, 0)
	if i >= int64(len(s.msgs)) {
		return []chatMessage{}
	}
	return append([]chatMessage(nil), s.msgs[i:]...)
}

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
	ws.SetReadLimit(chatMaxMessage)
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
	echo := func(u *websocket.Upgrader) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ws, err := u.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer ws.Close()
			ws.SetReadLimit(echoMaxMessage)
			for {
				t, msg, err := ws.ReadMessage()
				if err != nil {
					return
				}
				if ws.WriteMessage(t, msg) != nil {
					return
				}
			}
		}
	}
	mux.HandleFunc("/echo", echo(&upgrader))
	mux.HandleFunc("/echo-deflate", echo(&deflateUpgrader))
	mux.HandleFunc("/index", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "Hello world") })
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
		msg, status := msgArg(w, r)
		if status != 0 {
			http.Error(w, http.StatusText(status), status)
			return
		}
		n := chat.publish([]byte(msg))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"delivered": %d}`, n)
	})
	st := &store{epoch: time.Now().UnixNano(), first: 1}
	mux.HandleFunc("/new-message", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		msg, status := msgArg(w, r)
		if status == 0 && msg == "" {
			status = http.StatusBadRequest
		}
		if status != 0 {
			http.Error(w, http.StatusText(status), status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id": %d}`, st.add(msg))
	})
	mux.HandleFunc("/poll-message", func(w http.ResponseWriter, r *http.Request) {
		cursor := int64(0)
		if v := r.URL.Query().Get("cursor"); v != "" {
			var err error
			if cursor, err = strconv.ParseInt(v, 10, 64); err != nil {
				http.Error(w, "bad cursor", http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"epoch": st.epoch, "messages": st.after(cursor)})
	})
	addr := fmt.Sprintf(":%d", *port)
	log.Info("gorilla reference listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
}

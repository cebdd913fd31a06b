package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// handler is what a scenario hears about one client connection. Callbacks
// may run on any goroutine (one per connection for the goroutine driver, the
// loop goroutine for the loop driver), so scenarios keep shared state behind
// atomics or a mutex. data is valid only during onMessage.
type handler struct {
	onOpen    func(c conn)
	onMessage func(c conn, data []byte)
	onClose   func(c conn, err error) // err is nil for a close we asked for
}

// conn is one client connection; Send and Close are goroutine-safe, and
// Send is done with p when it returns (p may be reused).
type conn interface {
	Send(p []byte) error
	Close()
}

// driver opens client connections. Dial returns at once; the outcome
// arrives as onOpen or onClose(err).
type driver interface {
	Dial(rawURL, localAddr string, h handler)
	Name() string
	Stop()
}

// ClientKind selects the client every scenario uses: "loop" (default: the
// loop-driven Tornago client, no goroutine per connection) or "gorilla"
// (gorilla/websocket with a reading goroutine per connection). Set it
// before running scenarios; it is not synchronised.
var ClientKind = "loop"

func newDriver() driver {
	if ClientKind == "gorilla" {
		return newGoroutineDriver()
	}
	return newLoopDriver()
}

// goroutineDriver is gorilla/websocket with one reading goroutine per
// connection: the stand-in until the loop-driven client is used, and the
// reference "Go default" client.
type goroutineDriver struct{}

func newGoroutineDriver() *goroutineDriver { return &goroutineDriver{} }

func (*goroutineDriver) Name() string { return "gorilla-goroutines" }
func (*goroutineDriver) Stop()        {}

type gconn struct {
	mu sync.Mutex
	ws *websocket.Conn
}

func (g *gconn) Send(p []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ws.WriteMessage(websocket.BinaryMessage, p)
}

func (g *gconn) Close() {
	g.mu.Lock()
	g.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	g.mu.Unlock()
	g.ws.Close()
}

func (*goroutineDriver) Dial(rawURL, localAddr string, h handler) {
	go func() {
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024,
			NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nd := net.Dialer{}
				if localAddr != "" {
					nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localAddr)}
				}
				return nd.DialContext(ctx, network, addr)
			}}
		ws, resp, err := d.Dial(rawURL, nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			if h.onClose != nil {
				h.onClose(nil, fmt.Errorf("dial %s: %w", rawURL, err))
			}
			return
		}
		c := &gconn{ws: ws}
		if h.onOpen != nil {
			h.onOpen(c)
		}
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				if h.onClose != nil {
					if websocket.IsCloseError(err, 1000, 1001) || isClosedErr(err) {
						err = nil
					}
					h.onClose(c, err)
				}
				ws.Close()
				return
			}
			if h.onMessage != nil {
				h.onMessage(c, data)
			}
		}
	}()
}

// isClosedErr is a read ending because we closed the connection ourselves.
func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

// srcAddr spreads connection i over 127.0.0.1..127.0.0.n: one address pair
// has about 28k ephemeral ports.
func srcAddr(i, n, base int) string {
	if n <= 1 && base == 0 {
		return ""
	}
	return fmt.Sprintf("127.0.0.%d", 1+base+i%max(n, 1))
}

// harnessCores is how many cores the client can use (for the pace verdict).
// The loop client does its work on one loop goroutine.
func harnessCores() float64 {
	if ClientKind == "gorilla" {
		return float64(runtime.GOMAXPROCS(0))
	}
	return 1
}

package ws13_test

import (
	"errors"
	"fmt"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/ws13"
)

// A server decodes what a client sent and writes replies into its outbound
// buffer.
func Example() {
	// What the event loop has buffered: a masked text frame from a client
	// followed by the first 3 bytes of the next frame.
	inbound := ws13.AppendMaskedFrame(nil, true, ws.OpText, [4]byte{1, 2, 3, 4}, []byte("hello"))
	inbound = append(inbound, 0x89, 0x80, 0x00)

	var dec ws13.Decoder // one per connection; the zero value is a server
	var out []byte
	for {
		ev, n, err := dec.Next(inbound, ws13.Limits{MaxMessage: 1 << 20})
		if err != nil {
			// Protocol violation: send the close frame, then close.
			var ce *ws13.CloseError
			if errors.As(err, &ce) {
				out = ws13.AppendCloseFrame(out, ce.Code, ce.Reason)
			}
			break
		}
		if n == 0 {
			break // wait for more bytes
		}
		switch ev.Kind {
		case ws13.EventMessage:
			fmt.Printf("message %q\n", ev.Payload)
			out = ws13.AppendFrame(out, true, ev.Op, ev.Payload) // echo
			dec.Release()
		case ws13.EventPing:
			out = ws13.AppendFrame(out, true, ws.OpPong, ev.Payload)
		case ws13.EventClose:
			out = ws13.AppendCloseFrame(out, ev.Code, "")
		}
		inbound = inbound[n:] // the loop discards the consumed bytes
	}
	fmt.Printf("left %d bytes, reply % x\n", len(inbound), out)
	// Output:
	// message "hello"
	// left 3 bytes, reply 81 05 68 65 6c 6c 6f
}

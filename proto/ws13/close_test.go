package ws13

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// sendable is the rule of gobwas/ws's CheckCloseFrameData and the IANA
// registry, written out independently of ValidCloseCode.
func sendable(code int) bool {
	switch {
	case code < 1000, code == 1004, code == 1005, code == 1006, code == 1015:
		return false
	case code <= 1014:
		return true
	case code < 3000:
		return false
	case code <= 4999:
		return true
	}
	return false
}

func TestCheckCloseFrame(t *testing.T) {
	for code := 0; code <= 0xFFFF; code++ {
		err := CheckCloseFrame(StatusCode(code), "bye")
		if want := sendable(code); (err == nil) != want {
			t.Fatalf("CheckCloseFrame(%d) = %v, want ok %v", code, err, want)
		}
		if err != nil && !errors.Is(err, ErrCloseCode) {
			t.Fatalf("CheckCloseFrame(%d) = %v, want ErrCloseCode", code, err)
		}
	}
	for _, c := range []struct {
		name   string
		reason string
		ok     bool
	}{
		{"empty", "", true},
		{"123 bytes", strings.Repeat("x", 123), true},
		{"123 bytes of UTF-8", strings.Repeat("é", 61) + "x", true},
		{"124 bytes", strings.Repeat("x", 124), false},
		{"invalid UTF-8", "bye\xff", false},
		{"surrogate", "\xed\xa0\x80", false},
		{"truncated sequence", "ok\xe2\x82", false},
	} {
		err := CheckCloseFrame(1000, c.reason)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrCloseReason)) {
			t.Errorf("%s: CheckCloseFrame(1000, %q) = %v", c.name, c.reason, err)
		}
	}
	// A frame that passes fits a control frame, unmodified, and the decoder
	// reads back the same code and reason.
	reason := strings.Repeat("é", 61) + "x"
	frame := AppendMaskedCloseFrame(nil, testMask, 4999, reason)
	var d Decoder
	ev, n, err := d.Next(frame, Limits{})
	if err != nil || n != len(frame) || ev.Code != 4999 || string(ev.Reason) != reason {
		t.Fatalf("round trip: %v %d %d %q", err, n, ev.Code, ev.Reason)
	}
}

// TestDecoderCloseCodes checks that the receiving side refuses exactly the
// codes CheckCloseFrame refuses to send, with 1002.
func TestDecoderCloseCodes(t *testing.T) {
	for code := 0; code <= 0xFFFF; code++ {
		body := binary.BigEndian.AppendUint16(nil, uint16(code))
		frame := mf(true, ws.OpClose, string(body)+"r")
		var d Decoder
		ev, n, err := d.Next(frame, Limits{})
		if n != len(frame) {
			t.Fatalf("code %d: n=%d of %d", code, n, len(frame))
		}
		if sendable(code) {
			if err != nil || ev.Kind != EventClose || int(ev.Code) != code || string(ev.Reason) != "r" {
				t.Fatalf("code %d: %v %v", code, ev, err)
			}
		} else if closeCode(err) != CloseProtocolError {
			t.Fatalf("code %d: err %v, want 1002", code, err)
		}
	}
}

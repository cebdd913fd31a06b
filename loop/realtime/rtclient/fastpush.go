package rtclient

import (
	"bytes"
	"encoding/json"
)

// Publication pushes are most of what a subscriber reads, and the server
// writes them in one shape (clientproto.AppendPublicationPush):
//
//	{"push":{"topic":"T","pub":{"pos":"E-N","data":D}}}
//
// parsePubPush reads that shape without encoding/json's reflection and
// allocations; anything else (escapes in the topic, other fields, other
// order, spaces) is left to the general decoder, so the fast path changes
// no result (FuzzPubPush checks it against encoding/json).
var (
	pushPrefix = []byte(`{"push":{"topic":"`)
	pubPrefix  = []byte(`","pub":{`)
	posPrefix  = []byte(`"pos":"`)
	posSuffix  = []byte(`",`)
	dataPrefix = []byte(`"data":`)
	pushSuffix = []byte(`}}}`)
)

// parsePubPush returns the topic, the position's text and the data of a
// publication push in the server's shape; ok is false for anything else.
// topic and data alias frame.
func parsePubPush(frame []byte) (topic, pos, data []byte, ok bool) {
	b, found := bytes.CutPrefix(frame, pushPrefix)
	if !found {
		return nil, nil, nil, false
	}
	i := bytes.IndexByte(b, '"')
	if i < 0 || bytes.IndexByte(b[:i], '\\') >= 0 {
		return nil, nil, nil, false
	}
	for _, c := range b[:i] {
		if c < 0x20 || c >= 0x80 { // control or non-ASCII: the decoder's rules
			return nil, nil, nil, false
		}
	}
	topic = b[:i]
	if b, found = bytes.CutPrefix(b[i:], pubPrefix); !found {
		return nil, nil, nil, false
	}
	if rest, has := bytes.CutPrefix(b, posPrefix); has {
		j := 0
		for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || rest[j] == '-') {
			j++
		}
		pos = rest[:j]
		if b, found = bytes.CutPrefix(rest[j:], posSuffix); !found {
			return nil, nil, nil, false
		}
	}
	if b, found = bytes.CutPrefix(b, dataPrefix); !found {
		return nil, nil, nil, false
	}
	if data, found = bytes.CutSuffix(b, pushSuffix); !found || !json.Valid(data) {
		return nil, nil, nil, false
	}
	if len(data) == 0 || isSpace(data[0]) || isSpace(data[len(data)-1]) {
		return nil, nil, nil, false // the decoder would trim: keep one result
	}
	return topic, pos, data, true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

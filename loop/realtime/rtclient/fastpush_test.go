package rtclient

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/proto/clientproto"
)

// FuzzPubPush: whenever the fast path takes a frame, encoding/json reads
// the same publication from it (and nothing else: no id, no disconnect).
func FuzzPubPush(f *testing.F) {
	for _, s := range []string{
		string(clientproto.AppendPublicationPush(nil, "chat:lobby", pubsub.Position{Epoch: 17, Offset: 42}, []byte(`{"text":"hi"}`))),
		string(clientproto.AppendPublicationPush(nil, "news", pubsub.Position{}, []byte(`"x"`))),
		`{"push":{"topic":"a","pub":{"data":1},"x":{}}}`,
		`{"push":{"topic":"a","pub":{"pos":"1-1","pos":"1-2","data":1}}}`,
		`{"push":{"topic":"a\"b","pub":{"data":1}}}`,
		`{"push":{"topic":"a","pub":{"data": 1 }}}`,
		`{"push":{"topic":"a","pub":{"data":"}}}"}}}`,
		`{"push":{"topic":"a","pub":{"data":[1,{"b":null}]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		topic, pos, data, ok := parsePubPush(b)
		if !ok {
			return
		}
		var fr frame
		if err := json.Unmarshal(b, &fr); err != nil {
			t.Fatalf("fast path took %q, encoding/json refuses it: %v", b, err)
		}
		if fr.ID != 0 || fr.Disconnect != nil || fr.Push == nil || fr.Push.Pub == nil || fr.Push.Sub != nil || fr.Push.Unsub != nil {
			t.Fatalf("fast path took %q as a publication; encoding/json reads %+v", b, fr)
		}
		if fr.Push.Topic != string(topic) || fr.Push.Pub.Pos != string(pos) || !bytes.Equal(fr.Push.Pub.Data, data) {
			t.Fatalf("%q: fast path %q %q %q, encoding/json %q %q %q", b, topic, pos, data,
				fr.Push.Topic, fr.Push.Pub.Pos, fr.Push.Pub.Data)
		}
	})
}

// TestPubPushShapes: the server's own frames take the fast path; others
// do not.
func TestPubPushShapes(t *testing.T) {
	b := clientproto.AppendPublicationPush(nil, "chat:lobby", pubsub.Position{Epoch: 17, Offset: 42}, []byte(`{"text":"hi"}`))
	topic, pos, data, ok := parsePubPush(b)
	if !ok || string(topic) != "chat:lobby" || string(pos) != "17-42" || string(data) != `{"text":"hi"}` {
		t.Errorf("server frame: %q %q %q %v", topic, pos, data, ok)
	}
	for _, s := range []string{
		`{"push":{"topic":"a","pub":{"data":1},"x":{}}}`,
		`{"push":{"topic":"a\"b","pub":{"data":1}}}`,
		`{"push":{"topic":"a","pub":{"data": 1}}}`,
		`{"push":{"topic":"a","sub":{"head":"1-1"}}}`,
		`{"id":1,"result":{}}`,
	} {
		if _, _, _, ok := parsePubPush([]byte(s)); ok {
			t.Errorf("fast path took %s", s)
		}
	}
}

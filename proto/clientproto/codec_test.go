package clientproto

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tornago/tornago/loop/pubsub"
)

func TestDecodeCommand(t *testing.T) {
	good := []string{
		`{"id":1,"connect":{"token":"t","name":"js","version":"1"}}`,
		`{"id":2,"subscribe":{"topic":"chat:lobby","since":"17-42"}}`,
		`{"id":3,"subscribe":{"topic":"chat:lobby"}}`,
		`{"id":4,"unsubscribe":{"topic":"x"}}`,
		`{"id":5,"publish":{"topic":"chat:a","data":{"text":"hi"}}}`,
		`{"id":6,"rpc":{"method":"m","data":[1,2]}}`,
		`{"id":7,"refresh":{"token":"t"}}`,
		`{"id":8,"ping":{},"unknown":5}`,
		`{"id":10,"presence":{"topic":"room:a"}}`,
		`{"id":11,"presence_stats":{"topic":"room:a"}}`,
		`{"id":12,"sub_refresh":{"topic":"private:a","token":"t"}}`,
	}
	for _, s := range good {
		if _, err := DecodeCommand([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := map[string]uint32{
		`not json`:                             0,
		`{"id":0,"ping":{}}`:                   0,
		`{"ping":{}}`:                          0,
		`{"id":-1,"ping":{}}`:                  0,
		`{"id":9}`:                             9,
		`{"id":9,"ping":{},"connect":{}}`:      9,
		`{"id":9,"subscribe":{"topic":""}}`:    9,
		`{"id":9,"subscribe":{"topic":"a b"}}`: 9,
		`{"id":9,"subscribe":{"topic":"a","since":"01-2"}}`:                 9,
		`{"id":9,"subscribe":{"topic":"` + strings.Repeat("a", 256) + `"}}`: 9,
		`{"id":9,"publish":{"topic":"a"}}`:                                  9,
		`{"id":9,"presence":{"topic":""}}`:                                  9,
		`{"id":9,"presence_stats":{"topic":"a b"}}`:                         9,
		`{"id":9,"presence":{"topic":"a"},"ping":{}}`:                       9,
		`{"id":9,"rpc":{"method":""}}`:                                      9,
		`{"id":9,"refresh":{}}`:                                             9,
		`{"id":9,"sub_refresh":{"topic":"a"}}`:                              9,
		`{"id":9,"sub_refresh":{"token":"t"}}`:                              9,
		`{"id":9,"sub_refresh":{"topic":"a b","token":"t"}}`:                9,
		`{"id":9,"sub_refresh":{"topic":"a","token":"t"},"ping":{}}`:        9,
		`{"id":9,"subscribe":{"topic":"a\u00e9"}}`:                          9,
		// A field of the wrong type: the id is still answerable (107),
		// not a reason to disconnect (3501).
		`{"id":9,"subscribe":{"topic":["a"]}}`: 9,
		`{"rpc":{"method":5},"id":9}`:          9,
		`{"id":"9","ping":{}}`:                 0,
		`{"id":9.5,"ping":{}}`:                 0,
	}
	for s, id := range bad {
		c, err := DecodeCommand([]byte(s))
		if !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: err %v, want ErrBadCommand", s, err)
		}
		if c.ID != id {
			t.Errorf("%s: id %d, want %d", s, c.ID, id)
		}
	}
}

func TestEncoders(t *testing.T) {
	var m map[string]any
	b := AppendPublicationPush(nil, `chat:"x"\<`, pubsub.Position{Epoch: 17, Offset: 46}, []byte(`{"text":"hi"}`))
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	var p Push
	if err := json.Unmarshal(b, &p); err != nil || p.Push.Topic != `chat:"x"\<` || p.Push.Pub.Pos != "17-46" || string(p.Push.Pub.Data) != `{"text":"hi"}` {
		t.Fatalf("%s -> %+v %v", b, p, err)
	}
	b = AppendPublicationPush(nil, "t", pubsub.Position{}, []byte(`1`))
	if string(b) != `{"push":{"topic":"t","pub":{"data":1}}}` {
		t.Fatalf("%s", b)
	}
	b = AppendError(nil, 7, NewError(ErrTooManyRequests, "slow \"down\"\n\xff"))
	var r Reply
	if err := json.Unmarshal(b, &r); err != nil || r.ID != 7 || r.Error.Code != 111 || !r.Error.Temporary {
		t.Fatalf("%s -> %+v %v", b, r, err)
	}
	if string(AppendReply(nil, 3, nil)) != `{"id":3,"result":{}}` {
		t.Fatal("empty reply")
	}
	b = AppendDisconnect(nil, DisconnectTokenExpired, "token expired")
	var d Push
	if err := json.Unmarshal(b, &d); err != nil || d.Disconnect.Code != 3005 || !d.Disconnect.Reconnect {
		t.Fatalf("%s -> %+v %v", b, d, err)
	}
	if u, ok := PersonalUser("user:#42"); !ok || u != "42" {
		t.Fatal(u, ok)
	}
	if _, ok := PersonalUser("user:42"); ok {
		t.Fatal("not personal")
	}
	if Namespace("chat:a:b") != "chat" || Namespace("chat") != "" {
		t.Fatal("namespace")
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"connect":{"token":"t"}}`, `{"id":2,"subscribe":{"topic":"chat:lobby","since":"17-42"}}`,
		`{"id":5,"publish":{"topic":"chat:a","data":{"text":"hi"}}}`, `{"id":6,"rpc":{"method":"m"}}`, `{"id":8,"ping":{}}`,
		`{"id":12,"sub_refresh":{"topic":"private:a","token":"t"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		if c.ID == 0 {
			t.Fatal("id 0 accepted")
		}
		if c.Subscribe != nil {
			if ValidTopic(c.Subscribe.Topic) != nil {
				t.Fatal("bad topic accepted")
			}
			// A valid topic encodes to valid JSON in a push.
			out := AppendPublicationPush(nil, c.Subscribe.Topic, pubsub.Position{Epoch: 1, Offset: 2}, []byte("null"))
			if !json.Valid(out) {
				t.Fatalf("push not JSON: %s", out)
			}
		}
		if c.SubRefresh != nil && (ValidTopic(c.SubRefresh.Topic) != nil || c.SubRefresh.Token == "") {
			t.Fatal("bad sub_refresh accepted")
		}
		if c.Publish != nil {
			out := AppendPublicationPush(nil, c.Publish.Topic, pubsub.Position{}, c.Publish.Data)
			var p Push
			if err := json.Unmarshal(out, &p); err != nil || p.Push.Topic != c.Publish.Topic {
				t.Fatalf("push %s: %v", out, err)
			}
		}
	})
}

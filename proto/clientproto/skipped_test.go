package clientproto

import (
	"encoding/json"
	"testing"

	"github.com/tornago/tornago/loop/pubsub"
)

// The skipped count decodes into Publication.Skipped; 0 gives the plain
// push's bytes.
func TestPublicationPushSkipped(t *testing.T) {
	pos := pubsub.Position{Epoch: 5, Offset: 7}
	b := AppendPublicationPushSkipped(nil, "clock", pos, 3, []byte(`{"t":1}`))
	var p Push
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if p.Push == nil || p.Push.Topic != "clock" || p.Push.Pub == nil || p.Push.Pub.Skipped != 3 || string(p.Push.Pub.Data) != `{"t":1}` {
		t.Fatalf("decoded %s as %+v", b, p.Push)
	}
	if got, want := string(AppendPublicationPushSkipped(nil, "clock", pos, 0, []byte(`1`))), string(AppendPublicationPush(nil, "clock", pos, []byte(`1`))); got != want {
		t.Fatalf("skipped 0: %s, want %s", got, want)
	}
}

package realtime

import "testing"

// TestHubTopicEscapes: a protocol topic is one NATS subject token behind
// the broker's prefix, never a wildcard, and distinct topics stay
// distinct.
func TestHubTopicEscapes(t *testing.T) {
	cases := map[string]string{
		"chat:lobby": "rt.chat:lobby",
		"user:>":     "rt.user:%3E",
		"user:*":     "rt.user:%2A",
		"a.b":        "rt.a%2Eb",
		"a%2Eb":      "rt.a%252Eb",
	}
	for in, want := range cases {
		if got := hubTopic(in); got != want {
			t.Errorf("hubTopic(%q) = %q, want %q", in, got, want)
		}
	}
}

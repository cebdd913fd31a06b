package bench_test

import (
	"fmt"
	"time"

	"github.com/tornago/tornago/bench"
)

// Transports against a running tornago (cmd/tornago -port 8888, PID 1234):
// each transport's bytes per message, p99 and losses across the mid-run
// reconnect. (Not run: it needs the server.)
func ExampleTransports() {
	rs, err := bench.Transports(bench.TransportsOptions{Base: "http://127.0.0.1:8888", Conns: 200, Duration: 10 * time.Second, PID: 1234})
	for _, r := range rs {
		fmt.Println(r.Server, r.Extra["wire_bytes_per_delivered"], r.Latency.P99, r.Extra["lost"], r.Extra["repeated"])
	}
	if err != nil {
		fmt.Println(err)
	}
}

// History on a fresh tornago started with -longpoll-messages 20000
// -longpoll-bytes 40000000: server memory per kept 1000-byte message.
func ExampleHistory() {
	r, err := bench.History(bench.HistoryOptions{Base: "http://127.0.0.1:8888", Messages: 10000, Size: 1000, PID: 1234})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Extra["rss_per_message_bytes"])
}

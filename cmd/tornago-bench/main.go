// Command tornago-bench points load at any WebSocket server and reports the
// server's memory and CPU next to the client's figures.
//
//	tornago-bench idle -url ws://127.0.0.1:8888/echo -n 10000 -pid $(pgrep -n tornago)
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tornago/tornago/bench"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "idle" {
		fmt.Fprintln(os.Stderr, "usage: tornago-bench idle -url URL -n N -pid PID [-src 4] [-hold 10s]\n(other scenarios: not yet)")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	u := fs.String("url", "ws://127.0.0.1:8888/echo", "WebSocket URL")
	n := fs.Int("n", 1000, "connections")
	pid := fs.Int("pid", 0, "server PID (for RSS and CPU from /proc)")
	src := fs.Int("src", 4, "source addresses 127.0.0.1..127.0.0.N")
	hold := fs.Duration("hold", 10*time.Second, "how long to hold for the idle CPU reading")
	fs.Parse(os.Args[2:])
	res, conns, err := bench.Idle(*u, *n, *pid, *src, *hold, func(done, errs int) {
		fmt.Fprintf(os.Stderr, "\ropened %d/%d errors %d", done, *n, errs)
	})
	fmt.Fprintln(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("conns %d  errors %d  RSS/conn %.0f B  server idle CPU %.2f%%  threads %d  connect p50 %v p99 %v\n",
		res.Conns, res.Errors, res.BytesPerConn, res.ServerCPUIdle, res.ThreadsAfter, res.ConnectP50, res.ConnectP99)
	js, _ := json.Marshal(res)
	fmt.Println(string(js))
	for _, c := range conns {
		c.Close()
	}
}

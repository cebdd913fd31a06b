// Command wscat talks to any WebSocket server from a terminal: each line you
// type is sent as a text message, each message received is printed.
//
//	go run ./cmd/wscat ws://localhost:8888/ws
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tornago/tornago/loop"
)

func main() {
	origin := flag.String("origin", "", "Origin header to send")
	proto := flag.String("subprotocol", "", "subprotocol to offer")
	flag.Usage = func() { fmt.Fprintln(os.Stderr, "usage: wscat [-origin O] [-subprotocol P] ws://host:port/path") }
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var opts loop.DialOptions
	if *origin != "" {
		opts.Header = append(opts.Header, [2]string{"Origin", *origin})
	}
	if *proto != "" {
		opts.Subprotocols = []string{*proto}
	}
	c, err := loop.Dial(flag.Arg(0), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wscat:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "connected (type lines; Ctrl-D closes)")
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if err := c.Send(sc.Text()); err != nil {
				fmt.Fprintln(os.Stderr, "wscat:", err)
				os.Exit(1)
			}
		}
		c.Close(loop.CloseNormal, "")
	}()
	for {
		typ, msg, err := c.Recv()
		if err == io.EOF {
			fmt.Fprintf(os.Stderr, "closed: %d %s\n", c.CloseCode, c.CloseReason)
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "wscat:", err)
			os.Exit(1)
		}
		if typ == loop.Binary {
			fmt.Printf("< (binary %d bytes)\n", len(msg))
			continue
		}
		fmt.Printf("< %s\n", msg)
	}
}

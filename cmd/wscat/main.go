// Command wscat talks to any WebSocket server from a terminal: each line you
// type is sent as a text message, each message received is printed.
//
//	go run ./cmd/wscat ws://localhost:8888/ws
//	printf 'hi\n' | go run ./cmd/wscat ws://localhost:8888/echo
//
// Lines may be as long as -max-message (default 64 MiB, which also bounds a
// received message); a trailing "\r" is dropped. At the end of input wscat
// closes with 1000 and waits for the server's close. Messages go to stdout
// ("< text", "< (binary N bytes)"); status and errors go to stderr.
//
// Exit status: 0 after a clean close (the server's code 1000, 1001 or none);
// 1 on any error: connect or handshake failure, a server close with another
// code, a line too long or not valid UTF-8 (a text message must be), a read
// error on stdin or the socket; 2 on bad usage.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"unicode/utf8"

	"github.com/tornago/tornago/loop/wsclient"
	"github.com/tornago/tornago/proto/ws13"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// run is wscat with its arguments and streams; it returns the exit status.
// All output is written from the calling goroutine.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wscat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	origin := fs.String("origin", "", "Origin header to send")
	proto := fs.String("subprotocol", "", "subprotocol to offer")
	maxMsg := fs.Int("max-message", 64<<20, "largest line sent and message received, in bytes")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wscat [-origin O] [-subprotocol P] [-max-message N] ws://host:port/path")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 || *maxMsg <= 0 {
		fs.Usage()
		return 2
	}
	opts := wsclient.DialOptions{MaxMessageSize: int64(*maxMsg)}
	if *origin != "" {
		opts.Header = http.Header{"Origin": {*origin}}
	}
	if *proto != "" {
		opts.Subprotocols = []string{*proto}
	}
	c, err := wsclient.Dial(fs.Arg(0), opts)
	if err != nil {
		fmt.Fprintln(stderr, "wscat:", err)
		return 1
	}
	fmt.Fprintln(stderr, "connected (type lines; Ctrl-D closes)")

	// The sender owns stdin and Send; the calling goroutine owns Recv and
	// all output. inputDone is closed once the sender stopped reading stdin
	// (it is then closing the connection and will report on sent); until
	// then it may be blocked on a terminal, so it is not waited for.
	inputDone := make(chan struct{})
	sent := make(chan error, 1)
	go func() { sent <- send(c, stdin, *maxMsg, inputDone) }()

	status := 0
	for {
		typ, msg, err := c.Recv()
		if err == io.EOF {
			fmt.Fprintf(stderr, "closed: %d %s\n", c.CloseCode(), c.CloseReason())
			switch c.CloseCode() {
			case ws13.CloseNormal, ws13.CloseGoingAway, ws13.CloseNoStatus:
			default:
				status = 1
			}
			break
		}
		if err != nil {
			fmt.Fprintln(stderr, "wscat:", err)
			status = 1
			break
		}
		if typ == wsclient.Binary {
			_, err = fmt.Fprintf(stdout, "< (binary %d bytes)\n", len(msg))
		} else {
			_, err = fmt.Fprintf(stdout, "< %s\n", msg)
		}
		if err != nil {
			fmt.Fprintln(stderr, "wscat: write stdout:", err)
			c.Close(ws13.CloseGoingAway, "")
			return 1
		}
	}
	select {
	case <-inputDone:
		if err := <-sent; err != nil {
			fmt.Fprintln(stderr, "wscat:", err)
			status = 1
		}
	default:
		// The server ended it first; a second Close (the sender's) only
		// returns an error, so this one just releases the socket.
		c.Close(ws13.CloseNormal, "")
	}
	return status
}

// send sends each line of in as a text message, then closes the
// connection (with 1000, or 1009 or 1007 for a line it refuses) and
// returns the first error: reading in, a refused line, Send or Close.
// A Send refused because the server closed first is no error here: the
// reader reports the server's close.
func send(c *wsclient.Conn, in io.Reader, max int, inputDone chan<- struct{}) error {
	sc := bufio.NewScanner(in)
	// Room for the line and its "\r\n"; the Scanner grows its buffer up
	// to that only for lines that need it.
	sc.Buffer(make([]byte, 0, 64<<10), max+2)
	var err error
	code := ws13.CloseNormal
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) > max {
			code, err = ws13.CloseTooBig, fmt.Errorf("stdin line %d: %d bytes, over -max-message %d", n, len(line), max)
			break
		}
		if !utf8.Valid(line) {
			code, err = ws13.CloseInvalidPayload, fmt.Errorf("stdin line %d: not valid UTF-8 (a text message must be)", n)
			break
		}
		if serr := c.Send(string(line)); serr != nil {
			close(inputDone)
			if errors.Is(serr, wsclient.ErrCloseSent) {
				return nil
			}
			c.Close(ws13.CloseNormal, "")
			return serr
		}
	}
	if err == nil {
		if serr := sc.Err(); errors.Is(serr, bufio.ErrTooLong) {
			code, err = ws13.CloseTooBig, fmt.Errorf("stdin: a line over -max-message %d bytes", max)
		} else if serr != nil {
			code, err = ws13.CloseGoingAway, fmt.Errorf("read stdin: %w", serr)
		}
	}
	close(inputDone)
	cerr := c.Close(code, "")
	if err != nil {
		return err
	}
	return cerr
}

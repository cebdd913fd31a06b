// Command tornago-bench points load at any RFC 6455 server and reports the
// server's memory and CPU (from /proc/PID) next to latency, throughput and
// the harness's own CPU. Scenarios: idle, echo, push, broadcast, handshake,
// transports; compare runs one of them against Tornago and the reference
// servers (gorilla/websocket, Tornado, a bare gnet+gobwas/ws echo server)
// started by the harness itself. attack runs issue 10's hostile inputs
// against one server (-url, -pid) or against servers it starts (-servers),
// with an /echo canary beside each attack.
//
//	tornago-bench echo -url ws://127.0.0.1:8888/echo -c 1000 -size 64 -d 10s -pid PID
//	tornago-bench compare -scenario idle -n 10000 -steps 2000,5000
//	tornago-bench scale -loops 1,2,4,8,16 -scenarios push,broadcast,echo -n 19000
//	tornago-bench attack -servers tornago,gorilla
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tornago/tornago/bench"
)

const usage = `usage: tornago-bench SCENARIO [flags]
scenarios:
  idle       -url -n N -pid PID [-steps 2000,5000] [-hold 10s]   RSS/conn, idle CPU, connect latency
             [-transport ws|sse|long-poll]: with -transport, -url is the server (http://host:port) and each
             client holds the chat: a WebSocket on /ws?since=, a GET /sse stream, or a parked POST
             /update-message (sse and long-poll: at most -per-proc in this process)
  echo       -url -c C -size S -d D -pid PID                     messages/s, latency, server CPU/message
  push       -url ws://host/clock -n N -d D -pid PID             delivery latency, per-tick p50/p99 and time to the
             last delivery, ticks late (still delivered when the next started), missed, duplicated
  broadcast  -url ws://host/ws -n N -d D -pid PID                delivered messages/s (triggers /receive?msg=), each
             broadcast's time to its last delivery, missed, duplicated (per client, over every process)
  handshake  -url -c C -d D -pid PID                             upgrades/s, server CPU per upgrade
  transports -url http://host -n N -d D -pid PID [-transports websocket,sse,long-poll,short-poll] [-every 100ms]
             [-poll-every 1s] [-reconnect=true]: one chat stream (GET /receive?msg= with a sequence number and
             the send time, one publisher) to N clients per transport: /ws?since=, GET /sse (Last-Event-ID on
             reconnect), POST /update-message and GET /poll-message with since=E-N; per transport the client
             bytes on the wire per delivered message, p50/p99 delivery latency, server CPU per message,
             connections and HTTP requests per minute, and the messages lost and repeated across the
             reconnect of every client at mid-run (each resumes from its last position), with ratios to
             WebSocket's figures; -plot draws them as bar charts
  history    -url http://host -n K -size B -pid PID                server memory per kept chat message: K messages of B
             bytes (default 1000) to /receive on a fresh server started with -longpoll-messages >= K and
             -longpoll-bytes >= K*(B+128); (RSS after - RSS before) / K, checked against the kept history
  rt-idle    -url ws://host:port -n N -pid PID [-subs 1,10] [-token T]   the client protocol (/connection/websocket,
             loop/realtime/rtclient clients) against the raw /ws route in one run: N /ws clients, then N protocol
             clients per -subs entry (each subscribed to that many shared topics clock:idle-K, a namespace without presence), all held at once;
             server RSS per connection of each group and its ratio to /ws's ((1+groups)*N <= 15000)
  rt-push    -url ws://host:port -n N -pid PID [-messages 20] [-msg-rate 4] [-topic chat:bench]   CPU per delivery:
             N /ws clients get -messages chat messages (GET /receive), then N protocol subscribers of -topic get
             as many publications (a protocol client publishes); server CPU per delivery of each, the ratio,
             delivery latency, deliveries missing
  rt-storm   -url ws://host:port -n N -pid PID [-messages 20] [-msg-rate 4] [-topic chat:bench]   N protocol clients
             subscribed to -topic; every child process of -pid (tornago -procs K) is killed with SIGKILL; the time
             until every client reconnected (backoff with full jitter) and resubscribed from its position, the
             server's peak CPU (100 ms samples), publications made during the storm missed or repeated, gone
             resubscriptions, and a canary's ping round trips (protocol ping every 50 ms)
  rt-connect -url ws://host:port -n N -pid PID [-rate R]   N protocol clients connect at -rate (with
             TORNAGO_TOKEN_HMAC_SECRET set, each with its own HS256 JWT, as tornago's checks; with
             TORNAGO_BENCH_TOKEN_PRIVATE_KEY=FILE (PEM, P-256: ES256), one signed with that key, as tornago
             -token-public-key checks; every rt-* does) beside a
             canary pinging every 50 ms: connects/s, server CPU per connect, connect latency, the canary's
             round trips (budget 250 ms)
  storm      -url ws://host:port -n N -pid PID [-rate R] [-topic chat:bench]   join/leave storm: N protocol clients
             open at -rate and subscribe to -topic-storm (a join_leave namespace: tornago's chat) beside a canary; the
             frames the clients received (connect and subscribe replies, coalesced join/leave pushes) against 3N and
             N², the server's CPU, the canary's round trips (budget 250 ms)
  presence   -url ws://host:port -n N -pid PID [-messages 20] [-topic chat:bench]   N protocol clients subscribe to
             -topic-presence (a presence namespace); they ask presence_stats 50*M times and presence M times, one
             at a time: their round trips, the counts answered, server RSS per member (connection included)
  compare    -scenario S [-servers tornago,gorilla,tornado,gnetws] [-reps 1] [-pin] [scenario flags without -url/-pid]
             a server may be a tornago variant: tornago-loops2 (tornago -loops 2), tornago-procs4, tornago-procs2-loops4, tornago-mount (through net/http, loop.Mount);
             NAME@TREE builds NAME from the module at TREE instead of -root, labelled NAME@<TREE's last element>: one run
             compares two versions, e.g. -servers tornago,tornago@/work/baseline (also for scale and attack -servers)
  scale      [-loops 1,2,4,8,16] [-sweep loops|procs] [-scenarios push:19000,broadcast:10000,echo] [-servers S1,S2] [-reps 1]
             [-n N] [-c C] [-d D] [-server-args "-ping 0"]: starts tornago -loops L (or -procs L) for each L, runs
             the scenarios against each in turn, and prints per scenario: conns, ops/s (deliveries/s for push and
             broadcast), server CPU per op in us, p50/p99 ms, a tick's (push) or a broadcast's time to its last
             delivery, server and harness CPU%, server processes, missed, duplicated, and ratios to the first
             server; -servers replaces the sweep by a list of servers. -cprocs defaults to one harness process
             per 2 cores here so the client keeps up with many loops on a bigger machine
  attack     [-url http://host:port -pid PID | -servers tornago,gorilla] [-attacks all|a,b,...] [attack flags]
             hostile inputs with an /echo canary round trip every 100 ms: per attack the canary's
             worst round trip, the server's peak RSS (every 50 ms), closes seen by code, survival,
             and the attack's expectation; "tornago-bench attack -h" lists the attacks and flags
common: -plot FILE.png  -client loop|gorilla  -rate R (connections/s)  -src K (source addresses)
        -server NAME (the label of a single run; default the URL's host:port)  -max-fail 0.05
spread: one harness process holds at most -per-proc 19000 connections (handshake: workers); beyond
        that, or with -cprocs K >= 2, echo, push, broadcast and handshake run their connections in K
        child processes (each with its own source addresses 127.0.0.x, 1/K of -rate) and merge their
        counts and latency histograms; idle keeps -per-proc in this process and the rest in children.
        -pid may be a parent (tornago -procs): RSS, threads and CPU are summed over its process tree,
        which must own the URL's listening socket; server_procs says how many processes it held.
each run prints a table (stdout) and one JSON line per run (stdout, prefixed "JSON "). A run
that could not measure what it reports (no connection opened, more than -max-fail of the
connections, messages or requests failed, the server died, -pid is not the process listening
on the URL's port, the server's RSS shrank below its baseline) says why in one line on stderr
and exits 1. Figures not measured (no -pid) print n/a and are absent from the JSON line.
"tornago-bench SCENARIO -h" lists every flag with its default.
`

// scenarios are the subcommands with their usage line's name.
var scenarios = []string{"idle", "echo", "push", "broadcast", "handshake", "transports", "history", "compare", "scale", "attack",
	"rt-idle", "rt-push", "rt-storm", "rt-connect", "presence", "storm"}

const attackUsage = `attacks (issue 10, j-m of issue 19, n-r of issue 21; -attacks takes letters or names, default all):
  a slow-readers   -slow-n 1000 /ws clients that never read; -slow-posters 4 loop
                   GET /receive with a -slow-size 60000 byte form body for -d 10s
  b big-broadcast  one -bcast-size 9000000 byte /receive to -bcast-n 200 non-readers, watched -bcast-hold 3s
  c deflate-bomb   -bomb-conns 4 loop 65 KB permessage-deflate frames inflating to -bomb-inflated 64MiB
                   on /echo-deflate for -d 10s, reading the echoes whole (inflating compressed ones);
                   -bomb-window N: at most N bombs per connection ahead of its echoes (default 0: no limit)
  d long-poll      -lp-posts 60 POST /new-message of -lp-size 9MiB, then GET /poll-message?cursor=0
  e partial-frames -partial-conns 20 /echo clients send -partial-sent 60MiB of a -partial-declared 64MiB
                   frame, then a byte every -partial-trickle 2s; closed within -partial-deadline 30s?
  f pipelining     -pipe-bytes 30000 of pipelined GET /poll-message for one -pipe-resp 65536 byte
                   message, never read, watched -pipe-hold 3s; RSS growth <= 16 MiB?
  g headers        one GET /index with a -header-size 200000 byte header: a 431, not a reset?
  h oversized      one -oversize 11MiB message to /ws: a 1009 close frame, not a reset?
  j sse-pipelining -sse-n 1000 connections open GET /sse and pipeline -sse-pipe 256KiB of requests
                   behind it, watched -sse-hold 3s; RSS growth <= 16 MiB? (runs before i)
  k nats-open      a client without credentials connects to the server's own NATS (tornago -procs
                   embeds one; found among the sockets of -pid's processes): refused? (n/a without)
  l far-ahead-positions  -far-n 60 clients (a third each on /ws?since=, /sse with Last-Event-ID,
                   POST /update-message) resume from positions the history does not hold (far ahead,
                   newer epoch, malformed) while /receive publishes every 50ms for -far-for 3s:
                   each gets a live message or a clear refusal (none silent)?
  m history-replay -replay-msgs 130 POST /new-message of -replay-size 60000, then -replay-n 100
                   /ws?since= clients resume from before the first at once and read at full speed:
                   each gets every message once, in order, on one connection? (issue 19)
  n rt-unauthenticated  rounds of -rt-unauth-n 300 /connection/websocket clients for -rt-unauth-for 3s
                   send a command before connect (101, close 3500), connect with a garbage or forged
                   token (3500 when tokens are checked); 30 POST /connection/command to forged sessions (404)
  o rt-subscription-flood  -rt-sub-n 20 clients subscribe to -rt-sub-topics 3000 topics each, paced
                   past the 128 subscriptions (106), then the rest at once (111); RSS growth <= 64 MiB?
  p rt-malformed   -rt-malformed-n 10 clients per case: JSON garbage, binary frames, 30,000-deep
                   nesting (3501), a field of the wrong type (107, lives), a -rt-oversize 10MiB frame
                   (3505); an SSE session's command POSTs: garbage (400), 10 MiB (413)
  q rt-rpc-flood   -rt-rpc-n 20 clients start 24 "delay" RPCs of -rt-rpc-hold 2s (past 16 pending: 106),
                   then send -rt-rpc-rate 400 "time" RPCs a second for -rt-rpc-for 7s (111, then 3004)
  r rt-slow-sse    -rt-sse-n 200 SSE sessions (and a tenth as many WebSockets and long polls) on chat:x
                   never read while -rt-sse-publishers 8 clients publish -rt-sse-size 3000 bytes 45
                   times a second each for -rt-sse-for 10s: cut (long polls: 3001), peak RSS <= 256 MiB?
  s rt-presence-churn  -rt-churn-n 200 clients subscribe to and unsubscribe from chat:churn at
                   -rt-churn-rate 40 commands a second each for -rt-churn-for 10s (half with
                   -rt-churn-name 2000-byte names): an observer's join/leave pushes <= 100 names,
                   Info <= 256 B; RSS back within 64 MiB? (issue 22)
  t rt-presence-query-flood  -rt-pres-members 1200 idle members of chat:crowd, then -rt-pres-n 200
                   clients send presence at -rt-pres-rate 45 a second each for -rt-pres-for 10s
                   while -rt-pres-churn 20 clients churn the topic (answers of 1,000 members, or 111)
                   n-t sign HS256 tokens with TORNAGO_TOKEN_HMAC_SECRET (with -servers: a random one
                   given to tornago when unset; with -url and none: anonymous, tokens unchecked)
  i fd-storm       -storm-n 3000 TCP connections, held -storm-hold 2s, closed; the server (started
                   with -storm-nofile 1024 descriptors when the harness starts it) still serves?
the canary is ws://host/echo; its budget is -canary-budget 250ms. Non-readers read for -drain 3s at
the end to see how they were closed. With -servers, -fresh (default true) starts a new server
process per attack; -port, -pin and -root as for compare. Figures not measured print n/a and are
absent from the JSON lines. Sizes take K, KiB, M, MiB (KiB = 1024 bytes, K = 1000).
`

type flags struct {
	fs                *flag.FlagSet
	url, plot, client string
	n, c, size, pid   int
	rate, src, window int
	d, hold           time.Duration
	steps             string
	scenario, servers string
	reps, port        int
	pin               bool
	root              string
	srcbase           int
	perProc, cprocs   int
	scale             scaleFlags
	progress          bool
	server            string
	maxFail           float64
	attack            attackFlags
	tx                txFlags
	rt                rtFlags
}

// rtFlags are the rt-* scenarios' own flags.
type rtFlags struct {
	subs, topic, token string
	messages           int
	msgRate            float64
}

// txFlags are the transports, history and idle -transport flags.
type txFlags struct {
	kinds            string
	every, pollEvery time.Duration
	reconnect        bool
	transport        string
}

// attackFlags are the attack scenario's own flags (see attackUsage).
type attackFlags struct {
	o           bench.AttackOptions
	list        string
	fresh       bool
	canaryProc  bool
	stormNoFile int
}

// size is a byte count flag: 60000, 60K (1000s), 64KiB, 9MiB, 11M.
type size struct{ p *int64 }

func (s size) String() string {
	if s.p == nil {
		return "0"
	}
	return strconv.FormatInt(*s.p, 10)
}

func (s size) Set(v string) error {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}} {
		if strings.HasSuffix(v, u.suf) {
			v, mult = strings.TrimSuffix(v, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("size %q: want bytes, optionally with K, KiB, M or MiB", v)
	}
	*s.p = n * mult
	return nil
}

// intSize is a size flag stored in an int.
type intSize struct{ p *int }

func (s intSize) String() string {
	if s.p == nil {
		return "0"
	}
	return strconv.Itoa(*s.p)
}

func (s intSize) Set(v string) error {
	var n int64
	if err := (size{&n}).Set(v); err != nil {
		return err
	}
	*s.p = int(n)
	return nil
}

func (a *attackFlags) register(fs *flag.FlagSet) {
	o := &a.o
	fs.StringVar(&a.list, "attacks", "all", "attack: comma-separated letters (a-r) or names to run")
	fs.BoolVar(&a.fresh, "fresh", true, "attack with -servers: a new server process for every attack")
	fs.BoolVar(&a.canaryProc, "canary-proc", true, "attack: run the canary in a child process, away from the harness's own load")
	fs.IntVar(&a.stormNoFile, "storm-nofile", 1024, "attack with -servers: RLIMIT_NOFILE of the server for the fd storm (0: unchanged)")
	fs.DurationVar(&o.CanaryBudget, "canary-budget", 250*time.Millisecond, "attack: the canary's worst round trip allowed")
	fs.DurationVar(&o.CanaryEvery, "canary-every", 100*time.Millisecond, "attack: the canary's round trip interval")
	fs.DurationVar(&o.Drain, "drain", 3*time.Second, "attack: how long non-readers finally read to see how they were closed")
	fs.IntVar(&o.SlowConns, "slow-n", 1000, "slow-readers: /ws clients that never read")
	fs.IntVar(&o.SlowPosters, "slow-posters", 4, "slow-readers: connections looping /receive")
	fs.Var(intSize{&o.SlowSize}, "slow-size", "slow-readers: bytes per /receive message (default 60000)")
	fs.IntVar(&o.BcastConns, "bcast-n", 200, "big-broadcast: non-readers")
	fs.Var(intSize{&o.BcastSize}, "bcast-size", "big-broadcast: bytes of the one /receive message (default 9000000)")
	fs.DurationVar(&o.BcastHold, "bcast-hold", 3*time.Second, "big-broadcast: watch time after the /receive")
	fs.IntVar(&o.BombConns, "bomb-conns", 4, "deflate-bomb: attacking connections")
	fs.Var(intSize{&o.BombInflated}, "bomb-inflated", "deflate-bomb: inflated size of each frame (default 64MiB)")
	fs.IntVar(&o.BombWindow, "bomb-window", 0, "deflate-bomb: bombs each connection sends ahead of the echoes it read (0: no limit; 1: one at a time, so the server echoes every bomb)")
	fs.IntVar(&o.LPPosts, "lp-posts", 60, "long-poll: POST /new-message count")
	fs.Var(intSize{&o.LPSize}, "lp-size", "long-poll: bytes per message (default 9MiB)")
	fs.IntVar(&o.PartialConns, "partial-conns", 20, "partial-frames: connections")
	fs.Var(size{&o.PartialSent}, "partial-sent", "partial-frames: payload bytes sent at once (default 60MiB)")
	fs.Var(size{&o.PartialDeclared}, "partial-declared", "partial-frames: declared frame length (default 64MiB)")
	fs.DurationVar(&o.PartialDeadline, "partial-deadline", 30*time.Second, "partial-frames: the server should have closed them by then")
	fs.DurationVar(&o.PartialTrick, "partial-trickle", 2*time.Second, "partial-frames: one more byte this often")
	fs.Var(intSize{&o.PipeBytes}, "pipe-bytes", "pipelining: bytes of pipelined requests (default 30000)")
	fs.Var(intSize{&o.PipeResp}, "pipe-resp", "pipelining: size of the message each request fetches (default 65536)")
	fs.DurationVar(&o.PipeHold, "pipe-hold", 3*time.Second, "pipelining: watch time")
	fs.Var(intSize{&o.HeaderSize}, "header-size", "headers: bytes of the one big header (default 200000)")
	fs.Var(size{&o.Oversize}, "oversize", "oversized: message size sent to /ws (default 11MiB)")
	fs.IntVar(&o.SSEConns, "sse-n", 1000, "sse-pipelining: connections opening /sse")
	fs.Var(intSize{&o.SSEPipe}, "sse-pipe", "sse-pipelining: bytes pipelined behind each stream (default 256KiB)")
	fs.DurationVar(&o.SSEHold, "sse-hold", 3*time.Second, "sse-pipelining: watch time")
	fs.IntVar(&o.StormConns, "storm-n", 3000, "fd-storm: TCP connections")
	fs.DurationVar(&o.StormHold, "storm-hold", 2*time.Second, "fd-storm: hold time before closing them")
	fs.IntVar(&o.FarClients, "far-n", 60, "far-ahead-positions: resuming clients (a third per transport)")
	fs.DurationVar(&o.FarFor, "far-for", 3*time.Second, "far-ahead-positions: how long /receive publishes")
	fs.IntVar(&o.ReplayConns, "replay-n", 100, "history-replay: clients resuming from the oldest position at once")
	fs.IntVar(&o.ReplayMsgs, "replay-msgs", 130, "history-replay: messages posted to the history first")
	fs.Var(intSize{&o.ReplaySize}, "replay-size", "history-replay: bytes per message (default 60000)")
	fs.IntVar(&o.RTUnauthConns, "rt-unauth-n", 300, "rt-unauthenticated: connections per round")
	fs.DurationVar(&o.RTUnauthFor, "rt-unauth-for", 3*time.Second, "rt-unauthenticated: rounds of connections until then")
	fs.IntVar(&o.RTSubConns, "rt-sub-n", 20, "rt-subscription-flood: connections")
	fs.IntVar(&o.RTSubTopics, "rt-sub-topics", 3000, "rt-subscription-flood: topics each connection subscribes to")
	fs.IntVar(&o.RTMalformedConns, "rt-malformed-n", 10, "rt-malformed: connections per case")
	fs.Var(size{&o.RTOversize}, "rt-oversize", "rt-malformed: bytes of the oversized frame and POST (default 10MiB)")
	fs.IntVar(&o.RTRPCConns, "rt-rpc-n", 20, "rt-rpc-flood: connections")
	fs.IntVar(&o.RTRPCRate, "rt-rpc-rate", 400, "rt-rpc-flood: RPCs a second per connection")
	fs.DurationVar(&o.RTRPCHold, "rt-rpc-hold", 2*time.Second, "rt-rpc-flood: how long the delay RPCs stay pending")
	fs.DurationVar(&o.RTRPCFor, "rt-rpc-for", 7*time.Second, "rt-rpc-flood: flood duration")
	fs.IntVar(&o.RTSSEConns, "rt-sse-n", 200, "rt-slow-sse: SSE sessions that never read")
	fs.IntVar(&o.RTSSEPublishers, "rt-sse-publishers", 8, "rt-slow-sse: publishing connections")
	fs.Var(intSize{&o.RTSSESize}, "rt-sse-size", "rt-slow-sse: bytes per publication (default 3000; the demo's chat takes 4 KiB)")
	fs.DurationVar(&o.RTSSEFor, "rt-sse-for", 10*time.Second, "rt-slow-sse: flood duration")
	fs.IntVar(&o.RTChurnConns, "rt-churn-n", 200, "rt-presence-churn: clients subscribing and unsubscribing")
	fs.IntVar(&o.RTChurnRate, "rt-churn-rate", 40, "rt-presence-churn: commands a second per client")
	fs.IntVar(&o.RTChurnName, "rt-churn-name", 2000, "rt-presence-churn: bytes of half the clients' names (info)")
	fs.DurationVar(&o.RTChurnFor, "rt-churn-for", 10*time.Second, "rt-presence-churn: churn duration")
	fs.IntVar(&o.RTPresMembers, "rt-pres-members", 1200, "rt-presence-query-flood: idle members of the topic")
	fs.IntVar(&o.RTPresQueriers, "rt-pres-n", 200, "rt-presence-query-flood: clients sending presence")
	fs.IntVar(&o.RTPresRate, "rt-pres-rate", 45, "rt-presence-query-flood: presence commands a second per client")
	fs.IntVar(&o.RTPresName, "rt-pres-name", 32, "rt-presence-query-flood: bytes of each member's name (info)")
	fs.IntVar(&o.RTPresChurn, "rt-pres-churn", 20, "rt-presence-query-flood: clients subscribing and unsubscribing beside (40 a second each)")
	fs.DurationVar(&o.RTPresFor, "rt-pres-for", 10*time.Second, "rt-presence-query-flood: flood duration")
}

func parse(name string, args []string) *flags {
	f := &flags{fs: flag.NewFlagSet(name, flag.ExitOnError)}
	fs := f.fs
	fs.StringVar(&f.url, "url", "", "server URL (ws://host:port/route; http://host:port for transports)")
	fs.IntVar(&f.n, "n", 1000, "connections (idle, push, broadcast, transports)")
	fs.IntVar(&f.c, "c", 0, "connections for echo (default 1000) or workers for handshake (default 8)")
	fs.IntVar(&f.size, "size", 64, "message size in bytes (echo)")
	fs.IntVar(&f.pid, "pid", 0, "server PID for RSS and CPU from /proc, Linux only (0 = not measured)")
	fs.IntVar(&f.rate, "rate", 2000, "connections opened per second")
	fs.IntVar(&f.src, "src", 0, "spread source addresses over 127.0.0.1..127.0.0.K (default 1 per 20k connections)")
	fs.IntVar(&f.srcbase, "srcbase", 0, "first source address offset (idle-child)")
	fs.IntVar(&f.perProc, "per-proc", bench.DefaultMaxPerProc, "connections (handshake: workers) per harness process; more go to child processes")
	fs.IntVar(&f.cprocs, "cprocs", 0, "echo, push, broadcast, handshake: harness processes holding the connections, at least (0: as few as -per-proc allows; 2 or more: all in child processes)")
	fs.IntVar(&f.window, "window", 4, "broadcasts in flight (broadcast)")
	fs.DurationVar(&f.d, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&f.hold, "hold", 10*time.Second, "idle hold time for the CPU reading (> 25 s includes Tornago's pings)")
	fs.StringVar(&f.steps, "steps", "", "idle: comma-separated connection counts at which RSS is also recorded")
	fs.StringVar(&f.plot, "plot", "", "write a PNG: latency CDF, RSS against connections for idle, bar charts per transport for transports")
	fs.StringVar(&f.client, "client", "loop", "client: loop (loop-driven, no goroutine per connection) or gorilla")
	fs.StringVar(&f.scenario, "scenario", "echo", "compare: scenario to run")
	fs.StringVar(&f.servers, "servers", "tornago,gorilla,tornado", "compare: servers to start")
	fs.IntVar(&f.reps, "reps", 1, "compare: repetitions (servers alternate within each)")
	fs.IntVar(&f.port, "port", 18880, "compare: first port")
	fs.BoolVar(&f.pin, "pin", false, "compare: servers on CPU 0 (taskset), the harness on CPU 1")
	fs.StringVar(&f.root, "root", "", "compare: module root to build from (default: found from the working directory)")
	fs.BoolVar(&f.progress, "progress", true, "draw progress bars on stderr")
	fs.StringVar(&f.server, "server", "", "label of the server in a single run's table and JSON (default: the URL's host:port)")
	fs.Float64Var(&f.maxFail, "max-fail", bench.MaxFailShare, "share of connections, messages or requests that may fail before the run is invalid (exit 1)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: tornago-bench %s [flags]\n", name)
		in := false // inside the scenario's entry (its line and the indented ones after it)
		for _, l := range strings.Split(usage, "\n") {
			in = strings.HasPrefix(l, "  "+name+" ") || (in && strings.HasPrefix(l, "             "))
			if in {
				fmt.Fprintln(fs.Output(), l)
			}
		}
		fmt.Fprintln(fs.Output(), "flags:")
		fs.PrintDefaults()
	}
	if name == "transports" || name == "help" {
		fs.StringVar(&f.tx.kinds, "transports", strings.Join(bench.TransportKinds, ","), "transports: the transports to run, in order (the first is the ratios' reference)")
		fs.DurationVar(&f.tx.every, "every", 100*time.Millisecond, "transports: publish interval")
		fs.DurationVar(&f.tx.pollEvery, "poll-every", time.Second, "transports: short-poll interval")
		fs.BoolVar(&f.tx.reconnect, "reconnect", true, "transports: every client drops its connection at mid-run and resumes from its last position")
	}
	if strings.HasPrefix(name, "rt-") || name == "presence" || name == "storm" || name == "help" {
		fs.StringVar(&f.rt.subs, "subs", "1,10", "rt-idle: subscriptions per protocol client, one group of -n clients per entry")
		fs.StringVar(&f.rt.topic, "topic", "chat:bench", "rt-push, rt-storm: the topic (clients must be allowed to publish on it); presence, storm: its prefix (-presence, -storm appended; a namespace with presence, storm: and join_leave)")
		fs.StringVar(&f.rt.token, "token", "", "rt-*: the connect token of every protocol client")
		fs.IntVar(&f.rt.messages, "messages", 20, "rt-push: messages per group; rt-storm: publications during the storm; presence: presence queries (and 50x as many presence_stats)")
		fs.Float64Var(&f.rt.msgRate, "msg-rate", 4, "rt-push, rt-storm: messages per second")
	}
	if name == "idle" || name == "help" {
		fs.StringVar(&f.tx.transport, "transport", "", "idle: what each client holds on the server's chat: ws (/ws?since=), sse (GET /sse) or long-poll (POST /update-message); empty: a WebSocket on -url as given")
	}
	if name == "canary-child" {
		fs.DurationVar(&f.attack.o.CanaryEvery, "canary-every", 100*time.Millisecond, "the canary's round trip interval")
	}
	if name == "scale" {
		f.scale.register(fs)
	}
	if name == "attack" {
		f.attack.register(fs)
		fs.Usage = func() {
			fmt.Fprint(fs.Output(), usage, "\n", attackUsage, "\nflags:\n")
			fs.PrintDefaults()
		}
	}
	fs.Parse(args)
	if f.maxFail < 0 || f.maxFail > 1 {
		fail(fmt.Errorf("-max-fail %v: want a share between 0 and 1", f.maxFail))
	}
	bench.MaxFailShare = f.maxFail
	if f.client != "loop" && f.client != "gorilla" {
		fail(fmt.Errorf("-client %q: want loop or gorilla", f.client))
	}
	bench.ClientKind = f.client
	return f
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tornago-bench:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, usage, "\nflags of every scenario (attack has more: tornago-bench attack -h):\n")
		fs := parse("help", nil).fs
		fs.SetOutput(os.Stdout)
		fs.PrintDefaults()
		return
	case "idle-child", "canary-child", "scenario-child":
	default:
		if !slices.Contains(scenarios, os.Args[1]) {
			fmt.Fprintf(os.Stderr, "tornago-bench: unknown scenario %q\n%s", os.Args[1], usage)
			os.Exit(2)
		}
	}
	cmd, f := os.Args[1], parse(os.Args[1], os.Args[2:])
	if f.plot != "" {
		// Make the plot's folder now: a run of minutes must not end in
		// "no such file or directory" with nothing written.
		if err := os.MkdirAll(filepath.Dir(f.plot), 0o755); err != nil {
			fail(fmt.Errorf("-plot %s: %w", f.plot, err))
		}
	}
	switch cmd {
	case "idle-child":
		if err := bench.IdleChild(f.url, f.n, bench.OpenOptions{Rate: f.rate, Src: f.src, SrcBase: f.srcbase}, os.Stdin, os.Stdout); err != nil {
			fail(err)
		}
		return
	case "scenario-child":
		if err := bench.Child(os.Stdin, os.Stdout); err != nil {
			fail(err)
		}
		return
	case "canary-child":
		every := f.attack.o.CanaryEvery
		if every <= 0 {
			every = 100 * time.Millisecond
		}
		bench.CanaryChild(f.url, every, os.Stdin, os.Stdout)
		return
	case "compare":
		compare(f)
		return
	case "scale":
		scale(f)
		return
	case "attack":
		attack(f)
		return
	case "transports":
		transports(f)
		return
	case "history":
		history(f)
		return
	}
	if f.url == "" {
		fail(fmt.Errorf("%s: -url is required", cmd))
	}
	var prog *mpbProgress
	if f.progress {
		prog = newProgress()
	}
	r, err := run(cmd, f, f.url, f.pid, prog)
	if prog != nil {
		prog.Wait()
	}
	if r != nil {
		if r.Server == "" {
			r.Server = label(f)
		}
		report(f, []*bench.Result{r})
	}
	if err != nil {
		fail(err)
	}
}

// label names the server of a single run: -server, else the URL's host.
func label(f *flags) string {
	if f.server != "" {
		return f.server
	}
	if u, err := neturl.Parse(f.url); err == nil && u.Host != "" {
		return u.Host
	}
	return f.url
}

func progressOf(p *mpbProgress) bench.Progress {
	if p == nil {
		return nil
	}
	return p
}

// run runs one scenario; url is a ws:// URL of the scenario's route (or the
// http:// base for transports).
func run(cmd string, f *flags, url string, pid int, p *mpbProgress) (*bench.Result, error) {
	open := bench.OpenOptions{Rate: f.rate, Src: f.src}
	spread := spreadOf(f)
	switch cmd {
	case "idle":
		var steps []int
		for _, s := range strings.Split(f.steps, ",") {
			if k, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				steps = append(steps, k)
			}
		}
		if f.tx.transport == "ws" {
			var err error
			if url, err = bench.ChatWSURL(url); err != nil {
				return nil, err
			}
		}
		return bench.Idle(bench.IdleOptions{URL: url, Transport: f.tx.transport, Conns: f.n, PID: pid, Steps: steps, Hold: f.hold, MaxPerProc: f.perProc, Open: open, Progress: progressOf(p)})
	case "echo":
		c := f.c
		if c <= 0 {
			c = 1000
		}
		return bench.Echo(bench.EchoOptions{URL: url, Conns: c, Size: f.size, Duration: f.d, PID: pid, Open: open, Spread: spread, Progress: progressOf(p)})
	case "push":
		return bench.Push(bench.PushOptions{URL: url, Conns: f.n, Duration: f.d, PID: pid, Open: open, Spread: spread, Progress: progressOf(p)})
	case "broadcast":
		return bench.Broadcast(bench.BroadcastOptions{URL: url, Conns: f.n, Duration: f.d, Window: f.window, PID: pid, Open: open, Spread: spread, Progress: progressOf(p)})
	case "rt-idle", "rt-push", "rt-storm", "rt-connect", "presence", "storm":
		// A secret is never a flag (argv is public): the environment only.
		secret := os.Getenv("TORNAGO_TOKEN_HMAC_SECRET")
		o := bench.RealtimeOptions{URL: url, Conns: f.n, Topic: f.rt.topic, Token: f.rt.token, TokenSecret: secret, Messages: f.rt.messages,
			Rate: f.rt.msgRate, PID: pid, Open: open, Progress: progressOf(p)}
		// A private key's file, likewise from the environment only: each
		// client signs its own ES256 (or RS256, EdDSA) token with it.
		if path := os.Getenv("TORNAGO_BENCH_TOKEN_PRIVATE_KEY"); path != "" && secret == "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("TORNAGO_BENCH_TOKEN_PRIVATE_KEY: %w", err)
			}
			if o.TokenKey, err = bench.ParseTokenKey(b); err != nil {
				return nil, fmt.Errorf("TORNAGO_BENCH_TOKEN_PRIVATE_KEY %s: %w", path, err)
			}
		}
		for _, s := range strings.Split(f.rt.subs, ",") {
			if k, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && k > 0 {
				o.Subs = append(o.Subs, k)
			}
		}
		switch cmd {
		case "rt-idle":
			return bench.RealtimeIdle(o)
		case "rt-push":
			return bench.RealtimePush(o)
		case "rt-connect":
			return bench.RealtimeConnect(o)
		case "presence":
			return bench.RealtimePresence(o)
		case "storm":
			return bench.RealtimeJoinLeaveStorm(o)
		}
		return bench.RealtimeStorm(o)
	case "handshake":
		return bench.Handshake(bench.HandshakeOptions{URL: url, Workers: f.c, Duration: f.d, Src: f.src, PID: pid, Spread: spread, Progress: progressOf(p)})
	}
	return nil, fmt.Errorf("unknown scenario %q\n%s", cmd, usage)
}

func report(f *flags, rs []*bench.Result) {
	bench.WriteTable(os.Stdout, rs)
	for _, r := range rs {
		os.Stdout.WriteString("JSON ")
		r.WriteJSON(os.Stdout)
	}
	if f.plot != "" {
		if err := bench.WritePlot(f.plot, rs); err != nil {
			fail(err)
		}
		fmt.Fprintln(os.Stderr, "plot written to", f.plot)
	}
}

// routes is the path each scenario uses on every server.
var routes = map[string]string{"idle": "/echo", "echo": "/echo", "push": "/clock", "broadcast": "/ws", "handshake": "/echo"}

func compare(f *flags) {
	if f.pin && os.Getenv("TORNAGO_BENCH_PINNED") == "" {
		// Re-run this process on CPU 1 so that the server (CPU 0) and the
		// harness never share a core.
		exe, err := os.Executable()
		if err != nil {
			fail(err)
		}
		os.Setenv("TORNAGO_BENCH_PINNED", "1")
		fail(syscall.Exec("/usr/bin/taskset", append([]string{"taskset", "-c", "1", exe}, os.Args[1:]...), os.Environ()))
	}
	route, ok := routes[f.scenario]
	if !ok {
		fail(fmt.Errorf("compare: scenario %q not comparable (want idle, echo, push, broadcast, handshake)", f.scenario))
	}
	root, pin, logf := serverSetup(f)
	defer logf.Close()
	ss, err := bench.StartServers(root, strings.Split(f.servers, ","), f.port, pin, logf)
	if err != nil {
		fail(err)
	}
	for _, s := range ss {
		fmt.Fprintf(os.Stderr, "started %s pid %d on %s\n", s.Name, s.PID, s.Host)
	}
	var prog *mpbProgress
	if f.progress {
		prog = newProgress()
	}
	rs, err := bench.Compare(ss, f.reps, 3*time.Second, func(s *bench.Server) (*bench.Result, error) {
		return run(f.scenario, f, s.URL(route), s.PID, prog)
	}, func(r *bench.Result) {
		fmt.Fprintf(os.Stderr, "done: %s %s ops/s %.0f srv us/op %s errors %d\n", r.Server, r.Scenario, r.OpsPerS, bench.FormatOrNA(r.CPUPerOp, "%.2f"), r.Errors)
	})
	if prog != nil {
		prog.Wait()
	}
	bench.StopServers(ss)
	if err != nil {
		fail(err)
	}
	report(f, rs)
	bench.WriteRatios(os.Stdout, rs)
}

func findRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	fail(fmt.Errorf("compare: no go.mod above %s; pass -root", dir))
	return ""
}

func attack(f *flags) {
	names, err := bench.ParseAttacks(f.attack.list)
	if err != nil {
		fail(err)
	}
	o := f.attack.o
	o.SlowFor, o.BombFor = f.d, f.d
	// n-r's tokens (never in argv: the environment).
	o.TokenSecret = os.Getenv("TORNAGO_TOKEN_HMAC_SECRET")
	if o.TokenSecret == "" && f.url == "" {
		var b [24]byte
		rand.Read(b[:])
		o.TokenSecret = hex.EncodeToString(b[:])
	}
	if exe, err := os.Executable(); err == nil && f.attack.canaryProc {
		// The canary in a process of its own: the harness's thousands of
		// attacking connections and its garbage collector must not show
		// up as the server's latency.
		o.CanaryCommand = func(url string, every time.Duration) *exec.Cmd {
			return exec.Command(exe, "canary-child", "-url", url, "-canary-every", every.String(), "-progress=false")
		}
	}
	var prog *mpbProgress
	if f.progress {
		prog = newProgress()
		o.Progress = prog
	}
	each := func(r *bench.AttackResult) {
		fmt.Fprintln(os.Stderr, "done:", r.Summary())
	}
	var rs []*bench.AttackResult
	if f.url != "" {
		// One server, already running: -url is its base (ws:// is taken
		// as http:// on the same host), -pid its process.
		base := strings.TrimSuffix(f.url, "/")
		if u, ok := strings.CutPrefix(base, "ws://"); ok {
			base = "http://" + u
		}
		if i := strings.Index(strings.TrimPrefix(base, "http://"), "/"); i >= 0 {
			base = base[:len("http://")+i]
		}
		o.Base, o.PID = base, f.pid
		for _, n := range names {
			r := bench.RunAttack(n, o)
			rs = append(rs, r)
			each(r)
		}
	} else {
		servers := "tornago,gorilla"
		f.fs.Visit(func(fl *flag.Flag) {
			if fl.Name == "servers" {
				servers = f.servers
			}
		})
		root, pin, logf := serverSetup(f)
		defer logf.Close()
		var err error
		rs, err = bench.AttackServers(bench.AttackRunOptions{Root: root, Servers: strings.Split(servers, ","), Port: f.port,
			PinCPU: pin, Fresh: f.attack.fresh, StormNoFile: f.attack.stormNoFile, Log: logf, Attacks: names, Options: o, Each: each})
		if err != nil {
			if prog != nil {
				prog.Wait()
			}
			bench.WriteAttackTable(os.Stdout, rs)
			fail(err)
		}
	}
	if prog != nil {
		prog.Wait()
	}
	bench.WriteAttackTable(os.Stdout, rs)
	for _, r := range rs {
		os.Stdout.WriteString("JSON ")
		r.WriteJSON(os.Stdout)
	}
}

// serverSetup is what every run that starts its own servers needs: the
// repository root, the CPU to pin servers to ("" for none), and the file
// their output goes to.
func serverSetup(f *flags) (root, pin string, logf *os.File) {
	root = f.root
	if root == "" {
		root = findRoot()
	}
	if f.pin {
		pin = "0"
	}
	logf, err := os.Create(filepath.Join(os.TempDir(), "tornago-bench-servers.log"))
	if err != nil {
		fail(err)
	}
	return root, pin, logf
}

// spreadOf is the -per-proc and -cprocs choice of harness processes.
// Children re-run this executable; TORNAGO_BENCH_ARGS tells the test
// binary (which runs main from that variable) to be one too.
func spreadOf(f *flags) bench.SpreadOptions {
	s := bench.SpreadOptions{MaxPerProc: f.perProc, Procs: f.cprocs}
	if exe, err := os.Executable(); err == nil {
		s.Command = func() *exec.Cmd {
			c := exec.Command(exe, "scenario-child")
			c.Env = append(os.Environ(), "TORNAGO_BENCH_ARGS=scenario-child")
			return c
		}
	}
	return s
}

// transports runs the transports scenario against -url and prints the
// table, the JSON lines, the ratios to the first transport and the plot.
func transports(f *flags) {
	if f.url == "" {
		fail(fmt.Errorf("transports: -url http://host:port is required"))
	}
	var prog *mpbProgress
	if f.progress {
		prog = newProgress()
	}
	rs, err := bench.Transports(bench.TransportsOptions{Base: strings.TrimSuffix(f.url, "/"), Conns: f.n, Duration: f.d,
		Every: f.tx.every, PollEvery: f.tx.pollEvery, Kinds: strings.Split(f.tx.kinds, ","), NoReconnect: !f.tx.reconnect,
		PID: f.pid, Progress: progressOf(prog)})
	if prog != nil {
		prog.Wait()
	}
	for _, r := range rs {
		r.Server = label(f) + " " + r.Server
	}
	if len(rs) > 0 {
		report(f, rs)
		bench.WriteRatios(os.Stdout, rs)
	}
	if err != nil {
		fail(err)
	}
}

// history runs the history scenario: -n messages of -size bytes (1000
// unless -size is given).
func history(f *flags) {
	if f.url == "" {
		fail(fmt.Errorf("history: -url http://host:port is required"))
	}
	size := 1000
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "size" {
			size = f.size
		}
	})
	var prog *mpbProgress
	if f.progress {
		prog = newProgress()
	}
	r, err := bench.History(bench.HistoryOptions{Base: f.url, Messages: f.n, Size: size, PID: f.pid, Progress: progressOf(prog)})
	if prog != nil {
		prog.Wait()
	}
	if r != nil {
		r.Server = label(f)
		report(f, []*bench.Result{r})
	}
	if err != nil {
		fail(err)
	}
}

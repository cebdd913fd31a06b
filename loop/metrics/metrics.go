// Package metrics exports Tornago loops' counters (loop.Loop.Metrics) as
// Prometheus metrics. It is a separate package so that a program that does
// not import it does not link client_golang: the loop keeps its counters
// either way (plain stores, no locks), and only a scrape reads them.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(l))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Serve /metrics off the loop (its own net/http listener): a scrape takes
// no time on the loop and answers while the loop is blocked.
//
// Every metric has a "loop" label: the loop's index in NewCollector's
// arguments ("0", "1", ...). Label sets are bounded: routes are the
// registered WebSocket patterns, status and close codes a fixed set plus
// "other".
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tornago/tornago/loop"
)

const ns = "tornago"

// Collector is a prometheus.Collector for one or more loops. Collect is
// goroutine-safe and never waits for a loop.
type Collector struct {
	loops []*loop.Loop
	names []string
}

// Goroutine-safe. NewCollector returns a collector for loops, labelled by their index.
func NewCollector(loops ...*loop.Loop) *Collector {
	c := &Collector{loops: loops}
	for i := range loops {
		c.names = append(c.names, strconv.Itoa(i))
	}
	return c
}

// Goroutine-safe. Handler returns an http.Handler serving the loops' metrics, with the Go
// runtime's and the process's, from a registry of its own.
func Handler(loops ...*loop.Loop) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(loops...), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(ns+"_"+name, help, append([]string{"loop"}, labels...), nil)
}

// The metrics, by name (without the tornago_ prefix) in the README's order.
var (
	dConns = desc("connections_open",
		"Connections open now, by kind: websocket, eventstream (a Server-Sent Events response), longpoll (an HTTP connection holding another asynchronous request), http (the other HTTP connections, and dialed ones handshaking).", "kind")
	dRefused = desc("accepts_refused_total",
		"Connections answered 503 and closed at accept, by reason: max_conns (Options.MaxConns reached) or stopping.", "reason")
	dUpgrades = desc("websocket_upgrades_total",
		"WebSocket upgrade requests by route and result (accepted, rejected) and the status sent.", "route", "result", "status")
	dMsgsIn = desc("websocket_messages_received_total",
		"WebSocket data messages received, by route.", "route")
	dMsgsOut = desc("websocket_messages_sent_total",
		"WebSocket data messages written (not refused as a slow consumer's), by route.", "route")
	dBytesIn = desc("websocket_received_bytes_total",
		"Payload bytes of the WebSocket data messages received (inflated), by route.", "route")
	dBytesOut = desc("websocket_sent_bytes_total",
		"Payload bytes of the WebSocket data messages written (before compression), by route.", "route")
	dSlow = desc("websocket_slow_consumer_total",
		"WebSocket slow consumers handled by the route's policy: close (the connection was closed) or skip (a message was dropped).", "action")
	dStreamSlow = desc("stream_slow_consumer_total",
		"Streamed HTTP responses (event streams, Request.Flush bodies) closed for unsent output over their bound.")
	dHeld = desc("held_input_bytes",
		"Input HTTP connections hold behind a request in flight (pipelined behind a long poll or a stream): what Options.MaxHeldInputTotal bounds.")
	dHeldCloses = desc("held_input_closes_total",
		"HTTP connections closed for input held behind a request in flight over AppOptions.MaxHeldInputPerConn or Options.MaxHeldInputTotal.")
	dUnsent = desc("unsent_bytes",
		"Output written but not yet taken by the sockets (gnet's outbound buffers), as of the loop's last look.")
	dCloses = desc("websocket_close_frames_total",
		"WebSocket close frames by direction (sent, received) and code (1005: without a code; other: outside 1000-1015).", "direction", "code")
	dHTTP = desc("http_responses_total",
		"HTTP responses written, by status (101 for accepted upgrades; other: outside the common set).", "code")
	dLag = desc("loop_lag_seconds",
		"Delay between the enqueue of the oldest callback of a batch (AddCallback, writes from other goroutines) and the batch's run: how far behind the loop is.")
	dBatch = desc("loop_callback_batch_seconds",
		"Time the loop took to run one batch of queued callbacks.")
	dQueued = desc("loop_callbacks_queued",
		"Callbacks waiting to run on the loop.")
	dTimers = desc("loop_timers_pending",
		"Pending CallLater/CallAt timeouts (with the loop's own).")
	dExec = desc("loop_executor_queued",
		"RunInExecutor work waiting for a worker.")
	dBlocked = desc("loop_blocked_total",
		"Stalls the blocked-loop watchdog logged: one handler, callback or timer ran longer than Options.BlockThreshold.")
)

var all = []*prometheus.Desc{dConns, dRefused, dUpgrades, dMsgsIn, dMsgsOut, dBytesIn, dBytesOut,
	dSlow, dStreamSlow, dHeld, dHeldCloses, dUnsent, dCloses, dHTTP, dLag, dBatch, dQueued, dTimers, dExec, dBlocked}

// Goroutine-safe. Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range all {
		ch <- d
	}
}

// Goroutine-safe: it reads each loop's Metrics. Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for i, l := range c.loops {
		collectLoop(ch, c.names[i], l.Metrics())
	}
}

func code(c int) string {
	if c == 0 {
		return "other"
	}
	return strconv.Itoa(c)
}

func collectLoop(ch chan<- prometheus.Metric, name string, m loop.Metrics) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{name}, labels...)...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{name}, labels...)...)
	}
	histo := func(d *prometheus.Desc, h loop.Histogram) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		var cum uint64
		for i, b := range h.Bounds {
			cum += uint64(h.Counts[i])
			buckets[b.Seconds()] = cum
		}
		ch <- prometheus.MustNewConstHistogram(d, uint64(h.Count()), h.Sum.Seconds(), buckets, name)
	}

	plain := m.OpenConns - m.OpenWebSockets - m.PendingAsync
	if plain < 0 { // the counters are read one by one, not at one instant
		plain = 0
	}
	polls := m.PendingAsync - m.OpenEventStreams // streams count as pending too
	if polls < 0 {
		polls = 0
	}
	gauge(dConns, float64(m.OpenWebSockets), "websocket")
	gauge(dConns, float64(m.OpenEventStreams), "eventstream")
	gauge(dConns, float64(polls), "longpoll")
	gauge(dConns, float64(plain), "http")
	counter(dRefused, m.RefusedMaxConns, "max_conns")
	counter(dRefused, m.RefusedStopping, "stopping")
	for _, r := range mergeRoutes(m.Routes) {
		counter(dUpgrades, r.UpgradesAccepted, r.Pattern, "accepted", "101")
		for _, cc := range r.UpgradesRejected {
			counter(dUpgrades, cc.Count, r.Pattern, "rejected", code(cc.Code))
		}
		counter(dMsgsIn, r.MessagesIn, r.Pattern)
		counter(dMsgsOut, r.MessagesOut, r.Pattern)
		counter(dBytesIn, r.BytesIn, r.Pattern)
		counter(dBytesOut, r.BytesOut, r.Pattern)
	}
	counter(dSlow, m.SlowConsumerCloses, "close")
	counter(dSlow, m.SlowConsumerSkips, "skip")
	counter(dStreamSlow, m.StreamSlowConsumerCloses)
	gauge(dHeld, float64(m.HeldInputBytes))
	counter(dHeldCloses, m.HeldInputCloses)
	gauge(dUnsent, float64(m.UnsentBytes))
	for _, cc := range m.ClosesSent {
		counter(dCloses, cc.Count, "sent", code(cc.Code))
	}
	for _, cc := range m.ClosesReceived {
		counter(dCloses, cc.Count, "received", code(cc.Code))
	}
	for _, cc := range m.HTTPResponses {
		counter(dHTTP, cc.Count, code(cc.Code))
	}
	histo(dLag, m.CallbackLag)
	histo(dBatch, m.CallbackBatch)
	gauge(dQueued, float64(m.CallbacksQueued))
	gauge(dTimers, float64(m.TimeoutsPending))
	gauge(dExec, float64(m.ExecutorQueued))
	counter(dBlocked, m.BlockedStalls)
}

// mergeRoutes sums the routes that share a pattern (a pattern added twice,
// or on two Applications of the loop): Prometheus refuses two series with
// the same labels.
func mergeRoutes(rs []loop.RouteMetrics) []loop.RouteMetrics {
	var out []loop.RouteMetrics
	at := make(map[string]int, len(rs))
	for _, r := range rs {
		i, ok := at[r.Pattern]
		if !ok {
			at[r.Pattern] = len(out)
			r.UpgradesRejected = append([]loop.CodeCount(nil), r.UpgradesRejected...)
			out = append(out, r)
			continue
		}
		o := &out[i]
		o.UpgradesAccepted += r.UpgradesAccepted
		o.MessagesIn += r.MessagesIn
		o.MessagesOut += r.MessagesOut
		o.BytesIn += r.BytesIn
		o.BytesOut += r.BytesOut
	rejected:
		for _, cc := range r.UpgradesRejected {
			for j := range o.UpgradesRejected {
				if o.UpgradesRejected[j].Code == cc.Code {
					o.UpgradesRejected[j].Count += cc.Count
					continue rejected
				}
			}
			o.UpgradesRejected = append(o.UpgradesRejected, cc)
		}
	}
	return out
}

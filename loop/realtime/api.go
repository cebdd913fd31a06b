package realtime

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/proto/clientproto"
)

// The server API: POST /api/<method> with a JSON body and the header
// X-API-Key, for application backends (Centrifugo's HTTP API, Socket.IO's
// emitter). Methods:
//
//	publish     {"topic": T, "data": D}                 → {"pos": P}
//	broadcast   {"topics": [T...], "data": D}           → {"results": [{"pos": P} | {"error": E}...]}
//	history     {"topic": T, "since": P?, "limit": N?}  → {"publications": [{"pos","data"}...], "head": P, "gone": B}
//	disconnect  {"user": U, "code": C?, "reason": R?}   → {}
//	subscribe   {"user": U, "topic": T}                 → {}
//
// Replies are {"result": ...} or {"error": {"code", "message"}} with the
// protocol's error codes (PROTOCOL.md).

// Default bounds of the server API (APIOptions' zero values).
const (
	// DefaultAPIBodyBytes bounds an API request's body: 1 MiB.
	DefaultAPIBodyBytes = 1 << 20
	// DefaultAPITopics bounds broadcast's topics: 1000.
	DefaultAPITopics = 1000
	// DefaultAPIHistory is history's limit when the request gives none,
	// and the largest it may ask: 1000.
	DefaultAPIHistory = 1000
	// APIControlTopic is the broker topic that carries disconnect and
	// subscribe to every process.
	APIControlTopic = "_tornago_api"
)

// controlMaxAge bounds how old a control message may be (its at field):
// one recorded on the broker and replayed later is refused. Generous, for
// clocks of several machines.
const controlMaxAge = 5 * time.Minute

// maxReason bounds a disconnect reason: a WebSocket close frame's payload
// is 125 bytes, 2 of them the code.
const maxReason = 123

// maxUser bounds a user id in API requests.
const maxUser = 255

// APIBackend is one loop's realtime server as the server API reaches it.
// *Server is one; an application may wrap it to route some topics
// elsewhere too (the demo binary sends topic "chat" to its seed /ws
// clients as well).
type APIBackend interface {
	// Goroutine-safe. PublishAsync publishes data on topic and calls done
	// (on any goroutine) with the position it got (zero when the topic
	// keeps no history) or why it failed; a *clientproto.Error names the
	// protocol's code.
	PublishAsync(topic string, data json.RawMessage, done func(pubsub.Position, error))
	// Goroutine-safe. DisconnectUser ends every connection of user with
	// code and reason.
	DisconnectUser(user string, code clientproto.DisconnectCode, reason string)
	// Goroutine-safe. SubscribeUser subscribes every connection of user
	// to topic (a sub push tells each).
	SubscribeUser(user, topic string)
	// Loop-only. History calls done on the loop (at once or later) with
	// the kept publications of topic after since, oldest first, and the
	// topic's head, as loop.Hub.History: the zero since gives nothing but
	// the head, since's Offset -1 everything kept of its epoch, and a
	// since the history no longer reaches an error wrapping
	// pubsub.ErrHistoryGone.
	History(topic string, since pubsub.Position, done func([]pubsub.Message, pubsub.Position, error))
}

// Goroutine-safe.
// APIBackend returns s as the server API's backend (APIOptions, Routes).
func (s *Server) APIBackend() APIBackend { return serverBackend{s} }

// serverBackend is a Server as an APIBackend.
type serverBackend struct{ s *Server }

func (b serverBackend) PublishAsync(topic string, data json.RawMessage, done func(pubsub.Position, error)) {
	// No client could subscribe to a topic outside the namespaces: a
	// backend's typo, told rather than published to no one. (The
	// namespaces are fixed by New: reading them here is safe.)
	if b.s.namespace(topic) == nil {
		done(pubsub.Position{}, &clientproto.Error{Code: clientproto.ErrUnknownTopic, Message: "no namespace for topic " + strconv.Quote(topic)})
		return
	}
	if err := b.s.PublishAsync(topic, data, done); err != nil {
		done(pubsub.Position{}, err)
	}
}

func (b serverBackend) DisconnectUser(user string, code clientproto.DisconnectCode, reason string) {
	b.s.DisconnectUser(user, code, reason)
}

func (b serverBackend) SubscribeUser(user, topic string) { b.s.SubscribeUser(user, topic) }

func (b serverBackend) History(topic string, since pubsub.Position, done func([]pubsub.Message, pubsub.Position, error)) {
	s := b.s
	ns := s.namespace(topic)
	switch {
	case ns == nil:
		done(nil, pubsub.Position{}, &clientproto.Error{Code: clientproto.ErrUnknownTopic, Message: "no namespace for topic " + strconv.Quote(topic)})
		return
	case !ns.History.Keeps():
		done(nil, pubsub.Position{}, &clientproto.Error{Code: clientproto.ErrNotAvailable, Message: "namespace " + strconv.Quote(ns.Name) + " keeps no history"})
		return
	}
	s.ensureKept(topic, ns, func(err error) {
		if err != nil {
			done(nil, pubsub.Position{}, err)
			return
		}
		done(s.hub.History(hubTopic(topic), since, nil))
	})
}

// APIOptions configure the server API. The zero value (but for Key)
// applies the defaults.
type APIOptions struct {
	// Key is the API key requests carry in X-API-Key, compared in
	// constant time. Empty: the API is off and every /api/ request gets
	// 404, as if there were no such route.
	Key string
	// MaxBodyBytes bounds a request's body (413 beyond). Default
	// DefaultAPIBodyBytes. The Application's own body limit
	// (AppOptions.Limits.MaxBodyBytes) applies first.
	MaxBodyBytes int
	// MaxTopics bounds broadcast's topics. Default DefaultAPITopics.
	MaxTopics int
	// MaxHistory bounds history's limit. Default DefaultAPIHistory.
	MaxHistory int
	// Broker, when set, carries disconnect and subscribe to every process
	// sharing it, on APIControlTopic, signed with a key derived from Key
	// (anything else that can publish on the broker cannot forge one).
	// Without it they reach the backends of this process only. Publish
	// needs no help: each backend's Hub already publishes through its
	// broker.
	Broker pubsub.Broker
	// Logger reports refused control messages. Default slog.Default().
	Logger *slog.Logger
}

func (o APIOptions) withDefaults() APIOptions {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultAPIBodyBytes
	}
	if o.MaxTopics <= 0 {
		o.MaxTopics = DefaultAPITopics
	}
	if o.MaxHistory <= 0 {
		o.MaxHistory = DefaultAPIHistory
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// API is the server API of one process: register it on every loop's
// Application with Routes, each with that loop's backend. Disconnect and
// subscribe reach every backend (and, through APIOptions.Broker, every
// process); publish and history run on the loop that got the request.
type API struct {
	o        APIOptions
	keySum   [32]byte // sha256 of Key: compared without leaking its length
	macKey   []byte   // signs control messages
	backends atomic.Pointer[[]APIBackend]
	mu       sync.Mutex // serialises Add
	cancel   func()
	refused  atomic.Int64
}

// Goroutine-safe.
// NewAPI returns the server API. With APIOptions.Broker it subscribes to
// the control topic, which may block (a round trip to NATS): call it
// before the loops start or off them. Close ends the subscription.
func NewAPI(o APIOptions) (*API, error) {
	a := &API{o: o.withDefaults()}
	a.backends.Store(&[]APIBackend{})
	if o.Key == "" {
		return a, nil
	}
	a.keySum = sha256.Sum256([]byte(o.Key))
	m := hmac.New(sha256.New, []byte(o.Key))
	m.Write([]byte("tornago api control v1"))
	a.macKey = m.Sum(nil)
	if o.Broker != nil {
		cancel, err := o.Broker.Subscribe(APIControlTopic, a.deliverControl)
		if err != nil {
			return nil, fmt.Errorf("realtime: api: subscribe %q: %w", APIControlTopic, err)
		}
		a.cancel = cancel
	}
	return a, nil
}

// Goroutine-safe.
// Close ends the control topic's subscription.
func (a *API) Close() error {
	if a.cancel != nil {
		a.cancel()
	}
	return nil
}

// Goroutine-safe.
// Refused counts the control messages from the broker that were refused
// (bad signature, too old, malformed).
func (a *API) Refused() int64 { return a.refused.Load() }

// Goroutine-safe.
// Add makes b one of the backends disconnect and subscribe reach. Routes
// calls it.
func (a *API) Add(b APIBackend) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.backends.Load()
	next := append(old[:len(old):len(old)], b)
	a.backends.Store(&next)
}

// Loop-only, or before Start.
// Routes adds POST /api/<method> to app, served with backend b (this
// loop's), and adds b to the API's backends.
func (a *API) Routes(app *loop.Application, b APIBackend) {
	a.Add(b)
	app.Handle("/api/(.*)", loop.HandlerFunc(func(r *loop.Request) { a.serve(r, b) }))
}

// apiError is an error reply's error; status is the HTTP status.
type apiError struct {
	status int
	Code   clientproto.ErrorCode `json:"code"`
	Msg    string                `json:"message"`
}

func (e *apiError) Error() string { return e.Msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: 400, Code: clientproto.ErrBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// serve answers one API request on its loop.
func (a *API) serve(r *loop.Request, b APIBackend) {
	if a.o.Key == "" {
		r.SendError(404) // the API is off: as if the route did not exist
		return
	}
	if r.Method != "POST" {
		r.SetHeader("Allow", "POST")
		a.fail(r, &apiError{status: 405, Code: clientproto.ErrBadRequest, Msg: "the server API takes POST"})
		return
	}
	// Hash both sides so that the comparison takes the same time whatever
	// the key's length and contents.
	got := sha256.Sum256([]byte(r.Header("X-API-Key")))
	if subtle.ConstantTimeCompare(got[:], a.keySum[:]) != 1 {
		a.fail(r, &apiError{status: 401, Code: clientproto.ErrUnauthorized, Msg: "missing or wrong X-API-Key"})
		return
	}
	if len(r.Body) > a.o.MaxBodyBytes {
		a.fail(r, &apiError{status: 413, Code: clientproto.ErrTooLarge,
			Msg: fmt.Sprintf("body is %d bytes, over the limit of %d", len(r.Body), a.o.MaxBodyBytes)})
		return
	}
	var err error
	switch method := r.PathArgs[0]; method {
	case "publish":
		err = a.publish(r, b)
	case "broadcast":
		err = a.broadcast(r, b)
	case "history":
		err = a.history(r, b)
	case "disconnect":
		err = a.disconnect(r)
	case "subscribe":
		err = a.subscribe(r)
	case "presence", "presence_stats":
		err = a.apiPresence(r, b, method == "presence_stats")
	default:
		err = &apiError{status: 404, Code: clientproto.ErrMethodNotFound,
			Msg: "no API method " + strconv.Quote(method) + ": publish, broadcast, history, disconnect, subscribe, presence or presence_stats"}
	}
	if err != nil {
		a.fail(r, err)
	}
}

// decode reads the body, one JSON object, into v: unknown fields and
// trailing data are errors, so that a typo is not silently ignored.
func decode(r *loop.Request, v any) error {
	if len(bytes.TrimSpace(r.Body)) == 0 {
		return badRequest("the body must be a JSON object")
	}
	d := json.NewDecoder(bytes.NewReader(r.Body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return badRequest("body: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return badRequest("body: data after the JSON object")
	}
	return nil
}

// checkTopic applies PROTOCOL.md's topic name rule.
func checkTopic(topic string) error {
	if topic == "" {
		return badRequest("topic is required")
	}
	if len(topic) > 255 {
		return badRequest("topic is %d bytes, over 255", len(topic))
	}
	for i := 0; i < len(topic); i++ {
		if c := topic[i]; c <= ' ' || c > '~' {
			return badRequest("topic %s: printable ASCII without space only", strconv.Quote(topic))
		}
	}
	return nil
}

// checkData requires data (any JSON value, already validated by the
// decoder).
func checkData(data json.RawMessage) error {
	if len(data) == 0 {
		return badRequest("data is required (any JSON value)")
	}
	return nil
}

func checkUser(user string) error {
	switch {
	case user == "":
		return badRequest("user is required")
	case len(user) > maxUser:
		return badRequest("user is %d bytes, over %d", len(user), maxUser)
	case !utf8.ValidString(user):
		return badRequest("user is not valid UTF-8")
	}
	return nil
}

// publishResult is publish's result, and an entry of broadcast's.
type publishResult struct {
	Pos   string    `json:"pos,omitempty"`
	Error *apiError `json:"error,omitempty"`
}

func resultOf(pos pubsub.Position, err error) publishResult {
	if err != nil {
		return publishResult{Error: asAPIError(err)}
	}
	if pos == (pubsub.Position{}) {
		return publishResult{}
	}
	return publishResult{Pos: pos.String()}
}

func (a *API) publish(r *loop.Request, b APIBackend) error {
	var req struct {
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := checkTopic(req.Topic); err != nil {
		return err
	}
	if err := checkData(req.Data); err != nil {
		return err
	}
	r.Async()
	l := r.Loop()
	b.PublishAsync(req.Topic, req.Data, func(pos pubsub.Position, err error) {
		onLoop(l, func() {
			if err != nil {
				a.fail(r, err)
				return
			}
			a.reply(r, resultOf(pos, nil))
		})
	})
	return nil
}

func (a *API) broadcast(r *loop.Request, b APIBackend) error {
	var req struct {
		Topics []string        `json:"topics"`
		Data   json.RawMessage `json:"data"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	switch {
	case len(req.Topics) == 0:
		return badRequest("topics is required: a list of topics")
	case len(req.Topics) > a.o.MaxTopics:
		return badRequest("%d topics, over the limit of %d", len(req.Topics), a.o.MaxTopics)
	}
	for _, t := range req.Topics {
		if err := checkTopic(t); err != nil {
			return err
		}
	}
	if err := checkData(req.Data); err != nil {
		return err
	}
	r.Async()
	l := r.Loop()
	results := make([]publishResult, len(req.Topics))
	left := len(req.Topics) // counted on the loop
	for i, t := range req.Topics {
		b.PublishAsync(t, req.Data, func(pos pubsub.Position, err error) {
			onLoop(l, func() {
				results[i] = resultOf(pos, err)
				if left--; left == 0 {
					a.reply(r, struct {
						Results []publishResult `json:"results"`
					}{results})
				}
			})
		})
	}
	return nil
}

// apiPublication is one entry of history's result.
type apiPublication struct {
	Pos  string          `json:"pos"`
	Data json.RawMessage `json:"data"`
}

func (a *API) history(r *loop.Request, b APIBackend) error {
	var req struct {
		Topic string `json:"topic"`
		Since string `json:"since"`
		Limit *int   `json:"limit"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := checkTopic(req.Topic); err != nil {
		return err
	}
	limit := a.o.MaxHistory
	if req.Limit != nil {
		if *req.Limit < 0 || *req.Limit > a.o.MaxHistory {
			return badRequest("limit %d: want 0 to %d", *req.Limit, a.o.MaxHistory)
		}
		limit = *req.Limit
	}
	since, err := pubsub.ParsePosition(req.Since)
	if err != nil {
		return badRequest("since %s: want EPOCH-OFFSET", strconv.Quote(req.Since))
	}
	r.Async()
	l := r.Loop()
	finish := func(fromStart bool) func([]pubsub.Message, pubsub.Position, error) {
		return func(msgs []pubsub.Message, head pubsub.Position, err error) {
			onLoop(l, func() {
				gone := errors.Is(err, pubsub.ErrHistoryGone)
				if err != nil && !gone {
					a.fail(r, err)
					return
				}
				// With since, the oldest limit after it (page forward from
				// the last pos); without, the newest limit: what a backend
				// rendering a topic's recent messages wants.
				if len(msgs) > limit {
					if fromStart {
						msgs = msgs[len(msgs)-limit:]
					} else {
						msgs = msgs[:limit]
					}
				}
				pubs := make([]apiPublication, len(msgs))
				for i, m := range msgs {
					pubs[i] = apiPublication{Pos: m.Pos.String(), Data: m.Data}
				}
				a.reply(r, struct {
					Publications []apiPublication `json:"publications"`
					Head         string           `json:"head"`
					Gone         bool             `json:"gone"`
				}{pubs, head.String(), gone})
			})
		}
	}
	if since != (pubsub.Position{}) {
		b.History(req.Topic, since, finish(false))
		return nil
	}
	// Everything kept: first the head, then its epoch from the start.
	b.History(req.Topic, pubsub.Position{}, func(_ []pubsub.Message, head pubsub.Position, err error) {
		onLoop(l, func() {
			if err != nil {
				finish(true)(nil, head, err)
				return
			}
			b.History(req.Topic, pubsub.Position{Epoch: head.Epoch, Offset: -1}, finish(true))
		})
	})
	return nil
}

// control is a disconnect or subscribe for every backend, as it travels
// on the broker.
type control struct {
	Op     string                     `json:"op"` // "disconnect" or "subscribe"
	User   string                     `json:"user"`
	Code   clientproto.DisconnectCode `json:"code,omitempty"`
	Reason string                     `json:"reason,omitempty"`
	Topic  string                     `json:"topic,omitempty"`
	At     int64                      `json:"at"` // unix milliseconds
}

func (a *API) disconnect(r *loop.Request) error {
	var req struct {
		User   string `json:"user"`
		Code   *int   `json:"code"`
		Reason string `json:"reason"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	c := control{Op: "disconnect", User: req.User, Code: clientproto.DisconnectForced, Reason: req.Reason}
	if req.Code != nil {
		if *req.Code < 3000 || *req.Code > 3999 {
			return badRequest("code %d: want 3000-3999 (3000-3499: the client reconnects)", *req.Code)
		}
		c.Code = clientproto.DisconnectCode(*req.Code)
	}
	if c.Reason == "" {
		c.Reason = "disconnected"
	}
	if err := c.check(); err != nil {
		return err
	}
	return a.send(r, c)
}

func (a *API) subscribe(r *loop.Request) error {
	var req struct {
		User  string `json:"user"`
		Topic string `json:"topic"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	c := control{Op: "subscribe", User: req.User, Topic: req.Topic}
	if err := c.check(); err != nil {
		return err
	}
	return a.send(r, c)
}

// check validates c, from a request or from the broker.
func (c *control) check() error {
	if err := checkUser(c.User); err != nil {
		return err
	}
	switch c.Op {
	case "disconnect":
		if c.Code < 3000 || c.Code > 3999 {
			return badRequest("code %d: want 3000-3999", c.Code)
		}
		if len(c.Reason) > maxReason || !utf8.ValidString(c.Reason) {
			return badRequest("reason: at most %d bytes of UTF-8", maxReason)
		}
	case "subscribe":
		return checkTopic(c.Topic)
	default:
		return badRequest("op %s", strconv.Quote(c.Op))
	}
	return nil
}

// send applies c to every backend of every process: through the broker
// when there is one (which delivers it back to this process too), else
// directly.
func (a *API) send(r *loop.Request, c control) error {
	if a.o.Broker == nil {
		a.apply(c)
		a.reply(r, struct{}{})
		return nil
	}
	c.At = time.Now().UnixMilli()
	if err := a.o.Broker.Publish(APIControlTopic, a.sign(c)); err != nil {
		return &apiError{status: 503, Code: clientproto.ErrInternal, Msg: "broker: " + err.Error()}
	}
	a.reply(r, struct{}{})
	return nil
}

// apply hands c to every backend of this process.
func (a *API) apply(c control) {
	for _, b := range *a.backends.Load() {
		switch c.Op {
		case "disconnect":
			b.DisconnectUser(c.User, c.Code, c.Reason)
		case "subscribe":
			b.SubscribeUser(c.User, c.Topic)
		}
	}
}

// sign encodes c as the broker carries it: the hex HMAC-SHA256 of the
// JSON, a space, the JSON.
func (a *API) sign(c control) []byte {
	js, _ := json.Marshal(c) // plain fields: cannot fail
	m := hmac.New(sha256.New, a.macKey)
	m.Write(js)
	out := hex.AppendEncode(nil, m.Sum(nil))
	out = append(out, ' ')
	return append(out, js...)
}

// maxControl bounds a control message from the broker.
const maxControl = 4 << 10

// deliverControl is the control topic's subscriber: it checks the
// signature, age and fields of a message from the broker, which anything
// able to publish there could have sent, and applies it.
func (a *API) deliverControl(data []byte) {
	c, err := a.verify(data, time.Now())
	if err != nil {
		a.refused.Add(1)
		a.o.Logger.Warn("server api: refused a control message from the broker", "err", err, "bytes", len(data))
		return
	}
	a.apply(c)
}

func (a *API) verify(data []byte, now time.Time) (control, error) {
	var c control
	if len(data) > maxControl {
		return c, fmt.Errorf("%d bytes, over %d", len(data), maxControl)
	}
	sig, js, ok := bytes.Cut(data, []byte{' '})
	if !ok || len(sig) != 2*sha256.Size {
		return c, errors.New("not a signed control message")
	}
	want, err := hex.DecodeString(string(sig))
	if err != nil {
		return c, errors.New("not a signed control message")
	}
	m := hmac.New(sha256.New, a.macKey)
	m.Write(js)
	if !hmac.Equal(m.Sum(nil), want) {
		return c, errors.New("bad signature (another API key?)")
	}
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return c, fmt.Errorf("malformed: %w", err)
	}
	if age := now.Sub(time.UnixMilli(c.At)); age > controlMaxAge || age < -controlMaxAge {
		return c, fmt.Errorf("sent %s ago: replayed or a clock far off", age.Round(time.Second))
	}
	if err := c.check(); err != nil {
		return c, err
	}
	return c, nil
}

// asAPIError maps a backend's error to the reply's error and HTTP status.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var pe *clientproto.Error
	if errors.As(err, &pe) {
		status := 400
		switch {
		case pe.Temporary || pe.Code == clientproto.ErrInternal:
			status = 503
		case pe.Code == clientproto.ErrPermissionDenied || pe.Code == clientproto.ErrNotAvailable:
			status = 403
		case pe.Code == clientproto.ErrTooLarge:
			status = 413
		}
		return &apiError{status: status, Code: pe.Code, Msg: pe.Message}
	}
	if errors.Is(err, pubsub.ErrNoHistory) {
		return &apiError{status: 400, Code: clientproto.ErrNotAvailable, Msg: "the topic keeps no history here: " + err.Error()}
	}
	// The loop's backlog, a broker's backlog or outage, a closed hub:
	// worth a retry.
	return &apiError{status: 503, Code: clientproto.ErrInternal, Msg: err.Error()}
}

// fail answers r with err as an error reply. Loop-only.
func (a *API) fail(r *loop.Request, err error) {
	ae := asAPIError(err)
	r.SetStatus(ae.status)
	writeJSON(r, struct {
		Error *apiError `json:"error"`
	}{ae})
}

// reply answers r with {"result": v}. Loop-only.
func (a *API) reply(r *loop.Request, v any) {
	writeJSON(r, struct {
		Result any `json:"result"`
	}{v})
}

// writeJSON finishes r with v as its JSON body. Loop-only.
func writeJSON(r *loop.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only plain values and validated JSON reach here
		r.SetStatus(500)
		body = []byte(`{"error":{"code":100,"message":"internal"}}`)
	}
	r.SetHeader("Content-Type", "application/json")
	r.SetHeader("Cache-Control", "no-store")
	r.Write(append(body, '\n'))
	r.Finish()
}

// onLoop runs fn on l: at once when called there, else queued.
func onLoop(l *loop.Loop, fn func()) {
	if l.InLoop() {
		fn()
		return
	}
	l.AddCallback(fn)
}

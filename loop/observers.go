package loop

// onWebSocketClose registers fn to run on the loop each time one of the
// loop's WebSockets is closed, after its OnClose (a Hub drops it from its
// topics there). Loop-only, or before Start; there is no removal, so
// register once per long-lived value.
func (l *Loop) onWebSocketClose(fn func(*WebSocket)) {
	l.wsCloseObservers = append(l.wsCloseObservers, fn)
}

// notifyWebSocketClosed runs the close observers for w. Loop-only.
func (l *Loop) notifyWebSocketClosed(w *WebSocket) {
	for _, fn := range l.wsCloseObservers {
		fn(w)
	}
}

// onEventStreamClose registers fn to run on the loop each time one of the
// loop's event streams ends, whatever the cause (Close, the client gone,
// a slow consumer, Stop), once per stream and after the handler or
// callback that ended it returned (a Hub drops it from its topics there).
// Loop-only, or before Start; there is no removal, so register once per
// long-lived value.
func (l *Loop) onEventStreamClose(fn func(*EventStream)) {
	l.esCloseObservers = append(l.esCloseObservers, fn)
}

// notifyEventStreamClosed runs the stream-close observers for es. Loop-only.
func (l *Loop) notifyEventStreamClosed(es *EventStream) {
	for _, fn := range l.esCloseObservers {
		fn(es)
	}
}

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

package loop

// observer is one close observer; removed stops it from running even in a
// notification already under way when it was removed.
type observer[T any] struct {
	fn      func(T)
	removed bool
}

// addObserver appends fn to *list and returns what removes it. Loop-only.
func addObserver[T any](list *[]*observer[T], fn func(T)) (remove func()) {
	o := &observer[T]{fn: fn}
	*list = append(*list, o)
	return func() {
		if o.removed {
			return
		}
		o.removed = true
		// A new slice, not an in-place shift: a notification iterating
		// the old one (an observer that removes one) stays valid.
		old := *list
		kept := make([]*observer[T], 0, len(old)-1)
		for _, x := range old {
			if x != o {
				kept = append(kept, x)
			}
		}
		if len(kept) == 0 {
			kept = nil
		}
		*list = kept
	}
}

// notifyObservers runs the observers of list for v. Loop-only.
func notifyObservers[T any](list []*observer[T], v T) {
	for _, o := range list {
		if !o.removed {
			o.fn(v)
		}
	}
}

// onWebSocketClose registers fn to run on the loop each time one of the
// loop's WebSockets is closed, after its OnClose (a Hub drops it from its
// topics there), until remove is called (Hub.Close does). Loop-only, or
// before Start.
func (l *Loop) onWebSocketClose(fn func(*WebSocket)) (remove func()) {
	return addObserver(&l.wsCloseObservers, fn)
}

// notifyWebSocketClosed runs the close observers for w. Loop-only.
func (l *Loop) notifyWebSocketClosed(w *WebSocket) { notifyObservers(l.wsCloseObservers, w) }

// onEventStreamClose registers fn to run on the loop each time one of the
// loop's event streams ends, whatever the cause (Close, the client gone,
// a slow consumer, Stop), once per stream and after the handler or
// callback that ended it returned (a Hub drops it from its topics there),
// until remove is called. Loop-only, or before Start.
func (l *Loop) onEventStreamClose(fn func(*EventStream)) (remove func()) {
	return addObserver(&l.esCloseObservers, fn)
}

// notifyEventStreamClosed runs the stream-close observers for es. Loop-only.
func (l *Loop) notifyEventStreamClosed(es *EventStream) { notifyObservers(l.esCloseObservers, es) }

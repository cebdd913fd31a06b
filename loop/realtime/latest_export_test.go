package realtime

// HeldLatest returns, from the loop, the lagging connections and the
// publications held for them (latest.go), for the tests' memory bound.
func HeldLatest(s *Server) (conns, held int) {
	done := make(chan struct{})
	s.l.AddCallback(func() {
		defer close(done)
		conns = len(s.lags)
		for _, lg := range s.lags {
			held += len(lg.held)
		}
	})
	<-done
	return conns, held
}

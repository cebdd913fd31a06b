package loop

import "time"

// AccessEntry is one answered request, for AppOptions.AccessLog.
type AccessEntry struct {
	Method   string
	Path     string
	Status   int           // 101 for a WebSocket upgrade
	Bytes    int           // body bytes sent (0 for HEAD and upgrades)
	Duration time.Duration // from the end of the request head to the response
	Remote   string        // the client's IP, without the port (Request.RemoteIP: through a trusted proxy, the forwarded one)
}

// accessLog reports r's response to the application's AccessLog, if any.
// Loop-only.
func (h *httpConn) accessLog(r *Request, status, bytes int) {
	fn := h.app.opts.AccessLog
	if fn == nil {
		return
	}
	remote := r.RemoteIP()
	fn(AccessEntry{
		Method:   r.Method,
		Path:     r.Path,
		Status:   status,
		Bytes:    bytes,
		Duration: time.Duration(r.c.l.now() - r.start),
		Remote:   remote,
	})
}

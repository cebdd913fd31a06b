package jwtauth

import (
	"net/http"
	"strings"
)

// Goroutine-safe.
// FromHeader finds a token in a request's header fields, for clients that
// cannot put it in the connect command (an EventSource sets no header but
// sends cookies): the Authorization field's Bearer token, else the cookie
// named cookie (none when cookie is ""). It returns "" when there is
// neither. An Authenticate hook uses it when the connect command's token
// is empty.
func FromHeader(h http.Header, cookie string) string {
	if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
		return strings.TrimSpace(a[7:])
	}
	if cookie == "" {
		return ""
	}
	r := http.Request{Header: h}
	if c, err := r.Cookie(cookie); err == nil {
		return c.Value
	}
	return ""
}

package http1

// Proxy headers: RFC 7239 Forwarded and the de facto X-Forwarded-For list.
// These functions only parse; which hops to believe is the caller's
// policy (loop honours them only from configured trusted proxies).

import (
	"errors"
	"net/netip"
	"unsafe"
)

// ForwardedElement is one forwarded-element of a Forwarded field (RFC 7239
// 4): the parameters one proxy added about the request it received. A
// parameter that is absent is nil. A quoted value is given without its
// quotes; a quoted-pair inside is left as sent (backslash included), since
// no valid for/by/host/proto value needs one, so such a node simply fails
// ParseNode. The slices alias the parsed field values.
type ForwardedElement struct {
	For, By, Host, Proto []byte
}

// ErrForwarded reports a Forwarded field value that does not follow RFC
// 7239 4 (or repeats a parameter in one element, which 5 forbids). A caller
// should then ignore the whole field: a proxy that garbles it cannot be
// trusted on any part of it.
var ErrForwarded = errors.New("http1: malformed Forwarded field")

// ParseForwarded appends to dst the forwarded-elements of the Forwarded
// field values (one per field line, in the order received, as Head.Values
// gives them), leftmost (the client's side) first:
//
//	Forwarded   = 1#forwarded-element
//	forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//	forwarded-pair = token "=" value
//	value       = token / quoted-string
//
// Parameter names are case-insensitive; unknown ones (extensions) are
// skipped. Two leniencies match what proxies send: optional white space is
// accepted around ";" as around ",", and an unquoted value may hold ':',
// '[' and ']' (for=192.0.2.1:80) though RFC 7239 6 wants those quoted.
// Empty elements are skipped. On error dst is returned as it was passed.
// It allocates nothing when dst has room. Pure function, safe anywhere.
func ParseForwarded(dst []ForwardedElement, values ...[]byte) ([]ForwardedElement, error) {
	n0 := len(dst)
	for _, v := range values {
		var e ForwardedElement
		empty := true
		i := 0
		for {
			for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
				i++
			}
			if i == len(v) || v[i] == ',' {
				if !empty {
					dst = append(dst, e)
				}
				e, empty = ForwardedElement{}, true
				if i == len(v) {
					break
				}
				i++
				continue
			}
			if v[i] == ';' {
				i++
				continue
			}
			start := i
			for i < len(v) && isTchar[v[i]] {
				i++
			}
			name := v[start:i]
			if len(name) == 0 || i == len(v) || v[i] != '=' {
				return dst[:n0], ErrForwarded
			}
			i++
			var val []byte
			if i < len(v) && v[i] == '"' {
				i++
				start = i
				for i < len(v) && v[i] != '"' {
					if v[i] == '\\' {
						i++
					}
					if i < len(v) && isCTLExceptHT(v[i]) {
						return dst[:n0], ErrForwarded
					}
					i++
				}
				if i >= len(v) {
					return dst[:n0], ErrForwarded // unterminated
				}
				val = v[start:i:i]
				i++
			} else {
				start = i
				for i < len(v) && (isTchar[v[i]] || v[i] == ':' || v[i] == '[' || v[i] == ']') {
					i++
				}
				if i == start {
					return dst[:n0], ErrForwarded
				}
				val = v[start:i:i]
			}
			var slot *[]byte
			switch {
			case EqualFold(name, "for"):
				slot = &e.For
			case EqualFold(name, "by"):
				slot = &e.By
			case EqualFold(name, "host"):
				slot = &e.Host
			case EqualFold(name, "proto"):
				slot = &e.Proto
			}
			if slot != nil {
				if *slot != nil {
					return dst[:n0], ErrForwarded // RFC 7239 5: at most once per element
				}
				*slot = val
			}
			empty = false
			j := i
			for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
				j++
			}
			if j < len(v) && v[j] != ';' && v[j] != ',' {
				return dst[:n0], ErrForwarded
			}
		}
	}
	return dst, nil
}

// LastToken splits the last non-empty element off the comma-separated list,
// trimmed of optional white space, with rest the bytes before its comma (nil
// when none is left): NextToken from the right, for lists such as
// X-Forwarded-For whose trustworthy end is the last one. item and rest alias
// list; it never allocates. Pure function, safe anywhere.
func LastToken(list []byte) (item, rest []byte) {
	for len(list) > 0 {
		i := len(list) - 1
		for i >= 0 && list[i] != ',' {
			i--
		}
		if i < 0 {
			return TrimOWS(list), nil
		}
		item, list = TrimOWS(list[i+1:]), list[:i]
		if len(item) > 0 {
			return item, list
		}
	}
	return nil, nil
}

// ParseNode parses the address of a proxy hop as X-Forwarded-For, X-Real-IP
// and Forwarded for=/by= carry it: "192.0.2.1", "192.0.2.1:8080",
// "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:8080" (RFC 7239 6). The port
// is dropped and an IPv4-mapped IPv6 address is unmapped, so the result
// compares with IPv4 prefixes. "unknown", an obfuscated "_name" and anything
// else that is not an address report ok false. It never allocates.
func ParseNode(node []byte) (ip netip.Addr, ok bool) {
	if len(node) == 0 || len(node) > 64 {
		return netip.Addr{}, false
	}
	if node[0] == '[' {
		end := -1
		for i, c := range node {
			if c == ']' {
				end = i
				break
			}
		}
		if end < 0 || (end+1 < len(node) && !validPort(node[end+1:])) {
			return netip.Addr{}, false
		}
		node = node[1:end]
		ip, err := netip.ParseAddr(bytesString(node))
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return netip.Addr{}, false
		}
		return ip.Unmap(), true
	}
	colons, last := 0, -1
	for i, c := range node {
		if c == ':' {
			colons++
			last = i
		}
	}
	if colons == 1 { // IPv4 with a port
		if !validPort(node[last:]) {
			return netip.Addr{}, false
		}
		node = node[:last]
	}
	ip, err := netip.ParseAddr(bytesString(node))
	if err != nil || ip.Zone() != "" || (colons == 1 && !ip.Is4()) {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// validPort reports whether p is ":" followed by 1-5 digits.
func validPort(p []byte) bool {
	if len(p) < 2 || len(p) > 6 || p[0] != ':' {
		return false
	}
	for _, c := range p[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// bytesString views b as a string without copying, for netip.ParseAddr,
// which keeps no reference to its argument once it rejected zones (any
// zone is interned with a copy).
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

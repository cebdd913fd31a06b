package http1

import "bytes"

// NextToken splits the first non-empty element off the comma-separated
// field value list (the #list of RFC 9110 5.6.1) and returns it trimmed of
// optional white space, with rest the bytes after its comma (nil after the
// last element). Empty elements are skipped: RFC 9110 5.6.1: "a recipient
// MUST parse and ignore a reasonable number of empty list elements". item is
// empty only when no non-empty element is left, so callers loop with
//
//	for len(v) > 0 {
//		var item []byte
//		item, v = http1.NextToken(v)
//		...
//	}
//
// and treat an empty item as the end. Commas inside quoted strings are not
// special: the fields this serves (Connection, Transfer-Encoding, Expect,
// Upgrade, Sec-WebSocket-*) carry tokens, not quoted strings. item and rest
// alias list; NextToken never allocates and is linear in len(list) over a
// whole loop. It is a pure function, safe anywhere.
func NextToken(list []byte) (item, rest []byte) {
	for len(list) > 0 {
		i := bytes.IndexByte(list, ',')
		if i < 0 {
			return TrimOWS(list), nil
		}
		item, list = TrimOWS(list[:i]), list[i+1:]
		if len(item) > 0 {
			return item, list
		}
	}
	return nil, nil
}

// HasToken reports whether any of the field values (one per field line of
// the same name, as Head.Values returns them) has a list element equal to
// token, compared ASCII case-insensitively: RFC 9110 5.3: a recipient "MAY
// combine multiple field lines within a field section that have the same
// field name into one field line ... by appending each subsequent field
// line value to the initial field line value in order, separated by a comma
// ... and optional white space", so a token on any line counts. An empty
// token is never found. It does not allocate.
func HasToken(values [][]byte, token string) bool {
	for _, v := range values {
		if listHas(v, token) {
			return true
		}
	}
	return false
}

// TrimOWS trims HTTP optional white space (RFC 9110 5.6.3: SP and HTAB)
// from both ends of b. The result aliases b.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// listHas reports whether the #list value v has an element equal to token
// (ASCII case-insensitive).
func listHas(v []byte, token string) bool {
	if token == "" {
		return false
	}
	for len(v) > 0 {
		var elem []byte
		elem, v = NextToken(v)
		if EqualFold(elem, token) {
			return true
		}
	}
	return false
}

// fieldsHaveToken reports whether a field named name (case-insensitive) has
// the list element token; all fields of that name are considered.
func fieldsHaveToken(fields []Field, name, token string) bool {
	for i := range fields {
		if EqualFold(fields[i].Name, name) && listHas(fields[i].Value, token) {
			return true
		}
	}
	return false
}

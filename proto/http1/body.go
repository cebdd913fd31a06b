package http1

import (
	"errors"
	"net/url"
)

var errSemicolon = errors.New("http1: invalid semicolon separator in query")

// ParseQuery parses an application/x-www-form-urlencoded body or URL query
// into dst, appending values to the caller's map, with the semantics of
// net/url.ParseQuery: pairs are separated by '&', a pair containing ';' is
// rejected, '+' decodes to a space, and a bad percent-escape is an error.
// Like url.ParseQuery it keeps going after an error and returns the first
// one.
func ParseQuery(dst map[string][]string, query []byte) error {
	var err error
	for len(query) > 0 {
		var pair []byte
		pair, query = cut(query, '&')
		if len(pair) == 0 {
			continue
		}
		if indexByte(pair, ';') >= 0 {
			if err == nil {
				err = errSemicolon
			}
			continue
		}
		k, v := cut(pair, '=')
		key, err1 := url.QueryUnescape(string(k))
		if err1 != nil {
			if err == nil {
				err = err1
			}
			continue
		}
		val, err1 := url.QueryUnescape(string(v))
		if err1 != nil {
			if err == nil {
				err = err1
			}
			continue
		}
		dst[key] = append(dst[key], val)
	}
	return err
}

// ParseForm is ParseQuery under the name used for request bodies.
func ParseForm(dst map[string][]string, body []byte) error { return ParseQuery(dst, body) }

func cut(b []byte, sep byte) (before, after []byte) {
	if i := indexByte(b, sep); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

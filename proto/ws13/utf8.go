package ws13

import "unicode/utf8"

// utf8State is the state of an incremental UTF-8 validator: whether the
// bytes seen so far end on a character boundary, inside a sequence (and
// which bytes may follow), or can no longer be a prefix of valid UTF-8.
//
// The encoding rules are those of RFC 3629 section 4 (no overlong forms, no
// surrogates, nothing above U+10FFFF), the same as unicode/utf8.
type utf8State uint8

const (
	utf8Accept  utf8State = iota // on a character boundary
	utf8Need1                    // one more 80..BF
	utf8Need2                    // two more 80..BF
	utf8Need3                    // three more 80..BF
	utf8AfterE0                  // A0..BF, then one more
	utf8AfterED                  // 80..9F, then one more
	utf8AfterF0                  // 90..BF, then two more
	utf8AfterF4                  // 80..8F, then two more
	utf8Reject                   // invalid; sticky
)

// step advances the validator by one byte.
func (s utf8State) step(b byte) utf8State {
	switch s {
	case utf8Accept:
		switch {
		case b < 0x80:
			return utf8Accept
		case b >= 0xC2 && b <= 0xDF:
			return utf8Need1
		case b == 0xE0:
			return utf8AfterE0
		case b == 0xED:
			return utf8AfterED
		case b >= 0xE1 && b <= 0xEF:
			return utf8Need2
		case b == 0xF0:
			return utf8AfterF0
		case b >= 0xF1 && b <= 0xF3:
			return utf8Need3
		case b == 0xF4:
			return utf8AfterF4
		}
	case utf8Need1, utf8Need2, utf8Need3:
		if b >= 0x80 && b <= 0xBF {
			return s - 1
		}
	case utf8AfterE0:
		if b >= 0xA0 && b <= 0xBF {
			return utf8Need1
		}
	case utf8AfterED:
		if b >= 0x80 && b <= 0x9F {
			return utf8Need1
		}
	case utf8AfterF0:
		if b >= 0x90 && b <= 0xBF {
			return utf8Need2
		}
	case utf8AfterF4:
		if b >= 0x80 && b <= 0x8F {
			return utf8Need2
		}
	}
	return utf8Reject
}

// validateUTF8 continues validation from state s over p. It returns the new
// state and false as soon as the bytes seen so far cannot be a prefix of
// valid UTF-8. The bulk of p goes through utf8.Valid (which has an ASCII
// fast path); only the at most three bytes completing a sequence begun
// before p and the at most three bytes of a sequence left open at its end go
// through the byte-wise state machine.
func validateUTF8(s utf8State, p []byte) (utf8State, bool) {
	i := 0
	for s != utf8Accept && i < len(p) {
		s = s.step(p[i])
		if s == utf8Reject {
			return s, false
		}
		i++
	}
	rest := p[i:]
	if len(rest) == 0 {
		return s, true
	}
	// Cut before the last sequence if it may be open: the last lead byte
	// (>= 0xC0) among the last three bytes. If an ASCII byte comes first,
	// or only continuation bytes are there, the whole rest must be valid
	// on its own.
	cut := len(rest)
	for j := len(rest) - 1; j >= 0 && j >= len(rest)-3; j-- {
		b := rest[j]
		if b < 0x80 {
			break
		}
		if b >= 0xC0 {
			cut = j
			break
		}
	}
	if !utf8.Valid(rest[:cut]) {
		return utf8Reject, false
	}
	for _, b := range rest[cut:] {
		s = s.step(b)
		if s == utf8Reject {
			return s, false
		}
	}
	return s, true
}

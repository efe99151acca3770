package alert

import (
	"unicode"

	"github.com/rivo/uniseg"
)

// Ellipsis marks text that Truncate and TruncateGraphemes cut short.
const Ellipsis = "…"

// Truncate returns s unchanged if it is at most maxBytes long. Otherwise it
// returns a prefix of s followed by Ellipsis, at most maxBytes long in all:
// the prefix ends at the last word boundary (Unicode UAX #29) that leaves room
// for the ellipsis, or, when a single word is longer than that, at the last
// grapheme cluster boundary. Either way no grapheme cluster is split: an
// Arabic letter keeps its harakat, an emoji its skin tone and ZWJ sequence.
// Spaces and punctuation before the ellipsis are trimmed.
//
// When maxBytes is less than len(Ellipsis) and s does not fit, Truncate
// returns "": a cut that cannot be marked is not made. When no whole grapheme
// cluster fits before the ellipsis, the result is Ellipsis alone.
func Truncate(s string, maxBytes int) string {
	if len(s) <= maxBytes {
		return s
	}
	if maxBytes < len(Ellipsis) {
		return ""
	}
	budget := maxBytes - len(Ellipsis)
	return cut(s, func(bytes, _ int) bool { return bytes <= budget }) + Ellipsis
}

// TruncateGraphemes returns s unchanged if it has at most max grapheme
// clusters, the characters a reader counts. Otherwise it cuts s the way
// Truncate does so that the result, Ellipsis included, has at most max
// clusters. For max < 1 it returns "" when s is not empty.
func TruncateGraphemes(s string, max int) string {
	if uniseg.GraphemeClusterCount(s) <= max {
		return s
	}
	if max < 1 {
		return ""
	}
	return cut(s, func(_, graphemes int) bool { return graphemes <= max-1 }) + Ellipsis
}

// cut returns the longest prefix of s, ending at a word boundary if one
// qualifies or else at a grapheme cluster boundary, for which fits(bytes,
// graphemes) holds, with trailing spaces and punctuation trimmed.
func cut(s string, fits func(bytes, graphemes int) bool) string {
	var (
		end, n     int // bytes and clusters consumed
		contentEnd int // end of the last cluster that is not trimmable
		wordEnd    int // contentEnd at the last word boundary that fits
		state      = -1
		rest       = s
	)
	for len(rest) > 0 {
		var cluster string
		var boundaries int
		cluster, rest, boundaries, state = uniseg.StepString(rest, state)
		if !fits(end+len(cluster), n+1) {
			break
		}
		end += len(cluster)
		n++
		if !trimmable(cluster) {
			contentEnd = end
		}
		if boundaries&uniseg.MaskWord != 0 {
			wordEnd = contentEnd
		}
	}
	if wordEnd > 0 {
		return s[:wordEnd]
	}
	return s[:contentEnd]
}

// trimmable reports whether a cluster is only spaces, punctuation or
// invisible format characters, which should not stand before an ellipsis.
func trimmable(cluster string) bool {
	for _, r := range cluster {
		if !unicode.IsSpace(r) && !unicode.IsPunct(r) && !unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

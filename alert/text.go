package alert

import (
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// GraphemeCount is the number of user-perceived characters in s: an Arabic
// letter with its diacritics, or an emoji with its modifiers, counts once.
func GraphemeCount(s string) int { return uniseg.GraphemeClusterCount(s) }

// isText reports whether s is valid UTF-8 without control characters other
// than newlines and tabs.
func isText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Normalize folds a headline to the form used for content dedup, so that two
// editors typing the same story the same way but with different keyboards,
// diacritics or punctuation produce the same string. It applies, in order:
//
//   - Unicode NFC, so composed and decomposed forms agree;
//   - removal of every Arabic combining mark (tashkeel U+064B–U+065F, the
//     superscript alef U+0670, Quranic marks) and of tatweel U+0640;
//   - removal of every format character (Unicode category Cf): the bidi
//     marks U+200E, U+200F, U+061C, U+202A–U+202E, U+2066–U+2069, ZWJ, ZWNJ,
//     U+FEFF and their kin, which are invisible and typed inconsistently;
//   - unification of letter variants: أ إ آ ٱ (and the wavy-hamza alefs)
//     to ا, ى and the Persian ی to ي, ة to ه, the Persian ک to ك;
//   - Arabic-Indic (U+0660–U+0669) and Persian (U+06F0–U+06F9) digits to
//     ASCII, and the Arabic percent sign ٪ to %;
//   - punctuation (Unicode category P, plus modifier symbols such as `)
//     to spaces, except %, which changes a number's meaning;
//   - lower case;
//   - every run of white space and control characters to one space, with
//     none at either end.
//
// Symbols such as $, + or emoji are kept: they distinguish stories. Invalid
// UTF-8 bytes become U+FFFD. The result is idempotent:
// Normalize(Normalize(s)) == Normalize(s).
func Normalize(s string) string {
	out := foldString(norm.NFC.String(strings.ToValidUTF8(s, "\uFFFD")))
	// Removing a mark can leave a base letter next to a combining mark it
	// composes with; composing and folding once more reaches the fixed point.
	if !norm.NFC.IsNormalString(out) {
		out = foldString(norm.NFC.String(out))
	}
	return out
}

// foldString folds every rune of s and collapses the separators.
func foldString(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false // a space is pending: written only before the next kept rune
	for _, r := range s {
		r = fold(r)
		switch {
		case r == drop:
			continue
		case r == ' ':
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// drop is fold's answer for a rune that Normalize removes. U+FFFF is a
// noncharacter, so no text needs it; it is removed from input too.
const drop = '\uFFFF'

// fold maps one rune of NFC text: to drop, to ' ' for a separator, or to its
// normalized form.
func fold(r rune) rune {
	switch {
	case r == drop:
		return drop
	case r == 'ـ': // tatweel only stretches a word
		return drop
	case (r >= 0x0600 && r <= 0x06FF || r >= 0x0750 && r <= 0x08FF) && unicode.Is(unicode.Mn, r):
		return drop // tashkeel and other Arabic marks
	case unicode.Is(unicode.Cf, r):
		return drop // bidi marks, ZWJ, ZWNJ, BOM: invisible
	case r >= '٠' && r <= '٩':
		return '0' + r - '٠'
	case r >= '۰' && r <= '۹':
		return '0' + r - '۰'
	}
	switch r {
	case 'أ', 'إ', 'آ', 'ٱ', 'ٲ', 'ٳ':
		return 'ا'
	case 'ى', 'ی':
		return 'ي'
	case 'ة':
		return 'ه'
	case 'ک':
		return 'ك'
	case '%', '٪':
		return '%'
	}
	switch {
	case unicode.IsSpace(r), unicode.IsControl(r), unicode.IsPunct(r), unicode.Is(unicode.Sk, r):
		return ' '
	}
	return unicode.ToLower(r)
}

// Fingerprint identifies a story for content dedup: the hex SHA-256 of the
// language's base subtag, lower-cased ("ar" for "ar-EG"; DefaultLang when
// lang is empty), a NUL, and the normalized headline.
//
// The language is part of it because desks of different languages are
// different audiences: the same name or number alerted by the English and
// the Arabic desk is two alerts, not a duplicate. Regional variants of one
// language share a fingerprint, since their readers overlap.
func Fingerprint(lang, headline string) string {
	base, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(lang)), "-")
	base, _, _ = strings.Cut(base, "_")
	if base == "" {
		base = DefaultLang
	}
	sum := sha256.Sum256([]byte(base + "\x00" + Normalize(headline)))
	return hex.EncodeToString(sum[:])
}

package alert_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode"

	"github.com/rivo/uniseg"

	"github.com/ajil-news/ajil/alert"
)

type truncateCase struct {
	Name string `json:"name"`
	In   string `json:"in"`
	Max  int    `json:"max"`
	Want string `json:"want"`
}

type truncateCases struct {
	Truncate  []truncateCase `json:"truncate"`  // by bytes
	Graphemes []truncateCase `json:"graphemes"` // by grapheme clusters
	Texts     []string       `json:"texts"`     // swept over every limit
}

func loadTruncateCases(t *testing.T) truncateCases {
	t.Helper()
	b, err := os.ReadFile("testdata/truncate.json")
	if err != nil {
		t.Fatal(err)
	}
	var c truncateCases
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("testdata/truncate.json: %v", err)
	}
	return c
}

func TestTruncate(t *testing.T) {
	for _, tc := range loadTruncateCases(t).Truncate {
		t.Run(tc.Name, func(t *testing.T) {
			got := alert.Truncate(tc.In, tc.Max)
			if got != tc.Want {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tc.In, tc.Max, got, tc.Want)
			}
			checkTruncated(t, tc.In, tc.Max, got)
		})
	}
}

func TestTruncateGraphemes(t *testing.T) {
	for _, tc := range loadTruncateCases(t).Graphemes {
		t.Run(tc.Name, func(t *testing.T) {
			got := alert.TruncateGraphemes(tc.In, tc.Max)
			if got != tc.Want {
				t.Errorf("TruncateGraphemes(%q, %d) = %q, want %q", tc.In, tc.Max, got, tc.Want)
			}
			if n := uniseg.GraphemeClusterCount(got); n > max(tc.Max, 0) {
				t.Errorf("TruncateGraphemes(%q, %d) has %d clusters", tc.In, tc.Max, n)
			}
		})
	}
}

// TestTruncateSweep cuts every text at every limit from below zero to past
// its length.
func TestTruncateSweep(t *testing.T) {
	for _, s := range loadTruncateCases(t).Texts {
		for limit := -1; limit <= len(s)+2; limit++ {
			checkTruncated(t, s, limit, alert.Truncate(s, limit))
		}
		for limit := -1; limit <= uniseg.GraphemeClusterCount(s)+1; limit++ {
			got := alert.TruncateGraphemes(s, limit)
			if n := uniseg.GraphemeClusterCount(got); n > max(limit, 0) {
				t.Errorf("TruncateGraphemes(%q, %d) = %q has %d clusters", s, limit, got, n)
			}
			checkPrefix(t, s, strings.TrimSuffix(got, alert.Ellipsis))
		}
	}
}

// checkTruncated asserts what Truncate promises about got = Truncate(s, limit).
func checkTruncated(t *testing.T, s string, limit int, got string) {
	t.Helper()
	if len(s) <= limit {
		if got != s {
			t.Errorf("Truncate(%q, %d) = %q, want it unchanged", s, limit, got)
		}
		return
	}
	if len(got) > max(limit, 0) {
		t.Errorf("Truncate(%q, %d) = %q, %d bytes, over the limit", s, limit, got, len(got))
	}
	if got == "" {
		if limit >= len(alert.Ellipsis) {
			t.Errorf("Truncate(%q, %d) = \"\", want at least the ellipsis", s, limit)
		}
		return
	}
	prefix, ok := strings.CutSuffix(got, alert.Ellipsis)
	if !ok {
		t.Errorf("Truncate(%q, %d) = %q, does not end with the ellipsis", s, limit, got)
		return
	}
	checkPrefix(t, s, prefix)
	if onlySpaceOrPunct(lastCluster(prefix)) {
		t.Errorf("Truncate(%q, %d) = %q, space or punctuation before the ellipsis", s, limit, got)
	}
}

// checkPrefix asserts that prefix is s cut at a grapheme cluster boundary.
func checkPrefix(t *testing.T, s, prefix string) {
	t.Helper()
	if !strings.HasPrefix(s, prefix) {
		t.Errorf("%q is not a prefix of %q", prefix, s)
		return
	}
	g := uniseg.NewGraphemes(s)
	for g.Next() {
		if _, end := g.Positions(); end == len(prefix) {
			return
		}
	}
	if prefix != "" {
		t.Errorf("%q splits a grapheme cluster of %q", prefix, s)
	}
}

func lastCluster(s string) string {
	var last string
	g := uniseg.NewGraphemes(s)
	for g.Next() {
		last = g.Str()
	}
	return last
}

func onlySpaceOrPunct(cluster string) bool {
	if cluster == "" {
		return false
	}
	for _, r := range cluster {
		if !unicode.IsSpace(r) && !unicode.IsPunct(r) {
			return false
		}
	}
	return true
}

// FuzzTruncate's seeds are in testdata/fuzz/FuzzTruncate.
func FuzzTruncate(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string, limit int) {
		limit %= len(s) + 8 // keep most limits where they cut
		checkTruncated(t, s, limit, alert.Truncate(s, limit))
		got := alert.TruncateGraphemes(s, limit)
		if n := uniseg.GraphemeClusterCount(got); n > max(limit, 0) {
			t.Errorf("TruncateGraphemes(%q, %d) = %q has %d clusters", s, limit, got, n)
		}
		checkPrefix(t, s, strings.TrimSuffix(got, alert.Ellipsis))
	})
}

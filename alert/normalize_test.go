package alert_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ajil-news/ajil/alert"
)

// headlinePair is two headlines, each with its language.
type headlinePair struct {
	Name  string `json:"name"`
	LangA string `json:"lang_a"`
	A     string `json:"a"`
	LangB string `json:"lang_b"`
	B     string `json:"b"`
}

type fingerprintCases struct {
	Same      []headlinePair `json:"same"`      // the same story typed differently
	Different []headlinePair `json:"different"` // different stories
	Normalize []struct {
		In   string `json:"in"`
		Want string `json:"want"`
	} `json:"normalize"`
}

func loadFingerprintCases(t *testing.T) fingerprintCases {
	t.Helper()
	b, err := os.ReadFile("testdata/fingerprint.json")
	if err != nil {
		t.Fatal(err)
	}
	var c fingerprintCases
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("testdata/fingerprint.json: %v", err)
	}
	if len(c.Same) < 15 || len(c.Different) < 5 || len(c.Normalize) == 0 {
		t.Fatalf("testdata/fingerprint.json has too few cases: %d same, %d different", len(c.Same), len(c.Different))
	}
	return c
}

func TestFingerprintSameStory(t *testing.T) {
	for _, tc := range loadFingerprintCases(t).Same {
		t.Run(tc.Name, func(t *testing.T) {
			if tc.A == tc.B && tc.LangA == tc.LangB {
				t.Fatal("case compares a headline with itself")
			}
			fa, fb := alert.Fingerprint(tc.LangA, tc.A), alert.Fingerprint(tc.LangB, tc.B)
			if fa != fb {
				t.Errorf("different fingerprints for one story:\n%s %q -> %q\n%s %q -> %q",
					tc.LangA, tc.A, alert.Normalize(tc.A), tc.LangB, tc.B, alert.Normalize(tc.B))
			}
		})
	}
}

func TestFingerprintDifferentStories(t *testing.T) {
	for _, tc := range loadFingerprintCases(t).Different {
		t.Run(tc.Name, func(t *testing.T) {
			fa, fb := alert.Fingerprint(tc.LangA, tc.A), alert.Fingerprint(tc.LangB, tc.B)
			if fa == fb {
				t.Errorf("one fingerprint for different stories:\n%s %q -> %q\n%s %q -> %q",
					tc.LangA, tc.A, alert.Normalize(tc.A), tc.LangB, tc.B, alert.Normalize(tc.B))
			}
		})
	}
}

func TestFingerprintShape(t *testing.T) {
	fp := alert.Fingerprint("ar", "عاجل")
	if len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Errorf("Fingerprint = %q, want 64 lower-case hex digits", fp)
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range loadFingerprintCases(t).Normalize {
		t.Run(tc.In, func(t *testing.T) {
			if got := alert.Normalize(tc.In); got != tc.Want {
				t.Errorf("Normalize(%q) = %q, want %q", tc.In, got, tc.Want)
			}
		})
	}
}

func TestNormalizeInvalidUTF8(t *testing.T) {
	got := alert.Normalize("bad \xff\xfe byte")
	if !utf8.ValidString(got) {
		t.Fatalf("Normalize returned invalid UTF-8 %q", got)
	}
	if want := "bad \uFFFD byte"; got != want {
		t.Errorf("Normalize = %q, want %q", got, want)
	}
}

func TestNormalizeIdempotent(t *testing.T) {
	c := loadFingerprintCases(t)
	var inputs []string
	for _, p := range append(c.Same, c.Different...) {
		inputs = append(inputs, p.A, p.B)
	}
	for _, n := range c.Normalize {
		inputs = append(inputs, n.In)
	}
	for _, s := range inputs {
		once := alert.Normalize(s)
		if twice := alert.Normalize(once); twice != once {
			t.Errorf("Normalize not idempotent for %q: %q then %q", s, once, twice)
		}
	}
}

// FuzzNormalize's seeds are in testdata/fuzz/FuzzNormalize.
func FuzzNormalize(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		once := alert.Normalize(s)
		if !utf8.ValidString(once) {
			t.Fatalf("Normalize(%q) = %q, invalid UTF-8", s, once)
		}
		if twice := alert.Normalize(once); twice != once {
			t.Fatalf("Normalize not idempotent for %q: %q then %q", s, once, twice)
		}
		if once != strings.TrimSpace(once) || strings.Contains(once, "  ") {
			t.Fatalf("Normalize(%q) = %q, untrimmed or doubled spaces", s, once)
		}
	})
}

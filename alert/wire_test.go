package alert_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
)

// TestWireGolden pins the version 1 encoding: readers deployed today must
// read what writers deployed tomorrow send.
func TestWireGolden(t *testing.T) {
	golden, err := os.ReadFile("testdata/wire/v1.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := alert.Encode(validAlert())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, golden) {
		t.Errorf("Encode changed the wire form:\n got %s\nwant %s", b, golden)
	}
	a, err := alert.Decode(golden)
	if err != nil {
		t.Fatal(err)
	}
	if want := validAlert(); !reflect.DeepEqual(a, want) {
		t.Errorf("Decode(golden) = %+v\nwant %+v", a, want)
	}
}

func TestWireRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		change func(*alert.Alert)
	}{
		{"Arabic with harakat, tatweel, RLM and a flag", func(*alert.Alert) {}},
		{"emoji sequences", func(a *alert.Alert) { a.Headline = "👨\u200d👩\u200d👧 👍🏽 🏳️\u200d🌈 هدف ⚽" }},
		{"characters JSON escapes", func(a *alert.Alert) {
			a.Headline = `"اقتباس" <b> & \ ` + "\u2028\u2029"
			a.Body = "سطر\nسطر\t\r"
		}},
		{"Persian and Arabic-Indic digits", func(a *alert.Alert) { a.Headline, a.Lang = "۱۲۳ ١٢٣ 123", "fa" }},
		{"correction", func(a *alert.Alert) { a.Kind, a.Ref = alert.KindCorrected, "0190d7a0-7c1e-7000-8000-000000000000" }},
		{"retraction without headline", func(a *alert.Alert) { a.Kind, a.Ref, a.Headline = alert.KindRetracted, "orig", "" }},
		{"optional fields empty", func(a *alert.Alert) { a.Body, a.URL, a.Editor = "", "", "" }},
		{"forced normal alert", func(a *alert.Alert) { a.Force, a.Priority, a.TTL = true, alert.PriorityNormal, alert.MaxTTL }},
		{"created in another zone", func(a *alert.Alert) { a.CreatedAt = a.CreatedAt.In(time.FixedZone("AST", 3*3600)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validAlert()
			tt.change(&in)
			b, err := alert.Encode(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := alert.Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if out.Headline != in.Headline || out.Body != in.Body || out.Editor != in.Editor {
				t.Errorf("text changed on the wire:\n got %q %q %q\nwant %q %q %q",
					out.Headline, out.Body, out.Editor, in.Headline, in.Body, in.Editor)
			}
			if !out.CreatedAt.Equal(in.CreatedAt) {
				t.Errorf("CreatedAt = %v, want %v", out.CreatedAt, in.CreatedAt)
			}
			in.CreatedAt = in.CreatedAt.UTC()
			if !reflect.DeepEqual(out, in) {
				t.Errorf("round trip = %+v\nwant %+v", out, in)
			}
		})
	}
}

// TestWireArabicReadable checks that Arabic travels as UTF-8, not \u
// escapes, so an operator reading the stream sees the headline.
func TestWireArabicReadable(t *testing.T) {
	a := validAlert()
	b, err := alert.Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(a.Headline)) {
		t.Errorf("encoded alert does not hold the headline's UTF-8 bytes: %s", b)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		file  string
		want  error
		field string // the field a validation error names, if any
	}{
		{"garbage.json", alert.ErrMalformed, ""},
		{"empty.json", alert.ErrMalformed, ""},
		{"array.json", alert.ErrMalformed, ""},
		{"truncated.json", alert.ErrMalformed, ""},
		{"invalid-utf8.json", alert.ErrMalformed, ""},
		{"unknown-field.json", alert.ErrMalformed, ""},
		{"trailing-data.json", alert.ErrMalformed, ""},
		{"wrong-type.json", alert.ErrMalformed, ""},
		{"version-string.json", alert.ErrMalformed, ""},
		{"version-2.json", alert.ErrUnknownVersion, ""},
		{"no-version.json", alert.ErrUnknownVersion, ""},
		{"empty-headline.json", alert.ErrMalformed, "headline"},
		{"ttl-overflow.json", alert.ErrMalformed, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata/wire/bad", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			a, err := alert.Decode(b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want %v", a, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "decode alert: ") {
				t.Errorf("error %q does not say what failed", err)
			}
			var fields []string
			for _, fe := range alert.FieldErrors(err) {
				fields = append(fields, fe.Field)
			}
			if tt.field != "" && !slices.Contains(fields, tt.field) {
				t.Errorf("error %q names fields %q, want %q", err, fields, tt.field)
			}
		})
	}
}

func TestWireTooLarge(t *testing.T) {
	golden, err := os.ReadFile("testdata/wire/v1.json")
	if err != nil {
		t.Fatal(err)
	}
	// Valid JSON of a valid alert, padded past the limit with white space.
	padded := append(bytes.Repeat([]byte(" "), alert.MaxWireBytes+1-len(golden)), golden...)
	if _, err := alert.Decode(padded); !errors.Is(err, alert.ErrTooLarge) {
		t.Errorf("Decode(%d bytes) = %v, want ErrTooLarge", len(padded), err)
	}
	if _, err := alert.Decode(padded[1:]); err != nil {
		t.Errorf("Decode(%d bytes) = %v, want it accepted at the limit", len(padded)-1, err)
	}

	a := validAlert()
	a.Body = strings.Repeat("ب", alert.MaxWireBytes/2)
	if b, err := alert.Encode(a); !errors.Is(err, alert.ErrTooLarge) {
		t.Errorf("Encode(%d-byte body) = %d bytes, %v; want ErrTooLarge", len(a.Body), len(b), err)
	}
}

// FuzzDecode's seeds are in testdata/fuzz/FuzzDecode: the golden alert and
// every rejected form.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := alert.Decode(b)
		if err != nil {
			if !errors.Is(err, alert.ErrMalformed) && !errors.Is(err, alert.ErrUnknownVersion) && !errors.Is(err, alert.ErrTooLarge) {
				t.Fatalf("Decode error %v matches no sentinel", err)
			}
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid alert: %v", err)
		}
		again, err := alert.Encode(a)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", b, err)
		}
		b2, err := alert.Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v", b, err)
		}
		if !reflect.DeepEqual(a, b2) {
			t.Fatalf("round trip changed the alert:\n%+v\n%+v", a, b2)
		}
	})
}

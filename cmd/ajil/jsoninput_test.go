package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/text/encoding/charmap"

	"github.com/ajil-news/ajil/alert"
)

// An alert file saved in another encoding than UTF-8 is refused, naming
// the field, rather than published with U+FFFD where the Arabic was.
func TestJSONInputNotUTF8(t *testing.T) {
	headline, err := charmap.Windows1256.NewEncoder().String("زلزال بقوة 6 درجات يضرب جنوب تركيا")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "alert.json")
	if err := os.WriteFile(name, []byte(`{"headline":"`+headline+`","topics":["breaking"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = readJSONAlert(name)
	fes := alert.FieldErrors(err)
	if len(fes) != 1 || fes[0].Field != "headline" {
		t.Fatalf("readJSONAlert = %v; want a field error naming headline", err)
	}
	if code := exitCode(err); code != exitInvalid {
		t.Fatalf("exit code %d, want %d", code, exitInvalid)
	}
}

package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/ajil-news/ajil/internal/proctest"
)

// ajilBin is the binary built once for the end-to-end tests.
var ajilBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ajil-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ajilBin, err = proctest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

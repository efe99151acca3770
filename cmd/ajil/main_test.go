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
	bin, remove, err := proctest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ajilBin = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

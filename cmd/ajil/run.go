package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/peterbourgon/ff/v3"

	"github.com/ajil-news/ajil/alert"
)

// Exit codes, documented in the README; scripts branch on them.
const (
	exitOK          = 0
	exitFailure     = 1
	exitInvalid     = 2 // bad input: a flag, a field, a file
	exitUnreachable = 3 // NATS (or the API) could not be reached
	exitSuppressed  = 4 // --wait: the alert was suppressed as a duplicate story
)

// envPrefix is the prefix of the environment variable behind every flag:
// --nats-url reads AJIL_NATS_URL.
const envPrefix = "AJIL"

// command is one `ajil` subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"dev", "run everything in one process, no set-up", runDev},
		{"serve", "run the API and dispatcher against external NATS and Redis", runServe},
		{"publish", "publish a breaking-news alert", runPublish},
		{"correct", "correct a published alert", runCorrect},
		{"retract", "retract a published alert", runRetract},
		{"status", "show an alert's fan-out progress", runStatus},
		{"devices", "register, remove and count devices through the API", runDevices},
		{"endpoints", "manage partner webhook endpoints through the API", runEndpoints},
		{"dlq", "list and replay dead letters", runDLQ},
		{"bench", "measure the fan-out against a bare-client ceiling, in this process", runBench},
	}
}

// Run runs the ajil command line with args (without the program name).
func Run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return Run(ctx, []string{args[1], "-h"})
		}
		usage(os.Stdout)
		return nil
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Println("ajil", version)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	usage(os.Stderr)
	return invalidf("unknown command %q; see the list above", args[0])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `ajil publishes breaking-news alerts (خبر عاجل) to phones and partner sites.

Usage: ajil COMMAND [flags]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
Run 'ajil COMMAND -h' for a command's flags and an example.
Every flag can also be set in the environment: --nats-url is AJIL_NATS_URL.

Example, on a fresh checkout:
  ajil dev &
  ajil publish --headline "زلزال بقوة 6 درجات يضرب جنوب تركيا"
`)
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries the exit code an error should end the process with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func invalidf(format string, a ...any) error {
	return &exitError{exitInvalid, fmt.Errorf(format, a...)}
}

// exitCode reports err on stderr and returns the process's exit code.
func exitCode(err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if fes := alert.FieldErrors(err); len(fes) > 0 {
		fmt.Fprintln(os.Stderr, "ajil: invalid alert:")
		for _, fe := range fes {
			fmt.Fprintf(os.Stderr, "  %s\n", fe)
		}
		return exitInvalid
	}
	fmt.Fprintf(os.Stderr, "ajil: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

// flagSet returns a flag set whose -h prints synopsis, the flags and an
// example, in that order.
func flagSet(name, synopsis, example string) *flag.FlagSet {
	fs := flag.NewFlagSet("ajil "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: ajil %s\n\nFlags (each also read from %s_<NAME>, e.g. %s_NATS_URL):\n", synopsis, envPrefix, envPrefix)
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nExample:\n%s\n", example)
	}
	return fs
}

// parseFlags parses args, then AJIL_* environment variables for flags not
// given. A bad flag exits 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := ff.Parse(fs, args, ff.WithEnvVarPrefix(envPrefix))
	switch {
	case errors.Is(err, flag.ErrHelp):
		return err
	case err != nil:
		return &exitError{exitInvalid, err}
	}
	return nil
}

// setFlags returns the names of the flags given on the command line or in
// the environment.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// listFlag is a repeatable flag that also takes comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/schollz/progressbar/v3"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/publisher"
)

// defaultWaitTimeout bounds `publish --wait`: a breaking alert that has not
// reached everyone in ten minutes needs an operator, not a longer wait.
const defaultWaitTimeout = 10 * time.Minute

func runStatus(ctx context.Context, args []string) error {
	fs := flagSet("status", "status ID [flags]", `  ajil status 0192f1e4-...
  ajil status 0192f1e4-... --json`)
	var nf natsFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	id, rest := splitID(args)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if id == "" {
		return invalidf("status: missing the alert ID: ajil status ID")
	}
	nc, _, err := nf.connect("ajil status")
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := publisher.QueryStatus(ctx, nc, id)
	switch {
	case errors.Is(err, publisher.ErrNoDispatcher):
		return &exitError{exitUnreachable, fmt.Errorf("%w on %s; is `ajil dev` or `ajil serve` running?", err, nf.url)}
	case errors.Is(err, publisher.ErrUnknownAlert):
		return &exitError{exitFailure, fmt.Errorf("alert %s: no dispatcher has seen it; check the ID, or wait a moment after publishing", id)}
	case err != nil:
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, st)
	}
	printStatus(os.Stdout, st)
	return nil
}

func printStatus(w io.Writer, st alert.Status) {
	fmt.Fprintf(w, "alert %s (%s): %s\n", st.ID, st.Kind, st.State)
	if st.DuplicateOf != "" {
		fmt.Fprintf(w, "  duplicate of %s: the same story was already sent; publish with --force to send anyway\n", st.DuplicateOf)
	}
	fmt.Fprintf(w, "  devices %d  sent %d  failed %d  pruned %d  work items %d/%d\n",
		st.Devices, st.Sent, st.Failed, st.Pruned, st.ItemsDone, st.Items)
	if st.Webhooks > 0 {
		fmt.Fprintf(w, "  webhooks %d  delivered %d\n", st.Webhooks, st.Delivered)
	}
	if !st.DoneAt.IsZero() && !st.CreatedAt.IsZero() {
		fmt.Fprintf(w, "  done in %s\n", st.DoneAt.Sub(st.CreatedAt).Round(time.Millisecond))
	}
}

// wait follows the alert's fan-out with a progress bar until it is final.
// A suppressed duplicate exits 4.
func wait(ctx context.Context, nc *nats.Conn, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription("planning"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
	)
	st, err := publisher.Follow(ctx, nc, id, publisher.DefaultPollInterval, func(st alert.Status) {
		if st.Devices > 0 && bar.GetMax64() != st.Devices {
			bar.ChangeMax64(st.Devices)
		}
		bar.Describe(st.State)
		bar.Set64(st.Sent + st.Failed)
	})
	bar.Finish()
	fmt.Fprintln(os.Stderr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("alert %s not done after %s (state %q); follow it with `ajil status %s`", id, timeout, st.State, id)
		}
		return err
	}
	printStatus(os.Stdout, st)
	if st.State == "suppressed" {
		return &exitError{exitSuppressed, fmt.Errorf("alert %s was suppressed: duplicate of %s", id, st.DuplicateOf)}
	}
	return nil
}

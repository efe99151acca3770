package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ajil-news/ajil/dispatcher"
)

// defaultDLQList bounds `ajil dlq list`: a screenful to act on.
const defaultDLQList = 100

func runDLQ(ctx context.Context, args []string) error {
	return runGroup(ctx, "dlq", []subcommand{
		{"list", "list dead letters with the reason each was given up on", dlqList},
		{"replay", "put dead letters back on their way", dlqReplay},
	}, args, stdStreams())
}

func dlqList(ctx context.Context, args []string, s streams) error {
	fs := flagSet("dlq list", "dlq list [flags]", `  ajil dlq list
  ajil dlq list --json`)
	fs.SetOutput(s.err)
	var nf natsFlags
	nf.register(fs)
	limit := fs.Int("n", defaultDLQList, "list at most this many, oldest first")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	nc, js, err := nf.connect("ajil dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	dead, err := dispatcher.DeadLetters(ctx, js, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(s.out, dead)
	}
	if len(dead) == 0 {
		fmt.Fprintln(s.out, "No dead letters.")
		return nil
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tFROM\tREASON")
	for _, d := range dead {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", d.Seq, d.Time.Local().Format(time.DateTime), d.Subject, d.Reason)
	}
	tw.Flush()
	fmt.Fprintln(s.out, "\nReplay one with: ajil dlq replay SEQ (or --all)")
	return nil
}

func dlqReplay(ctx context.Context, args []string, s streams) error {
	fs := flagSet("dlq replay", "dlq replay SEQ... | --all [flags]", `  ajil dlq replay 17 18
  ajil dlq replay --all`)
	fs.SetOutput(s.err)
	var nf natsFlags
	nf.register(fs)
	all := fs.Bool("all", false, "replay every dead letter")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 && !*all {
		return invalidf("dlq replay: give sequence numbers from `ajil dlq list`, or --all")
	}
	var seqs []uint64
	for _, p := range pos {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return invalidf("dlq replay: %q is not a sequence number from `ajil dlq list`", p)
		}
		seqs = append(seqs, n)
	}
	nc, js, err := nf.connect("ajil dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	if *all {
		dead, err := dispatcher.DeadLetters(ctx, js, int(^uint(0)>>1))
		if err != nil {
			return err
		}
		for _, d := range dead {
			seqs = append(seqs, d.Seq)
		}
	}
	for _, seq := range seqs {
		if err := dispatcher.ReplayDead(ctx, js, seq); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "Replayed dead letter %d.\n", seq)
	}
	return nil
}

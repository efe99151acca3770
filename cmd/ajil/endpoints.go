package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/subscribers"
)

func runEndpoints(ctx context.Context, args []string) error {
	return endpoints(ctx, args, stdStreams())
}

func endpoints(ctx context.Context, args []string, s streams) error {
	return runGroup(ctx, "endpoints", []subcommand{
		{"add", "register a partner's webhook endpoint and show its secret", endpointsAdd},
		{"list", "list the endpoints", endpointsList},
		{"show", "show one endpoint", endpointsShow},
		{"rm", "delete an endpoint", endpointsRm},
		{"rotate", "give an endpoint a new secret; the old one signs for 24h more", endpointsRotate},
		{"enable", "resume deliveries to a disabled endpoint", endpointsEnable},
		{"attempts", "show the last delivery attempts to an endpoint", endpointsAttempts},
		{"replay", "send an endpoint every alert since a time again", endpointsReplay},
	}, args, s)
}

func endpointsAdd(ctx context.Context, args []string, s streams) error {
	var af apiFlags
	fs := apiFlagSet(s, "endpoints add", "endpoints add URL [flags]", `  ajil endpoints add https://partner.example/hooks/ajil \
      --description "موقع الشريك — الأخبار العاجلة" --kind published --topic breaking --lang ar`, &af)
	var kinds, topics, langs listFlag
	description := fs.String("description", "", "who the endpoint is for, in any language")
	fs.Var(&kinds, "kind", "deliver only alerts of this `kind` (published, corrected, retracted); repeatable; default all")
	fs.Var(&topics, "topic", "deliver only alerts with this `topic`; repeatable; default all")
	fs.Var(&langs, "lang", "deliver only alerts in this `language`; repeatable; default all")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return invalidf("endpoints add: give one URL: ajil endpoints add https://partner.example/hooks/ajil")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	req := subscribers.EndpointRequest{URL: pos[0], Description: *description, Topics: topics, Langs: langs}
	for _, k := range kinds {
		req.Kinds = append(req.Kinds, alert.Kind(k))
	}
	var e subscribers.EndpointInfo
	ans, err := c.call(ctx, http.MethodPost, "/v1/endpoints", req, &e)
	if err != nil {
		return err
	}
	if af.asJSON {
		return printRaw(s.out, ans)
	}
	fmt.Fprintf(s.out, "Created endpoint %s.\n\n", e.ID)
	printEndpoint(s.out, e)
	fmt.Fprintf(s.out, "\nSigning secret, shown only this once:\n\n  %s\n\n", e.Secret)
	fmt.Fprintln(s.out, "Give it to the partner now and have them store it in their secret manager; they verify")
	fmt.Fprintln(s.out, "each delivery with it using any Standard Webhooks library. Lost, it can only be rotated.")
	return nil
}

func endpointsList(ctx context.Context, args []string, s streams) error {
	var af apiFlags
	fs := apiFlagSet(s, "endpoints list", "endpoints list [flags]", `  ajil endpoints list
  ajil endpoints list --json`, &af)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return invalidf("endpoints list: unexpected argument %q; to see one endpoint use ajil endpoints show ID", pos[0])
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var list subscribers.EndpointList
	ans, err := c.call(ctx, http.MethodGet, "/v1/endpoints", nil, &list)
	if err != nil {
		return err
	}
	if af.asJSON {
		return printRaw(s.out, ans)
	}
	if len(list.Endpoints) == 0 {
		fmt.Fprintln(s.out, "No endpoints yet; add one with: ajil endpoints add URL")
		return nil
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tURL\tKINDS\tTOPICS\tLANGS\tDESCRIPTION")
	for _, e := range list.Endpoints {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.State, e.URL, orAll(e.Kinds), orAll(e.Topics), orAll(e.Langs), e.Description)
	}
	return tw.Flush()
}

// endpointByID runs one call on the endpoint named by the only positional
// argument and prints its answer as JSON, or hands it to human.
func endpointByID(ctx context.Context, args []string, s streams, name, example, method, suffix string,
	human func(w io.Writer, e subscribers.EndpointInfo)) error {
	var af apiFlags
	fs := apiFlagSet(s, "endpoints "+name, "endpoints "+name+" ID [flags]", example, &af)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return invalidf("endpoints %s: give one endpoint ID (see ajil endpoints list): ajil endpoints %s ep_...", name, name)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var e subscribers.EndpointInfo
	var out any = &e
	if method == http.MethodDelete {
		out = nil // 204, no body
	}
	ans, err := c.call(ctx, method, "/v1/endpoints/"+url.PathEscape(pos[0])+suffix, nil, out)
	if err != nil {
		return err
	}
	if af.asJSON {
		return printRaw(s.out, ans)
	}
	e.ID = pos[0]
	human(s.out, e)
	return nil
}

func endpointsShow(ctx context.Context, args []string, s streams) error {
	return endpointByID(ctx, args, s, "show", `  ajil endpoints show ep_k3j5x7m2q9w4r8t6
  ajil endpoints show ep_k3j5x7m2q9w4r8t6 --json`, http.MethodGet, "", printEndpoint)
}

func endpointsRm(ctx context.Context, args []string, s streams) error {
	return endpointByID(ctx, args, s, "rm", `  ajil endpoints rm ep_k3j5x7m2q9w4r8t6`, http.MethodDelete, "",
		func(w io.Writer, e subscribers.EndpointInfo) { fmt.Fprintf(w, "Deleted endpoint %s.\n", e.ID) })
}

func endpointsEnable(ctx context.Context, args []string, s streams) error {
	return endpointByID(ctx, args, s, "enable", `  ajil endpoints enable ep_k3j5x7m2q9w4r8t6`, http.MethodPost, "/enable",
		func(w io.Writer, e subscribers.EndpointInfo) {
			fmt.Fprintf(w, "Enabled endpoint %s; deliveries to %s resume with the next alert.\n", e.ID, e.URL)
		})
}

func endpointsRotate(ctx context.Context, args []string, s streams) error {
	return endpointByID(ctx, args, s, "rotate", `  ajil endpoints rotate ep_k3j5x7m2q9w4r8t6`, http.MethodPost, "/rotate-secret",
		func(w io.Writer, e subscribers.EndpointInfo) {
			fmt.Fprintf(w, "New signing secret for endpoint %s, shown only this once:\n\n  %s\n\n", e.ID, e.Secret)
			fmt.Fprintln(w, "Give it to the partner now and have them store it in their secret manager.")
			if !e.PreviousSecretExpiresAt.IsZero() {
				fmt.Fprintf(w, "Deliveries carry signatures with both secrets until %s; the partner must switch before then.\n", humanTime(e.PreviousSecretExpiresAt))
			}
		})
}

// printEndpoint prints one endpoint as a two-column table; never a secret.
func printEndpoint(w io.Writer, e subscribers.EndpointInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	state := string(e.State)
	if e.State == subscribers.EndpointDisabled {
		state = fmt.Sprintf("disabled since %s: %s (resume with: ajil endpoints enable %s)", humanTime(e.DisabledAt), e.DisabledReason, e.ID)
	}
	fmt.Fprintf(tw, "ID\t%s\n", e.ID)
	fmt.Fprintf(tw, "URL\t%s\n", e.URL)
	fmt.Fprintf(tw, "State\t%s\n", state)
	fmt.Fprintf(tw, "Kinds\t%s\n", orAll(e.Kinds))
	fmt.Fprintf(tw, "Topics\t%s\n", orAll(e.Topics))
	fmt.Fprintf(tw, "Languages\t%s\n", orAll(e.Langs))
	if e.Description != "" {
		fmt.Fprintf(tw, "Description\t%s\n", e.Description)
	}
	fmt.Fprintf(tw, "Created\t%s\n", humanTime(e.CreatedAt))
	if !e.PreviousSecretExpiresAt.IsZero() {
		fmt.Fprintf(tw, "Previous secret\tstill signs until %s\n", humanTime(e.PreviousSecretExpiresAt))
	}
	tw.Flush()
}

func endpointsAttempts(ctx context.Context, args []string, s streams) error {
	var af apiFlags
	fs := apiFlagSet(s, "endpoints attempts", "endpoints attempts ID [flags]", `  ajil endpoints attempts ep_k3j5x7m2q9w4r8t6
  ajil endpoints attempts ep_k3j5x7m2q9w4r8t6 -n 50 --json`, &af)
	n := fs.Int("n", subscribers.DefaultAttempts, "how many attempts, newest first")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return invalidf("endpoints attempts: give one endpoint ID: ajil endpoints attempts ep_...")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var list subscribers.AttemptList
	ans, err := c.call(ctx, http.MethodGet, "/v1/endpoints/"+url.PathEscape(pos[0])+"/attempts?n="+strconv.Itoa(*n), nil, &list)
	if err != nil {
		return err
	}
	if af.asJSON {
		return printRaw(s.out, ans)
	}
	if len(list.Attempts) == 0 {
		fmt.Fprintf(s.out, "No delivery attempts to %s yet.\n", pos[0])
		return nil
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tALERT\tATTEMPT\tOUTCOME\tSTATUS\tLATENCY\tERROR")
	for _, at := range list.Attempts {
		status := "-"
		if at.Status != 0 {
			status = strconv.Itoa(at.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", at.At.Local().Format(time.DateTime), at.AlertID, at.Attempt,
			at.Outcome, status, at.Latency.Round(time.Millisecond), at.Error)
	}
	return tw.Flush()
}

func endpointsReplay(ctx context.Context, args []string, s streams) error {
	fs := flagSet("endpoints replay", "endpoints replay ID --since TIME [flags]", `  ajil endpoints replay ep_k3j5x7m2q9w4r8t6 --since 2026-11-29T08:00:00Z
  ajil endpoints replay ep_k3j5x7m2q9w4r8t6 --since 6h`)
	fs.SetOutput(s.err)
	var nf natsFlags
	nf.register(fs)
	since := fs.String("since", "", "an RFC 3339 `time`, or a duration back from now such as 6h")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return invalidf("endpoints replay: give one endpoint ID: ajil endpoints replay ep_... --since 6h")
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		return err
	}
	nc, js, err := nf.connect("ajil endpoints replay")
	if err != nil {
		return err
	}
	defer nc.Close()
	n, err := dispatcher.ReplayEndpoint(ctx, js, pos[0], from)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "Queued %d alerts since %s for %s; each goes out with its original webhook-id unless the endpoint's filters exclude it.\n",
		n, from.Local().Format(time.DateTime), pos[0])
	return nil
}

// parseSince reads --since: an RFC 3339 time or a duration back from now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, invalidf("--since is required: an RFC 3339 time such as 2026-11-29T08:00:00Z, or a duration such as 6h")
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, invalidf("--since %q: use an RFC 3339 time such as 2026-11-29T08:00:00Z, or a duration such as 6h", v)
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/ajil-news/ajil/alert"
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

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ajil-news/ajil/subscribers"
)

const (
	// defaultAPIURL is where `ajil dev` serves the API.
	defaultAPIURL = "http://" + defaultAPIListen
	// apiTimeout bounds one API call: each is a single Redis operation
	// behind the server, so an answer that takes longer will not come.
	apiTimeout = 10 * time.Second
	// maxAPIResponse bounds what is read of a response; the largest, a
	// list of endpoints, is far smaller.
	maxAPIResponse = 8 << 20
)

// streams are where a command writes; tests pass buffers.
type streams struct {
	out, err io.Writer
}

// subcommand is one verb of a command group such as `ajil devices`.
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, s streams) error
}

// runGroup dispatches args to one of subs; without one it lists them.
func runGroup(ctx context.Context, group string, subs []subcommand, args []string, s streams) error {
	if len(args) > 0 {
		for _, c := range subs {
			if c.name == args[0] {
				return c.run(ctx, args[1:], s)
			}
		}
	}
	w := s.err
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		w = s.out
	}
	fmt.Fprintf(w, "Usage: ajil %s COMMAND [flags]\n\nCommands:\n", group)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range subs {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun 'ajil %s COMMAND -h' for its flags and an example.\n", group)
	switch {
	case len(args) == 0:
		return invalidf("%s: missing the command; see the list above", group)
	case w == s.out:
		return nil
	}
	return invalidf("%s: unknown command %q; see the list above", group, args[0])
}

// apiFlags are the flags of every command that calls the HTTP API.
type apiFlags struct {
	url    string
	key    string
	asJSON bool
}

func (f *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "api", defaultAPIURL, "base `URL` of the Ajil API")
	fs.StringVar(&f.key, "key", "", "API `key`; `ajil dev` prints an admin key")
	fs.BoolVar(&f.asJSON, "json", false, "print the API's JSON answer instead of a table")
}

// parseArgs parses flags wherever they stand among the positional
// arguments, so that `ajil endpoints show ID --json` and `ajil endpoints
// show --json ID` both work, and returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// apiClient calls the Ajil HTTP API with one key.
type apiClient struct {
	base string
	key  string
	hc   *http.Client
}

func (f *apiFlags) client() (*apiClient, error) {
	if f.key == "" {
		return nil, invalidf("--key is missing: pass an API key with --key or AJIL_KEY (`ajil dev` prints one)")
	}
	u, err := url.Parse(f.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalidf("--api %q is not an http(s) URL; e.g. %s", f.url, defaultAPIURL)
	}
	return &apiClient{base: strings.TrimRight(f.url, "/"), key: f.key, hc: &http.Client{Timeout: apiTimeout}}, nil
}

// answer is a successful API answer.
type answer struct {
	status int
	body   []byte // for --json
}

// call sends in (if not nil) as JSON and decodes a successful answer into
// out (if not nil). API errors exit 2 for bad input (400, 413) and 1
// otherwise; an API that cannot be reached exits 3.
func (c *apiClient) call(ctx context.Context, method, path string, in, out any) (answer, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return answer{}, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return answer{}, invalidf("--api %s: %v", c.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return answer{}, ctx.Err()
		}
		return answer{}, &exitError{exitUnreachable, fmt.Errorf(
			"cannot reach the Ajil API at %s: %w\n  start Ajil locally with `ajil dev`, or point --api (AJIL_API) at your server", c.base, err)}
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxAPIResponse))
	if err != nil {
		return answer{}, fmt.Errorf("read the API's answer: %w", err)
	}
	if res.StatusCode >= 300 {
		return answer{}, apiFailure(res.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return answer{}, fmt.Errorf("unexpected answer from %s%s: %w", c.base, path, err)
		}
	}
	return answer{res.StatusCode, data}, nil
}

// apiFailure turns an error answer into an error that says what to fix.
func apiFailure(status int, data []byte) error {
	var eb subscribers.ErrorBody
	var err error
	switch {
	case json.Unmarshal(data, &eb) != nil || eb.Error.Code == "":
		err = fmt.Errorf("the API answered %d %s; is --api pointing at Ajil?", status, http.StatusText(status))
	case eb.Error.Field != "":
		err = fmt.Errorf("invalid %s: %s", eb.Error.Field, eb.Error.Message)
	case eb.Error.Code == subscribers.CodeUnauthenticated:
		err = errors.New("the API does not know this key; check --key (AJIL_KEY)")
	default:
		err = errors.New(eb.Error.Message)
	}
	code := exitFailure
	if status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge {
		code = exitInvalid
	}
	return &exitError{code, err}
}

// printRaw prints an API answer as indented JSON, for --json.
func printRaw(w io.Writer, a answer) error {
	if len(a.body) == 0 {
		return nil
	}
	return printJSON(w, json.RawMessage(a.body))
}

// stdStreams are the process's own.
func stdStreams() streams { return streams{out: os.Stdout, err: os.Stderr} }

// apiFlagSet is flagSet writing its help to s.
func apiFlagSet(s streams, name, synopsis, example string, f *apiFlags) *flag.FlagSet {
	fs := flagSet(name, synopsis, example)
	fs.SetOutput(s.err)
	f.register(fs)
	return fs
}

// humanTime is a time for a table: local, to the minute.
func humanTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04 MST")
}

// orAll shows an empty filter as "all".
func orAll[T ~string](vs []T) string {
	if len(vs) == 0 {
		return "all"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ",")
}

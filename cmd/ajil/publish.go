package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/publisher"
)

// maxJSONInput bounds --json input; an alert is far smaller.
const maxJSONInput = 1 << 20

// alertFlags are the alert fields an editor can set on the command line.
type alertFlags struct {
	headline, body, url, lang, priority, id, editor string
	topics                                          listFlag
	ttl                                             time.Duration
	force                                           bool
}

func (f *alertFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.headline, "headline", "", "the `text` readers see on their lock screen")
	fs.StringVar(&f.body, "body", "", "first paragraph, for the app and partner sites")
	fs.StringVar(&f.url, "url", "", "the article's http(s) `URL`")
	fs.Var(&f.topics, "topic", "audience `topic`, repeatable or comma separated (default breaking)")
	fs.StringVar(&f.lang, "lang", "", "language `tag` of the text (default ar)")
	fs.StringVar(&f.priority, "priority", "", "breaking or normal (default breaking)")
	fs.DurationVar(&f.ttl, "ttl", 0, "stop delivering after this `duration` (default 1h for breaking, 24h for normal)")
	fs.StringVar(&f.id, "id", "", "idempotency `key`: publishing the same ID twice sends once (default generated)")
	fs.StringVar(&f.editor, "editor", os.Getenv("USER"), "who publishes, for the audit trail")
	fs.BoolVar(&f.force, "force", false, "send even if the same story was sent in the last 30 minutes")
}

// apply sets on a the fields whose flags were given.
func (f *alertFlags) apply(a *alert.Alert, set map[string]bool) {
	if set["headline"] {
		a.Headline = f.headline
	}
	if set["body"] {
		a.Body = f.body
	}
	if set["url"] {
		a.URL = f.url
	}
	if set["topic"] {
		a.Topics = f.topics
	}
	if set["lang"] {
		a.Lang = f.lang
	}
	if set["priority"] {
		a.Priority = alert.Priority(f.priority)
	}
	if set["ttl"] {
		a.TTL = f.ttl
	}
	if set["id"] {
		a.ID = f.id
	}
	if set["editor"] || a.Editor == "" {
		a.Editor = f.editor
	}
	if f.force {
		a.Force = true
	}
}

// sendFlags are the flags of every command that sends an alert.
type sendFlags struct {
	nats        natsFlags
	dryRun      bool
	wait        bool
	waitTimeout time.Duration
}

func (f *sendFlags) register(fs *flag.FlagSet) {
	f.nats.register(fs)
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the alert and the exact payloads with their sizes; publish nothing")
	fs.BoolVar(&f.wait, "wait", false, "show the fan-out's progress until it is done; exit 4 if suppressed as a duplicate")
	fs.DurationVar(&f.waitTimeout, "wait-timeout", defaultWaitTimeout, "give up waiting after this `duration`")
}

func runPublish(ctx context.Context, args []string) error {
	fs := flagSet("publish", "publish --headline TEXT [flags]", `  ajil publish --headline "زلزال بقوة 6 درجات يضرب جنوب تركيا" \
      --url https://example.com/news/1 --topic breaking --topic turkey
  ajil publish --article page.html --dry-run
  echo '{"headline":"..."}' | ajil publish --json -`)
	var af alertFlags
	var sf sendFlags
	var jsonFile, articleFile string
	af.register(fs)
	sf.register(fs)
	fs.StringVar(&jsonFile, "json", "", "read the alert from a JSON `file` (- for stdin); flags override its fields")
	fs.StringVar(&articleFile, "article", "", "take headline, body and URL from an article page (`file`, HTML or text)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return invalidf("unexpected argument %q; quote the headline: --headline \"...\"", fs.Arg(0))
	}
	var a alert.Alert
	switch {
	case jsonFile != "" && articleFile != "":
		return invalidf("--json and --article both given; use one")
	case jsonFile != "":
		j, err := readJSONAlert(jsonFile)
		if err != nil {
			return err
		}
		a = j
	case articleFile != "":
		art, err := readArticle(articleFile)
		if err != nil {
			return err
		}
		a = alert.Alert{Headline: art.Headline, Body: art.Body, URL: art.URL}
	}
	af.apply(&a, setFlags(fs))
	a.Kind = alert.KindPublished
	return send(ctx, sf, a.WithDefaults(time.Now()))
}

func runCorrect(ctx context.Context, args []string) error {
	return change(ctx, args, alert.KindCorrected, "correct", "correct ID --headline TEXT [flags]",
		`  ajil correct 0192f1e4-... --headline "ارتفاع حصيلة ضحايا الزلزال إلى 12"`)
}

func runRetract(ctx context.Context, args []string) error {
	return change(ctx, args, alert.KindRetracted, "retract", "retract ID [flags]", `  ajil retract 0192f1e4-...`)
}

// change publishes a correction or retraction of the alert whose ID leads
// args.
func change(ctx context.Context, args []string, kind alert.Kind, name, synopsis, example string) error {
	fs := flagSet(name, synopsis, example)
	var af alertFlags
	var sf sendFlags
	af.register(fs)
	sf.register(fs)
	ref, rest := splitID(args)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if ref == "" {
		return invalidf("%s: missing the ID of the alert to %s: ajil %s", name, name, synopsis)
	}
	a := alert.Alert{Kind: kind, Ref: ref}
	af.apply(&a, setFlags(fs))
	return send(ctx, sf, a.WithDefaults(time.Now()))
}

// splitID takes the leading positional ID off args, so that `ajil correct ID
// --headline ...` reads naturally.
func splitID(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	for i, a := range args {
		if i > 0 && !strings.HasPrefix(a, "-") && !strings.HasPrefix(args[i-1], "-") {
			return a, append(args[:i:i], args[i+1:]...)
		}
	}
	return "", args
}

// send validates a, then prints it (--dry-run) or publishes it.
func send(ctx context.Context, sf sendFlags, a alert.Alert) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if sf.dryRun {
		return dryRun(os.Stdout, a)
	}
	nc, js, err := sf.nats.connect("ajil publish")
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := publisher.New(js, publisher.Config{}).Publish(ctx, a)
	switch {
	case errors.Is(err, publisher.ErrNoStream):
		return &exitError{exitUnreachable, fmt.Errorf("%w on %s: start Ajil there (`ajil dev` or `ajil serve`) first", err, sf.nats.url)}
	case err != nil:
		return err
	}
	if r.Duplicate {
		fmt.Printf("alert %s was already published (stream %s, seq %d); nothing new sent\n", r.ID, r.Stream, r.Sequence)
	} else {
		what := "alert " + r.ID
		switch a.Kind {
		case alert.KindCorrected:
			what = "correction " + r.ID + " of " + a.Ref
		case alert.KindRetracted:
			what = "retraction " + r.ID + " of " + a.Ref
		}
		fmt.Printf("published %s (stream %s, seq %d)\n", what, r.Stream, r.Sequence)
	}
	if sf.wait {
		return wait(ctx, nc, r.ID, sf.waitTimeout)
	}
	return nil
}

// dryRun prints the alert and exactly what would be sent, with byte
// sizes: the stream message, one device's FCM request and the webhook body.
func dryRun(w io.Writer, a alert.Alert) error {
	wire, err := alert.Encode(a)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "alert (%d bytes on the stream, subject %s):\n", len(wire), a.Subject())
	if err := printJSON(w, json.RawMessage(wire)); err != nil {
		return err
	}
	push, err := json.Marshal(map[string]any{"message": fcm.Message(a, "DEVICE_TOKEN")})
	if err != nil {
		return fmt.Errorf("encode fcm message: %w", err)
	}
	fmt.Fprintf(w, "\nFCM v1 request for one device (%d bytes, limit %d):\n", len(push), fcm.MaxMessageBytes)
	if err := printJSON(w, json.RawMessage(push)); err != nil {
		return err
	}
	hook, err := webhook.Payload(a, a.CreatedAt)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwebhook body (%d bytes, limit %d), signed per Standard Webhooks:\n", len(hook), webhook.MaxPayloadBytes)
	return printJSON(w, json.RawMessage(hook))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonAlert is the editor-facing JSON form of an alert for --json: the
// fields an editor sets, with the TTL as a duration such as "1h".
type jsonAlert struct {
	ID       string   `json:"id"`
	Headline string   `json:"headline"`
	Body     string   `json:"body"`
	URL      string   `json:"url"`
	Lang     string   `json:"lang"`
	Topics   []string `json:"topics"`
	Priority string   `json:"priority"`
	TTL      string   `json:"ttl"`
	Editor   string   `json:"editor"`
}

func readJSONAlert(name string) (alert.Alert, error) {
	r := io.Reader(os.Stdin)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return alert.Alert{}, invalidf("--json: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxJSONInput))
	if err != nil {
		return alert.Alert{}, invalidf("--json %s: %v", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j jsonAlert
	if err := dec.Decode(&j); err != nil {
		return alert.Alert{}, invalidf("--json %s: %v; expected an object such as {\"headline\":\"...\",\"topics\":[\"breaking\"],\"ttl\":\"1h\"}", name, err)
	}
	if !utf8.Valid(b) {
		// encoding/json would turn the bytes into U+FFFD, and every phone
		// would show them.
		return alert.Alert{}, &alert.FieldError{Field: notUTF8Member(b), Problem: "is not UTF-8 text",
			Fix: "save the --json file as UTF-8; it looks like another encoding, such as Windows-1256"}
	}
	a := alert.Alert{ID: j.ID, Headline: j.Headline, Body: j.Body, URL: j.URL, Lang: j.Lang,
		Topics: j.Topics, Priority: alert.Priority(j.Priority), Editor: j.Editor}
	if j.TTL != "" {
		d, err := time.ParseDuration(j.TTL)
		if err != nil {
			return alert.Alert{}, &alert.FieldError{Field: "ttl", Problem: fmt.Sprintf("%q is not a duration", j.TTL), Fix: "use a duration such as 30m, 1h or 24h"}
		}
		a.TTL = d
	}
	return a, nil
}

// notUTF8Member names the first member of a JSON object whose value is not
// UTF-8, or says "--json" when it is a name that is not.
func notUTF8Member(b []byte) string {
	var raw map[string]json.RawMessage
	json.Unmarshal(b, &raw)
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if !utf8.Valid(raw[k]) {
			return k
		}
	}
	return "--json"
}

func readArticle(name string) (publisher.Article, error) {
	f, err := os.Open(name)
	if err != nil {
		return publisher.Article{}, invalidf("--article: %v", err)
	}
	defer f.Close()
	art, err := publisher.ParseArticle(f)
	if err != nil {
		return publisher.Article{}, &exitError{exitInvalid, fmt.Errorf("--article %s: %w", name, err)}
	}
	return art, nil
}

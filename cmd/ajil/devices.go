package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/ajil-news/ajil/subscribers"
)

func runDevices(ctx context.Context, args []string) error {
	return devices(ctx, args, stdStreams())
}

func devices(ctx context.Context, args []string, s streams) error {
	return runGroup(ctx, "devices", []subcommand{
		{"add", "register a device, or update its preferences", devicesAdd},
		{"rm", "unregister a device", devicesRm},
		{"count", "count the devices following a topic in a language", devicesCount},
	}, args, s)
}

func devicesAdd(ctx context.Context, args []string, s streams) error {
	var af apiFlags
	fs := apiFlagSet(s, "devices add", "devices add TOKEN --platform android|ios|web [flags]", `  ajil devices add eY3k:APA91bH... --platform android --lang ar --topic breaking --topic sports --region SA
  AJIL_KEY=ajil_... ajil devices add eY3k:APA91bH... --platform ios --json`, &af)
	var (
		platform = fs.String("platform", "", "android, ios or web")
		lang     = fs.String("lang", "", "the reader's language `tag` (default ar)")
		region   = fs.String("region", "", "the reader's region `code`, e.g. SA")
		topics   listFlag
	)
	fs.Var(&topics, "topic", "`topic` to follow, repeatable or comma separated (default breaking)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return invalidf("devices add: give one device token: ajil devices add TOKEN --platform android")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var d subscribers.Device
	ans, err := c.call(ctx, http.MethodPut, "/v1/devices/"+url.PathEscape(pos[0]),
		subscribers.DeviceRequest{Platform: subscribers.Platform(*platform), Lang: *lang, Topics: topics, Region: *region}, &d)
	if err != nil {
		return err
	}
	if af.asJSON {
		return printRaw(s.out, ans)
	}
	if ans.status == http.StatusCreated {
		fmt.Fprintln(s.out, "Registered a new device.")
	} else {
		fmt.Fprintln(s.out, "Updated the device's preferences.")
	}
	printDevice(s.out, d)
	return nil
}

func printDevice(w io.Writer, d subscribers.Device) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tPLATFORM\tLANG\tTOPICS\tREGION\tREGISTERED")
	region := d.Region
	if region == "" {
		region = "-"
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Token, d.Platform, d.Lang, strings.Join(d.Topics, ","), region, humanTime(d.Created))
	tw.Flush()
}

func devicesRm(ctx context.Context, args []string, s streams) error {
	var af apiFlags
	fs := apiFlagSet(s, "devices rm", "devices rm TOKEN [flags]", `  ajil devices rm eY3k:APA91bH...`, &af)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return invalidf("devices rm: give one device token: ajil devices rm TOKEN")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	if _, err := c.call(ctx, http.MethodDelete, "/v1/devices/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	if !af.asJSON {
		fmt.Fprintf(s.out, "Removed device %s.\n", pos[0])
	}
	return nil
}

func devicesCount(ctx context.Context, args []string, s streams) error {
	var af apiFlags
	fs := apiFlagSet(s, "devices count", "devices count --topic TOPIC [--lang TAG] [flags]", `  ajil devices count --topic breaking --lang ar
  ajil devices count --topic sports --lang en --json`, &af)
	topic := fs.String("topic", "breaking", "the `topic`")
	lang := fs.String("lang", "ar", "the language `tag`; regional variants count with their language")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return invalidf("devices count: unexpected argument %q; use --topic and --lang", pos[0])
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var a subscribers.Audience
	q := url.Values{"topic": {*topic}, "lang": {*lang}}
	ans, err := c.call(ctx, http.MethodGet, "/v1/audience?"+q.Encode(), nil, &a)
	if err != nil {
		return err
	}
	if af.asJSON {
		return printRaw(s.out, ans)
	}
	noun := "devices follow"
	if a.Count == 1 {
		noun = "device follows"
	}
	fmt.Fprintf(s.out, "%d %s %s in %s.\n", a.Count, noun, a.Topic, a.Lang)
	return nil
}

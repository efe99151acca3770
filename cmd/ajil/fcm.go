package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/fcm"
)

// fcmFlags configure the FCM channel of `dev` and `serve`.
type fcmFlags struct {
	credentials string
	project     string
	endpoint    string
	modeName    string
	perMinute   int
	sendTimeout time.Duration
	logOnly     bool
}

func (f *fcmFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.credentials, "fcm-credentials", "", "Firebase service-account JSON `file` (serve: default GOOGLE_APPLICATION_CREDENTIALS)")
	fs.StringVar(&f.project, "fcm-project", "", "Firebase project `ID` (default: from the credentials)")
	fs.StringVar(&f.endpoint, "fcm-endpoint", "", "FCM v1 endpoint `URL` to use instead of Google's")
	fs.StringVar(&f.modeName, "fcm-mode", string(dispatcher.FCMTokens), "tokens: send to every registered device; topic: one send per alert to FCM topics")
	fs.IntVar(&f.perMinute, "fcm-rate", fcm.DefaultPerMinute, "messages a `minute`, shared by all replicas: the project's FCM quota")
	fs.DurationVar(&f.sendTimeout, "fcm-send-timeout", fcm.DefaultSendTimeout, "deadline of each FCM batch")
	fs.BoolVar(&f.logOnly, "fcm-log-only", false, "log pushes instead of sending them")
}

func (f *fcmFlags) mode() dispatcher.FCMMode { return dispatcher.FCMMode(f.modeName) }

// config checks the flags and returns the channel's config. Without
// credentials in dev, the channel logs instead of sending.
func (f *fcmFlags) config() (fcm.Config, error) {
	switch f.mode() {
	case dispatcher.FCMTokens, dispatcher.FCMTopic:
	default:
		return fcm.Config{}, invalidf("--fcm-mode: %q is not a mode; use tokens or topic", f.modeName)
	}
	if f.perMinute <= 0 {
		return fcm.Config{}, invalidf("--fcm-rate: %d; give the project's quota in messages a minute, e.g. 600000", f.perMinute)
	}
	if f.credentials != "" {
		if _, err := os.Stat(f.credentials); err != nil {
			return fcm.Config{}, invalidf("--fcm-credentials: %v", err)
		}
	}
	return fcm.Config{
		CredentialsFile: f.credentials, ProjectID: f.project, Endpoint: f.endpoint,
		SendTimeout: f.sendTimeout, LogOnly: f.logOnly,
	}, nil
}

// devConfig is config for `ajil dev`: log-only unless credentials are given.
func (f *fcmFlags) devConfig() (fcm.Config, error) {
	c, err := f.config()
	if err != nil {
		return c, err
	}
	if f.credentials == "" {
		c.LogOnly = true
	}
	return c, nil
}

// describe says where pushes go, for start-up banners.
func describeFCM(c fcm.Config) string {
	switch {
	case c.LogOnly:
		return "log-only: pushes are logged, not sent (pass --fcm-credentials to send)"
	case c.Endpoint != "":
		return fmt.Sprintf("project %q via %s", c.ProjectID, c.Endpoint)
	}
	return fmt.Sprintf("project %q", c.ProjectID)
}

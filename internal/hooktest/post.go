package hooktest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/ajil-news/ajil/dispatcher/webhook"
)

// Post sends d as a bare Standard Webhooks request with client, signed
// now, with none of the sender's checks or bookkeeping: the ceiling the
// benchmarks measure Ajil's webhook delivery against.
func Post(ctx context.Context, client *http.Client, d webhook.Delivery) error {
	now := time.Now()
	sig, err := webhook.Sign(d.Secrets, d.MsgID, now, d.Body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return err
	}
	req.Header = http.Header{
		"Content-Type":      {"application/json"},
		"Webhook-Id":        {d.MsgID},
		"Webhook-Timestamp": {strconv.FormatInt(now.Unix(), 10)},
		"Webhook-Signature": {sig},
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", d.URL, resp.Status)
	}
	return nil
}

package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	// SecretPrefix starts every Standard Webhooks signing secret.
	SecretPrefix = "whsec_"
	// MinSecretBytes and MaxSecretBytes are the key sizes the Standard
	// Webhooks spec allows: 192 to 512 bits.
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// MessageID is the webhook-id of alertID's delivery to endpointID. It is
// the same on every retry and redelivery, so a partner that has seen it can
// drop the duplicate, and differs for every alert and endpoint. It is "msg_"
// and 32 hex digits: a valid header value whatever the IDs contain.
func MessageID(alertID, endpointID string) string {
	h := sha256.New()
	// Length-prefixed, so that no two pairs of IDs hash the same input.
	fmt.Fprintf(h, "%d:%s%d:%s", len(alertID), alertID, len(endpointID), endpointID)
	return "msg_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Sign returns the webhook-signature header value for one attempt: for
// each secret, "v1," and the base64 HMAC-SHA256 of msgID, ts in Unix
// seconds and body joined by dots, keyed by the secret's decoded bytes.
// While a secret is rotated both are passed, and the signatures are
// separated by a space, so a partner verifying with either one accepts it.
func Sign(secrets []string, msgID string, ts time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", fmt.Errorf("%w: the endpoint has no secret; rotate it to get one", ErrInvalidSecret)
	}
	if msgID == "" {
		return "", errors.New("webhook sign: empty message id")
	}
	var sig strings.Builder
	prefix := msgID + "." + strconv.FormatInt(ts.Unix(), 10) + "."
	for i, s := range secrets {
		key, err := DecodeSecret(s)
		if err != nil {
			return "", fmt.Errorf("secret %d of %d: %w", i+1, len(secrets), err)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(prefix))
		mac.Write(body)
		if i > 0 {
			sig.WriteByte(' ')
		}
		sig.WriteString("v1,")
		sig.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return sig.String(), nil
}

// DecodeSecret returns the HMAC key of a Standard Webhooks secret: the
// standard base64 after "whsec_", 24 to 64 bytes long.
func DecodeSecret(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: does not start with %q; use the secret as Ajil issued it", ErrInvalidSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: the part after %q is not standard base64 (%v); use the secret as Ajil issued it", ErrInvalidSecret, SecretPrefix, err)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d to %d; rotate the endpoint's secret", ErrInvalidSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return key, nil
}

// NewSecret returns a fresh signing secret: "whsec_" and 32 random bytes in
// base64, the size the Standard Webhooks libraries generate.
func NewSecret() string {
	key := make([]byte, 32)
	rand.Read(key) // never fails: it crashes the program instead
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

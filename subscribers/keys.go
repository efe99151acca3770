package subscribers

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// Role is what an API key may do.
type Role string

const (
	// RoleApp is the mobile app's backend: register and remove devices,
	// read audience sizes.
	RoleApp Role = "app"
	// RolePartnerAdmin manages partner webhook endpoints.
	RolePartnerAdmin Role = "partner-admin"
	// RoleEditor is the newsroom console: read audience sizes.
	RoleEditor Role = "editor"
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
)

// MinKeyBytes is the shortest API key accepted: shorter ones can be guessed.
const MinKeyBytes = 16

func (r Role) valid() bool {
	switch r {
	case RoleApp, RolePartnerAdmin, RoleEditor, RoleAdmin:
		return true
	}
	return false
}

// Keys is a fixed set of API keys with their roles. A nil *Keys admits
// no one.
type Keys struct {
	keys []apiKey
}

// apiKey holds a key's SHA-256 rather than the key, so that comparisons
// run on equal lengths and take the same time whatever the key.
type apiKey struct {
	sum  [sha256.Size]byte
	role Role
}

// ParseKeys parses "role:key,role:key", the form of --api-keys and
// AJIL_API_KEYS.
func ParseKeys(spec string) (*Keys, error) {
	k := &Keys{}
	for i, entry := range strings.Split(spec, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		if err := k.add(entry); err != nil {
			return nil, fmt.Errorf("api keys: entry %d: %w", i+1, err)
		}
	}
	return k, nil
}

// LoadKeys reads a file of "role:key" lines; blank lines and lines
// starting with # are ignored.
func LoadKeys(name string) (*Keys, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	defer f.Close()
	k := &Keys{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		entry := strings.TrimSpace(sc.Text())
		if entry == "" || strings.HasPrefix(entry, "#") {
			continue
		}
		if err := k.add(entry); err != nil {
			return nil, fmt.Errorf("api keys: %s:%d: %w", name, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("api keys: %s: %w", name, err)
	}
	return k, nil
}

// add adds one "role:key" entry. Errors never quote the key.
func (k *Keys) add(entry string) error {
	role, key, ok := strings.Cut(entry, ":")
	switch {
	case !ok:
		return fmt.Errorf("not role:key; write e.g. app:%s", strings.Repeat("x", MinKeyBytes))
	case !Role(role).valid():
		return fmt.Errorf("role %q is not one of app, partner-admin, editor, admin", role)
	case len(key) < MinKeyBytes:
		return fmt.Errorf("the %s key is %d bytes, under the minimum of %d; generate one with `openssl rand -base64 32`", role, len(key), MinKeyBytes)
	}
	sum := sha256.Sum256([]byte(key))
	for _, o := range k.keys {
		if o.sum == sum {
			return fmt.Errorf("a %s key is listed twice", role)
		}
	}
	k.keys = append(k.keys, apiKey{sum: sum, role: Role(role)})
	return nil
}

// Len is the number of keys.
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// lookup returns the index and role of key, comparing against every key
// in constant time so that timing reveals neither which key matched nor
// how much of it.
func (k *Keys) lookup(key string) (int, Role, bool) {
	if k == nil {
		return -1, "", false
	}
	sum := sha256.Sum256([]byte(key))
	found := -1
	for i, o := range k.keys {
		found = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(o.sum[:], sum[:]), i, found)
	}
	if found < 0 {
		return -1, "", false
	}
	return found, k.keys[found].role, true
}

// GenerateKey returns a new random API key, for `ajil dev` to print.
func GenerateKey() string {
	return "ajil_" + base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

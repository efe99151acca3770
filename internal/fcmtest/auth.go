package fcmtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// AccessToken is the OAuth access token the server hands out at its token
// endpoint and requires on every send.
const AccessToken = "fcmtest-access-token"

// ClientEmail is the service account of CredentialsFile.
const ClientEmail = "ajil-sender@ajil-test.iam.gserviceaccount.com"

// messagingScope reports whether an OAuth scope allows sending with FCM.
func messagingScope(scope string) bool {
	return scope == "https://www.googleapis.com/auth/firebase.messaging" ||
		scope == "https://www.googleapis.com/auth/cloud-platform"
}

// serviceAccount is the JSON key file the Firebase console hands out.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	ClientID     string `json:"client_id"`
	AuthURI      string `json:"auth_uri"`
	TokenURI     string `json:"token_uri"`
}

// CredentialsFile writes a service-account key for the server's project
// into a temporary directory of t and returns its path. Its token_uri is
// the server's token endpoint, which accepts assertions signed with the
// key, so the real Google auth libraries obtain AccessToken from it.
func (s *Server) CredentialsFile(t testing.TB) string {
	t.Helper()
	path, err := s.WriteCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteCredentials is CredentialsFile for use outside tests: it writes the
// key into dir and returns its path.
func (s *Server) WriteCredentials(dir string) (string, error) {
	key, err := s.signingKey()
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("fcmtest: encode key: %w", err)
	}
	b, err := json.MarshalIndent(serviceAccount{
		Type:         "service_account",
		ProjectID:    s.project,
		PrivateKeyID: "fcmtest",
		PrivateKey:   string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail:  ClientEmail,
		ClientID:     "100000000000000000001",
		AuthURI:      "https://accounts.google.com/o/oauth2/auth",
		TokenURI:     s.TokenURL(),
	}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("fcmtest: encode credentials: %w", err)
	}
	path := filepath.Join(dir, "service-account.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("fcmtest: write credentials: %w", err)
	}
	return path, nil
}

// signingKey is the service account's key, made on first use: generating
// it takes a noticeable moment, and most tests use a static token instead.
func (s *Server) signingKey() (*rsa.PrivateKey, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.key == nil {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("fcmtest: generate key: %w", err)
		}
		s.key = key
	}
	return s.key, nil
}

// handleToken is Google's OAuth token endpoint for service accounts: it
// trades an RS256 JWT assertion signed with the key of CredentialsFile,
// asking for a messaging scope, for AccessToken.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.tokenRequests.Add(1)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, "invalid_request", "Could not parse the request.")
		return
	}
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		writeOAuthError(w, "unsupported_grant_type", "Invalid grant_type.")
		return
	}
	s.keyMu.Lock()
	key := s.key
	s.keyMu.Unlock()
	if key == nil || !s.validAssertion(r.PostForm.Get("assertion"), &key.PublicKey) {
		writeOAuthError(w, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": AccessToken, "token_type": "Bearer", "expires_in": 3600})
}

// validAssertion checks the JWT's signature and the claims Google checks.
func (s *Server) validAssertion(jwt string, pub *rsa.PublicKey) bool {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var c struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Exp   int64  `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return false
	}
	scoped := slices.ContainsFunc(strings.Fields(c.Scope), messagingScope)
	return c.Iss == ClientEmail && c.Aud == s.TokenURL() && scoped && time.Unix(c.Exp, 0).After(time.Now())
}

func writeOAuthError(w http.ResponseWriter, code, description string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": description})
}

package subscribers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/time/rate"

	"github.com/ajil-news/ajil/internal/redistest"
	"github.com/ajil-news/ajil/subscribers"
)

// testKeys holds one key per role; every key is at least MinKeyBytes.
var testKeys = map[string]string{
	"app":           "app-key-0123456789abcdef",
	"partner-admin": "partner-key-0123456789abcdef",
	"editor":        "editor-key-0123456789abcdef",
	"admin":         "admin-key-0123456789abcdef",
}

type apiEnv struct {
	url   string
	reg   *subscribers.Registry
	redis *redistest.Server
	logs  *syncBuffer
}

// newAPIEnv serves the API over a real redis-server on 127.0.0.1.
func newAPIEnv(t testing.TB, cfg subscribers.Config, apiCfg subscribers.APIConfig) *apiEnv {
	t.Helper()
	reg, srv, _ := newRegistry(t, cfg)
	logs := &syncBuffer{}
	api := subscribers.NewAPI(reg, parseTestKeys(t), apiCfg, slog.New(slog.NewTextHandler(logs, nil)))
	ts := httptest.NewServer(api)
	t.Cleanup(ts.Close)
	return &apiEnv{url: ts.URL, reg: reg, redis: srv, logs: logs}
}

// parseTestKeys admits testKeys.
func parseTestKeys(t testing.TB) *subscribers.Keys {
	t.Helper()
	var spec []string
	for role, key := range testKeys {
		spec = append(spec, role+":"+key)
	}
	keys, err := subscribers.ParseKeys(strings.Join(spec, ","))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// apiError decodes the error body, failing unless it has the one shape.
func (r response) apiError(t testing.TB) subscribers.APIError {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	var e subscribers.ErrorBody
	if err := dec.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body %s is not {\"error\":{\"code\",\"message\"}}: %v", r.body, err)
	}
	if got := r.header.Get("Content-Type"); !strings.HasPrefix(got, "application/json") {
		t.Errorf("error Content-Type %q", got)
	}
	return e.Error
}

// do sends a request with the key of role ("" for none, "unknown" for a
// key nobody has, "basic" for Basic auth).
func (e *apiEnv) do(t testing.TB, role, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	switch role {
	case "":
	case "unknown":
		req.Header.Set("Authorization", "Bearer not-a-key-0123456789abcdef")
	case "basic":
		req.SetBasicAuth("admin", testKeys["admin"])
	default:
		req.Header.Set("Authorization", "Bearer "+testKeys[role])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, b}
}

func decodeBody[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return v
}

func TestAPIDevicesAndAudience(t *testing.T) {
	env := newAPIEnv(t, subscribers.Config{}, subscribers.APIConfig{})
	r := env.do(t, "app", "PUT", "/v1/devices/fcm:tok-1", `{"platform":"android","lang":"ar-EG","topics":["sports","breaking"],"region":"EG"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	d := decodeBody[subscribers.Device](t, r)
	if d.Token != "fcm:tok-1" || d.Lang != "ar-EG" || !slices.Equal(d.Topics, []string{"breaking", "sports"}) || d.Region != "EG" || d.Created.IsZero() {
		t.Fatalf("registered device %+v", d)
	}
	if r := env.do(t, "app", "PUT", "/v1/devices/fcm:tok-1", `{"platform":"android","lang":"ar-EG","topics":["breaking"]}`); r.status != http.StatusOK {
		t.Fatalf("update: %d %s, want 200", r.status, r.body)
	}
	env.do(t, "admin", "PUT", "/v1/devices/tok-2", `{"platform":"ios"}`)

	for _, tt := range []struct {
		query, lang string
		count       int64
	}{
		{"topic=breaking&lang=ar", "ar", 2},
		{"topic=breaking", "ar", 2},
		{"topic=breaking&lang=ar-SA", "ar", 2},
		{"topic=sports&lang=ar", "ar", 0},
		{"topic=breaking&lang=en", "en", 0},
	} {
		r := env.do(t, "editor", "GET", "/v1/audience?"+tt.query, "")
		a := decodeBody[subscribers.Audience](t, r)
		if r.status != 200 || a.Count != tt.count || a.Lang != tt.lang || a.Topic == "" {
			t.Errorf("audience %s: %d %+v, want lang %s count %d", tt.query, r.status, a, tt.lang, tt.count)
		}
	}

	if r := env.do(t, "app", "DELETE", "/v1/devices/fcm:tok-1", ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := env.do(t, "app", "DELETE", "/v1/devices/fcm:tok-1", ""); r.status != http.StatusNotFound || r.apiError(t).Code != subscribers.CodeNotFound {
		t.Fatalf("second delete: %d %s", r.status, r.body)
	}
	if n, _ := env.reg.Count(t.Context(), "breaking", "ar"); n != 1 {
		t.Fatalf("audience after delete: %d, want 1", n)
	}
}

func TestAPIErrors(t *testing.T) {
	var tests []struct {
		Name   string `json:"name"`
		Role   string `json:"role"`
		Method string `json:"method"`
		Path   string `json:"path"`
		Body   string `json:"body"`
		Code   string `json:"code"`
		Field  string `json:"field"`
	}
	loadJSON(t, "api_errors.json", &tests)
	env := newAPIEnv(t, subscribers.Config{}, subscribers.APIConfig{})
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			r := env.do(t, tt.Role, tt.Method, tt.Path, tt.Body)
			e := r.apiError(t)
			if string(e.Code) != tt.Code || e.Field != tt.Field {
				t.Fatalf("%s %s: %d %s; want code %s field %q", tt.Method, tt.Path, r.status, r.body, tt.Code, tt.Field)
			}
			if r.status != e.Code.Status() {
				t.Fatalf("status %d for code %s, want %d", r.status, e.Code, e.Code.Status())
			}
		})
	}
	t.Run("token too long", func(t *testing.T) {
		r := env.do(t, "app", "PUT", "/v1/devices/"+strings.Repeat("a", subscribers.MaxTokenBytes+1), `{"platform":"android"}`)
		if e := r.apiError(t); r.status != 400 || e.Field != "token" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("unauthenticated asks for a bearer key", func(t *testing.T) {
		r := env.do(t, "", "GET", "/v1/endpoints", "")
		if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("%d, WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
		}
	})
	t.Run("wrong method lists the allowed ones", func(t *testing.T) {
		r := env.do(t, "admin", "DELETE", "/v1/endpoints", "")
		if r.status != 405 || !strings.Contains(r.header.Get("Allow"), "POST") {
			t.Fatalf("%d, Allow %q", r.status, r.header.Get("Allow"))
		}
	})
	t.Run("conflict", func(t *testing.T) {
		body := `{"url":"https://partner.example/conflict"}`
		first := env.do(t, "partner-admin", "POST", "/v1/endpoints", body)
		if first.status != 201 {
			t.Fatalf("create: %d %s", first.status, first.body)
		}
		id := decodeBody[subscribers.EndpointInfo](t, first).ID
		r := env.do(t, "partner-admin", "POST", "/v1/endpoints", body)
		if e := r.apiError(t); r.status != 409 || e.Code != subscribers.CodeConflict || !strings.Contains(e.Message, id) {
			t.Fatalf("second create: %d %s; want 409 naming %s", r.status, r.body, id)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		big := `{"platform":"android","region":"` + strings.Repeat("x", subscribers.DefaultMaxBodyBytes) + `"}`
		r := env.do(t, "app", "PUT", "/v1/devices/tok-big", big)
		if e := r.apiError(t); r.status != 413 || e.Code != subscribers.CodeBodyTooLarge {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if _, err := env.reg.Device(t.Context(), "tok-big"); err == nil {
			t.Fatal("an oversized request registered a device")
		}
	})
}

func TestAPIRateLimit(t *testing.T) {
	env := newAPIEnv(t, subscribers.Config{}, subscribers.APIConfig{RateLimit: rate.Every(10 * 60e9), RateBurst: 2})
	for i := range 2 {
		if r := env.do(t, "app", "GET", "/v1/audience?topic=breaking", ""); r.status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, r.status, r.body)
		}
	}
	r := env.do(t, "app", "GET", "/v1/audience?topic=breaking", "")
	if e := r.apiError(t); r.status != 429 || e.Code != subscribers.CodeRateLimited {
		t.Fatalf("over the rate: %d %s", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 600 {
		t.Fatalf("Retry-After %q, want 1 to 600 seconds", r.header.Get("Retry-After"))
	}
	if r := env.do(t, "editor", "GET", "/v1/audience?topic=breaking", ""); r.status != 200 {
		t.Fatalf("another key is limited too: %d; want a limit per key", r.status)
	}
}

func TestAPIInternalErrorLeaksNothing(t *testing.T) {
	env := newAPIEnv(t, subscribers.Config{}, subscribers.APIConfig{})
	env.redis.Stop()
	r := env.do(t, "app", "PUT", "/v1/devices/tok-1", `{"platform":"android"}`)
	e := r.apiError(t)
	if r.status != 500 || e.Code != subscribers.CodeInternal {
		t.Fatalf("%d %s, want 500 internal", r.status, r.body)
	}
	for _, secret := range []string{"redis", "dial", "refused", "127.0.0.1", "EVAL", "ajil:"} {
		if strings.Contains(strings.ToLower(string(r.body)), strings.ToLower(secret)) {
			t.Errorf("500 body leaks %q: %s", secret, r.body)
		}
	}
	if !strings.Contains(env.logs.String(), "api request failed") || !strings.Contains(env.logs.String(), "PUT /v1/devices/{token}") {
		t.Errorf("the failure was not logged with its route:\n%s", env.logs.String())
	}
}

// TestAPIRoles checks every role against every route: allowed routes
// never answer 401 or 403, the others answer 403.
func TestAPIRoles(t *testing.T) {
	env := newAPIEnv(t, subscribers.Config{}, subscribers.APIConfig{})
	created := env.do(t, "admin", "POST", "/v1/endpoints", `{"url":"https://partner.example/roles"}`)
	id := decodeBody[subscribers.EndpointInfo](t, created).ID
	routes := []struct {
		method, path, body string
		allowed            []string
	}{
		{"PUT", "/v1/devices/tok-role", `{"platform":"android"}`, []string{"app", "admin"}},
		{"DELETE", "/v1/devices/tok-role", "", []string{"app", "admin"}},
		{"GET", "/v1/audience?topic=breaking&lang=ar", "", []string{"app", "editor", "admin"}},
		{"POST", "/v1/endpoints", `{"url":"https://partner.example/other"}`, []string{"partner-admin", "admin"}},
		{"GET", "/v1/endpoints", "", []string{"partner-admin", "admin"}},
		{"GET", "/v1/endpoints/" + id, "", []string{"partner-admin", "admin"}},
		{"PATCH", "/v1/endpoints/" + id, `{"description":"x"}`, []string{"partner-admin", "admin"}},
		{"POST", "/v1/endpoints/" + id + "/rotate-secret", "", []string{"partner-admin", "admin"}},
		{"POST", "/v1/endpoints/" + id + "/enable", "", []string{"partner-admin", "admin"}},
		{"DELETE", "/v1/endpoints/" + id, "", []string{"partner-admin", "admin"}},
	}
	for _, rt := range routes {
		for _, role := range []string{"app", "editor", "partner-admin", "admin"} {
			r := env.do(t, role, rt.method, rt.path, rt.body)
			allowed := slices.Contains(rt.allowed, role)
			switch {
			case allowed && (r.status == 401 || r.status == 403):
				t.Errorf("%s %s as %s: %d, want allowed", rt.method, rt.path, role, r.status)
			case !allowed && r.status != 403:
				t.Errorf("%s %s as %s: %d, want 403", rt.method, rt.path, role, r.status)
			case !allowed && r.apiError(t).Code != subscribers.CodeForbidden:
				t.Errorf("%s %s as %s: %s", rt.method, rt.path, role, r.body)
			}
		}
	}
}

func TestAPIEndpoints(t *testing.T) {
	env := newAPIEnv(t, subscribers.Config{}, subscribers.APIConfig{})
	// Arabic with harakat, a ZWNJ, a right-to-left mark, an emoji, a
	// guillemet and U+2028, which encoding/json escapes on the way out.
	const desc = "مَوقع «الخَبَر» — تنبيهات عاجلة\u200c للشركاء\u200f 📰\u2028سطر ثانٍ"
	body, _ := json.Marshal(map[string]any{"url": "https://partner.example/hooks/ajil", "description": desc, "kinds": []string{"published", "corrected"}, "topics": []string{"breaking"}})
	r := env.do(t, "partner-admin", "POST", "/v1/endpoints", string(body))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	created := decodeBody[subscribers.EndpointInfo](t, r)
	checkSecret(t, created.Secret)
	if created.Description != desc || created.State != subscribers.EndpointEnabled || !slices.Equal(created.Langs, []string{}) {
		t.Fatalf("created %+v", created)
	}
	if !strings.Contains(string(r.body), "مَوقع «الخَبَر» — تنبيهات عاجلة\u200c للشركاء\u200f 📰") {
		t.Fatalf("the response escapes or alters the Arabic text: %s", r.body)
	}

	// The secret is shown once: never in a GET.
	get := env.do(t, "partner-admin", "GET", "/v1/endpoints/"+created.ID, "")
	list := env.do(t, "partner-admin", "GET", "/v1/endpoints", "")
	for _, g := range []response{get, list} {
		if g.status != 200 || strings.Contains(string(g.body), created.Secret) || strings.Contains(string(g.body), "whsec_") || strings.Contains(string(g.body), `"secret"`) {
			t.Fatalf("a GET shows the secret or failed: %d %s", g.status, g.body)
		}
	}
	shown := decodeBody[subscribers.EndpointInfo](t, get)
	if shown.Description != desc {
		t.Fatalf("description did not round-trip byte for byte:\n got %q\nwant %q", shown.Description, desc)
	}
	if l := decodeBody[subscribers.EndpointList](t, list); len(l.Endpoints) != 1 || l.Endpoints[0].Description != desc {
		t.Fatalf("list: %s", list.body)
	}
	if stored, _ := env.reg.Endpoint(t.Context(), created.ID); stored.Secret != created.Secret {
		t.Fatal("the registry does not hold the secret the partner was shown")
	}

	// PATCH changes only what is sent; null clears a filter.
	r = env.do(t, "partner-admin", "PATCH", "/v1/endpoints/"+created.ID, `{"langs":["ar"],"kinds":null}`)
	patched := decodeBody[subscribers.EndpointInfo](t, r)
	if r.status != 200 || patched.Description != desc || !slices.Equal(patched.Langs, []string{"ar"}) || len(patched.Kinds) != 0 || !slices.Equal(patched.Topics, []string{"breaking"}) {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	r = env.do(t, "partner-admin", "PATCH", "/v1/endpoints/"+created.ID, `{"url":null}`)
	if e := r.apiError(t); e.Field != "url" {
		t.Fatalf("patch url to null: %s", r.body)
	}

	// Rotation shows the new secret once and says until when the old
	// one signs.
	r = env.do(t, "partner-admin", "POST", "/v1/endpoints/"+created.ID+"/rotate-secret", "")
	rotated := decodeBody[subscribers.EndpointInfo](t, r)
	checkSecret(t, rotated.Secret)
	if r.status != 200 || rotated.Secret == created.Secret || rotated.PreviousSecretExpiresAt.IsZero() {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	get = env.do(t, "partner-admin", "GET", "/v1/endpoints/"+created.ID, "")
	if strings.Contains(string(get.body), rotated.Secret) || strings.Contains(string(get.body), created.Secret) ||
		decodeBody[subscribers.EndpointInfo](t, get).PreviousSecretExpiresAt.IsZero() {
		t.Fatalf("GET after rotation: %s", get.body)
	}

	// Disabled by the dispatcher, enabled through the API.
	if _, err := env.reg.DisableEndpoint(t.Context(), created.ID, "failing for 24h: 503"); err != nil {
		t.Fatal(err)
	}
	get = env.do(t, "partner-admin", "GET", "/v1/endpoints/"+created.ID, "")
	if d := decodeBody[subscribers.EndpointInfo](t, get); d.State != subscribers.EndpointDisabled || d.DisabledReason != "failing for 24h: 503" || d.DisabledAt.IsZero() {
		t.Fatalf("disabled endpoint shows %s", get.body)
	}
	r = env.do(t, "partner-admin", "POST", "/v1/endpoints/"+created.ID+"/enable", "")
	if en := decodeBody[subscribers.EndpointInfo](t, r); r.status != 200 || en.State != subscribers.EndpointEnabled || en.DisabledReason != "" {
		t.Fatalf("enable: %d %s", r.status, r.body)
	}

	if r := env.do(t, "partner-admin", "DELETE", "/v1/endpoints/"+created.ID, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := env.do(t, "partner-admin", "GET", "/v1/endpoints/"+created.ID, ""); r.status != http.StatusNotFound {
		t.Fatalf("get after delete: %d", r.status)
	}
	if l := decodeBody[subscribers.EndpointList](t, env.do(t, "partner-admin", "GET", "/v1/endpoints", "")); l.Endpoints == nil || len(l.Endpoints) != 0 {
		t.Fatalf("empty list: %+v, want []", l)
	}
	if !strings.Contains(env.logs.String(), "endpoint created") || strings.Contains(env.logs.String(), "whsec_") {
		t.Fatalf("audit log missing or leaking secrets:\n%s", env.logs.String())
	}
}

func TestKeys(t *testing.T) {
	long := strings.Repeat("k", subscribers.MinKeyBytes)
	for _, tt := range []struct {
		spec string
		n    int
		ok   bool
	}{
		{"", 0, true},
		{"app:" + long, 1, true},
		{" app:" + long + " , admin:" + long + "2 ,", 2, true},
		{"partner-admin:" + long + ":with:colons", 1, true},
		{"app", 0, false},
		{"root:" + long, 0, false},
		{"app:short", 0, false},
		{"app:" + long + ",admin:" + long, 0, false},
	} {
		k, err := subscribers.ParseKeys(tt.spec)
		if (err == nil) != tt.ok || (err == nil && k.Len() != tt.n) {
			t.Errorf("ParseKeys(%q) = %v, %v; want ok=%v with %d keys", tt.spec, k, err, tt.ok, tt.n)
		}
		if err != nil && strings.Contains(err.Error(), long) {
			t.Errorf("ParseKeys error quotes the key: %v", err)
		}
	}

	file := t.TempDir() + "/keys"
	writeFile(t, file, "# Ajil API keys\napp:"+long+"\n\n  # the console\neditor:"+long+"e\n")
	if k, err := subscribers.LoadKeys(file); err != nil || k.Len() != 2 {
		t.Fatalf("LoadKeys = %v, %v", k, err)
	}
	writeFile(t, file, "app:"+long+"\nnonsense\n")
	if _, err := subscribers.LoadKeys(file); err == nil || !strings.Contains(err.Error(), ":2") {
		t.Fatalf("LoadKeys of a bad line: %v, want an error naming line 2", err)
	}

	a, b := subscribers.GenerateKey(), subscribers.GenerateKey()
	if a == b || len(a) < 40 {
		t.Fatalf("GenerateKey gave %q and %q", a, b)
	}
	if k, err := subscribers.ParseKeys("admin:" + a); err != nil || k.Len() != 1 {
		t.Fatalf("a generated key is not accepted: %v", err)
	}
}

func TestAPIGeneratedKeyAuthenticates(t *testing.T) {
	reg, _, _ := newRegistry(t, subscribers.Config{})
	key := subscribers.GenerateKey()
	keys, _ := subscribers.ParseKeys("admin:" + key)
	ts := httptest.NewServer(subscribers.NewAPI(reg, keys, subscribers.APIConfig{}, slog.New(slog.DiscardHandler)))
	defer ts.Close()
	for _, auth := range []struct {
		header string
		status int
	}{
		{"Bearer " + key, 200},
		{"bearer " + key, 200},
		{"Bearer " + key[:len(key)-1], 401},
		{"Bearer " + key + "x", 401},
		{key, 401},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", ts.URL+"/v1/endpoints", nil)
		req.Header.Set("Authorization", auth.header)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != auth.status {
			t.Errorf("Authorization %q: %d, want %d", fmt.Sprintf("%.12s...", auth.header), res.StatusCode, auth.status)
		}
	}
}

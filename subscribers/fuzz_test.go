package subscribers_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/ajil-news/ajil/subscribers"
)

// fuzzRoutes are the routes that decode a request body, by the fuzzer's
// route byte.
var fuzzRoutes = []struct {
	method, pattern, role string
}{
	{"PUT", "/v1/devices/%s", "app"},
	{"POST", "/v1/endpoints", "partner-admin"},
	{"PATCH", "/v1/endpoints/%s", "partner-admin"},
}

// catalog is every code the API documents.
var catalog = []subscribers.Code{
	subscribers.CodeInvalidField, subscribers.CodeInvalidJSON, subscribers.CodeUnauthenticated,
	subscribers.CodeForbidden, subscribers.CodeNotFound, subscribers.CodeMethodNotAllowed,
	subscribers.CodeConflict, subscribers.CodeBodyTooLarge, subscribers.CodeRateLimited,
}

// FuzzAPIRequest sends arbitrary bodies and path parameters to the routes
// that decode them, over a real registry. Whatever arrives, the API
// answers either a success that matches what the registry stored, or one
// of its catalog errors in the one JSON shape, naming the field at fault;
// never a 500, a panic or text that is not UTF-8.
func FuzzAPIRequest(f *testing.F) {
	f.Add(uint8(0), "fcm-token:APA91b", []byte(`{"platform":"android","lang":"ar","topics":["breaking"]}`))
	f.Add(uint8(0), "tok", []byte(`{"platform":"ios","lang":"ar-EG","topics":["sport","breaking","sport"],"region":"EG"}`))
	f.Add(uint8(0), "tok", []byte(`{"platform":"android","topics":"breaking"}`))
	f.Add(uint8(0), "bad token/", []byte(`{"platform":"android"}`))
	f.Add(uint8(1), "", []byte(`{"url":"https://partner.example/hooks/ajil","description":"شريك","kinds":["published"],"langs":["ar"]}`))
	f.Add(uint8(1), "", []byte(`{"url":"http://127.0.0.1:9/x","kinds":["nope"]}`))
	f.Add(uint8(2), "", []byte(`{"description":"\u202bوصف\u202c","topics":[]}`))
	f.Add(uint8(2), "ep_missing", []byte(`{"url":null}`))

	reg, _, _ := newRegistry(f, subscribers.Config{AllowHTTP: true, AllowPrivate: true})
	logs := &syncBuffer{}
	api := subscribers.NewAPI(reg, parseTestKeys(f), subscribers.APIConfig{RateLimit: rate.Inf}, slog.New(slog.NewTextHandler(logs, nil)))
	existing, err := reg.CreateEndpoint(f.Context(), subscribers.EndpointSpec{URL: "https://partner.example/fuzz"})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, route uint8, param string, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		if rt.method == "PATCH" && param == "" {
			param = existing.ID
		}
		path := rt.pattern
		if strings.Contains(path, "%s") {
			if param == "" {
				return // the mux answers 404/405 for a missing segment; not decoding
			}
			path = strings.Replace(path, "%s", url.PathEscape(param), 1)
		}
		req, err := http.NewRequestWithContext(t.Context(), rt.method, "http://ajil.test"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+testKeys[rt.role])
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)

		res := response{rec.Code, rec.Header(), rec.Body.Bytes()}
		if !utf8.Valid(res.body) {
			t.Fatalf("%s %s answered %d with invalid UTF-8: %q", rt.method, path, res.status, res.body)
		}
		if res.status >= 500 {
			t.Fatalf("%s %s %q: %d %s\nlog:\n%s", rt.method, path, body, res.status, res.body, logs.String())
		}
		if res.status/100 != 2 {
			e := res.apiError(t)
			if !slices.Contains(catalog, e.Code) || e.Code.Status() != res.status {
				t.Fatalf("%s %s: %d with code %q, not the catalog's", rt.method, path, res.status, e.Code)
			}
			if e.Code == subscribers.CodeInvalidField && e.Field == "" {
				t.Fatalf("%s %s: invalid_field names no field: %s", rt.method, path, res.body)
			}
			return
		}
		switch rt.method {
		case "PUT":
			got := decodeBody[subscribers.Device](t, res)
			stored, err := reg.Device(t.Context(), param)
			if err != nil {
				t.Fatalf("PUT answered %d but the device is not stored: %v", res.status, err)
			}
			if got.Token != param || got.Platform != stored.Platform || got.Lang != stored.Lang ||
				!slices.Equal(got.Topics, stored.Topics) || got.Region != stored.Region {
				t.Fatalf("PUT answered %+v, the registry holds %+v", got, stored)
			}
		default:
			got := decodeBody[subscribers.EndpointInfo](t, res)
			stored, err := reg.Endpoint(t.Context(), got.ID)
			if err != nil {
				t.Fatalf("%s answered %d but endpoint %q is not stored: %v", rt.method, res.status, got.ID, err)
			}
			if got.URL != stored.URL || got.Description != stored.Description {
				t.Fatalf("%s answered %+v, the registry holds %+v", rt.method, got, stored)
			}
			if rt.method == "POST" {
				if err := reg.DeleteEndpoint(t.Context(), got.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		var v any
		if err := json.Unmarshal(res.body, &v); err != nil {
			t.Fatalf("success body is not JSON: %v", err)
		}
	})
}

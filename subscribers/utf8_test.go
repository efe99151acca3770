package subscribers_test

import (
	"testing"

	"golang.org/x/text/encoding/charmap"

	"github.com/ajil-news/ajil/subscribers"
)

// A body in another encoding than UTF-8 is refused naming the member,
// rather than stored with U+FFFD where the Arabic was.
func TestAPIBodyNotUTF8(t *testing.T) {
	e := newAPIEnv(t, subscribers.Config{}, subscribers.APIConfig{})
	desc, err := charmap.Windows1256.NewEncoder().String("شريك الأخبار")
	if err != nil {
		t.Fatal(err)
	}
	r := e.do(t, "partner-admin", "POST", "/v1/endpoints", `{"url":"https://partner.example/hooks/ajil","description":"`+desc+`"}`)
	if got := r.apiError(t); r.status != 400 || got.Code != subscribers.CodeInvalidField || got.Field != "description" {
		t.Fatalf("%d %s; want 400 invalid_field naming description", r.status, r.body)
	}
	if es, err := e.reg.Endpoints(t.Context()); err != nil || len(es) != 0 {
		t.Fatalf("%d endpoints stored (%v)", len(es), err)
	}
}

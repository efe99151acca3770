package subscribers_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/subscribers"
)

// walk returns every token of an audience index, page by page.
func walk(t testing.TB, reg *subscribers.Registry, topic, lang string) []string {
	t.Helper()
	var all []string
	var cur subscribers.Cursor
	for {
		page, next, err := reg.Page(t.Context(), topic, lang, cur, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		cur = next
	}
}

func wantAudience(t *testing.T, reg *subscribers.Registry, topic, lang string, want ...string) {
	t.Helper()
	got := walk(t, reg, topic, lang)
	if !slices.Equal(got, want) && (len(got) > 0 || len(want) > 0) {
		t.Errorf("audience %s/%s = %v, want %v", topic, lang, got, want)
	}
	n, err := reg.Count(t.Context(), topic, lang)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(want)) {
		t.Errorf("Count(%s, %s) = %d, want %d", topic, lang, n, len(want))
	}
}

func TestDeviceLifecycle(t *testing.T) {
	clk := newClock()
	reg, _, _ := newRegistry(t, subscribers.Config{Now: clk.Now})
	ctx := t.Context()
	t0 := clk.Now()

	a, created, err := reg.Upsert(ctx, subscribers.Device{Token: "tok-a", Platform: subscribers.PlatformAndroid, Topics: []string{"sports", "breaking"}, Region: "SA"})
	if err != nil || !created {
		t.Fatalf("first upsert: created=%v err=%v, want created", created, err)
	}
	if a.Lang != "ar" || !slices.Equal(a.Topics, []string{"breaking", "sports"}) || !a.Created.Equal(t0) {
		t.Fatalf("stored device %+v: want lang ar (the default), topics sorted, created now", a)
	}
	if _, _, err := reg.Upsert(ctx, subscribers.Device{Token: "tok-b", Platform: subscribers.PlatformIOS}); err != nil {
		t.Fatal(err)
	}
	wantAudience(t, reg, "breaking", "ar", "tok-a", "tok-b")
	wantAudience(t, reg, "sports", "ar", "tok-a")

	// Registering again changes nothing but the last-seen time, and keeps
	// the device's place in the order.
	clk.Advance(time.Hour)
	again, created, err := reg.Upsert(ctx, subscribers.Device{Token: "tok-a", Platform: subscribers.PlatformAndroid, Topics: []string{"breaking", "sports"}, Region: "SA"})
	if err != nil || created {
		t.Fatalf("second upsert: created=%v err=%v, want an update", created, err)
	}
	if !again.Created.Equal(t0) || !again.LastSeen.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after re-registering: created %v last seen %v; want created kept, last seen now", again.Created, again.LastSeen)
	}
	wantAudience(t, reg, "breaking", "ar", "tok-a", "tok-b")

	// A topic change moves the device between indexes; kept topics keep
	// their place.
	if _, _, err := reg.Upsert(ctx, subscribers.Device{Token: "tok-a", Platform: subscribers.PlatformAndroid, Topics: []string{"breaking", "economy"}}); err != nil {
		t.Fatal(err)
	}
	wantAudience(t, reg, "sports", "ar")
	wantAudience(t, reg, "economy", "ar", "tok-a")
	wantAudience(t, reg, "breaking", "ar", "tok-a", "tok-b")

	// A language change moves it to the new language's indexes, keyed by
	// the primary subtag.
	if _, _, err := reg.Upsert(ctx, subscribers.Device{Token: "tok-a", Platform: subscribers.PlatformAndroid, Lang: "en-GB", Topics: []string{"breaking", "economy"}}); err != nil {
		t.Fatal(err)
	}
	wantAudience(t, reg, "breaking", "ar", "tok-b")
	wantAudience(t, reg, "economy", "ar")
	wantAudience(t, reg, "breaking", "en", "tok-a")
	wantAudience(t, reg, "economy", "en-US", "tok-a")

	// Rotation keeps preferences and place.
	if _, _, err := reg.Upsert(ctx, subscribers.Device{Token: "tok-c", Platform: subscribers.PlatformWeb, Lang: "en"}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Rotate(ctx, "tok-a", "tok-a2"); err != nil {
		t.Fatal(err)
	}
	wantAudience(t, reg, "breaking", "en", "tok-a2", "tok-c")
	wantAudience(t, reg, "economy", "en", "tok-a2")
	d, err := reg.Device(ctx, "tok-a2")
	if err != nil || d.Lang != "en-GB" || !slices.Equal(d.Topics, []string{"breaking", "economy"}) || d.Platform != subscribers.PlatformAndroid || !d.Created.Equal(t0) {
		t.Fatalf("rotated device %+v, %v: want the old token's preferences", d, err)
	}
	if _, err := reg.Device(ctx, "tok-a"); !errors.Is(err, subscribers.ErrNotFound) {
		t.Fatalf("old token after rotation: %v, want ErrNotFound", err)
	}
	if err := reg.Rotate(ctx, "tok-a2", "tok-b"); !errors.Is(err, subscribers.ErrConflict) {
		t.Fatalf("rotate onto a registered token: %v, want ErrConflict", err)
	}
	if err := reg.Rotate(ctx, "tok-gone", "tok-new"); !errors.Is(err, subscribers.ErrNotFound) {
		t.Fatalf("rotate an unknown token: %v, want ErrNotFound", err)
	}
	if err := reg.Rotate(ctx, "tok-a2", "bad token"); alert.FieldErrors(err) == nil {
		t.Fatalf("rotate to an invalid token: %v, want a field error", err)
	}

	if err := reg.Remove(ctx, "tok-b"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Remove(ctx, "tok-b"); !errors.Is(err, subscribers.ErrNotFound) {
		t.Fatalf("second remove: %v, want ErrNotFound", err)
	}
	wantAudience(t, reg, "breaking", "ar")

	n, err := reg.RemoveTokens(ctx, []string{"tok-a2", "tok-never", "tok-a2", "not a token", "tok-c"})
	if err != nil || n != 2 {
		t.Fatalf("RemoveTokens = %d, %v; want 2 (only tokens that existed)", n, err)
	}
	wantAudience(t, reg, "breaking", "en")
	wantAudience(t, reg, "economy", "en")
}

func TestDeviceValidation(t *testing.T) {
	var tests []struct {
		Name   string             `json:"name"`
		Device subscribers.Device `json:"device"`
		Field  string             `json:"field"`
	}
	loadJSON(t, "devices_invalid.json", &tests)
	reg, _, _ := newRegistry(t, subscribers.Config{})
	long := subscribers.Device{Token: strings.Repeat("x", subscribers.MaxTokenBytes+1), Platform: "android"}
	tests = append(tests, struct {
		Name   string             `json:"name"`
		Device subscribers.Device `json:"device"`
		Field  string             `json:"field"`
	}{"token too long", long, "token"})
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			_, _, err := reg.Upsert(t.Context(), tt.Device)
			fes := alert.FieldErrors(err)
			if len(fes) == 0 || fes[0].Field != tt.Field {
				t.Fatalf("Upsert(%+v) = %v, want a field error naming %q", tt.Device, err, tt.Field)
			}
			if !errors.Is(err, alert.ErrInvalid) {
				t.Fatalf("error %v does not match alert.ErrInvalid", err)
			}
		})
	}
	if n, _ := reg.Count(t.Context(), "breaking", "ar"); n != 0 {
		t.Fatalf("invalid devices were indexed: %d", n)
	}
}

// TestConcurrentUpdatesKeepIndexesConsistent updates one device from many
// goroutines at once and checks that every audience index holds it exactly
// when its final stored state says so.
func TestConcurrentUpdatesKeepIndexesConsistent(t *testing.T) {
	reg, _, _ := newRegistry(t, subscribers.Config{})
	langs := []string{"ar", "en", "fr-CA"}
	topics := []string{"breaking", "sports", "economy", "politics", "tech"}
	for round := range 4 {
		token := fmt.Sprintf("tok-%d", round)
		var wg sync.WaitGroup
		for g := range 12 {
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for range 40 {
					if rnd.IntN(8) == 0 {
						if err := reg.Remove(t.Context(), token); err != nil && !errors.Is(err, subscribers.ErrNotFound) {
							t.Error(err)
						}
						continue
					}
					var ts []string
					for _, tp := range topics {
						if rnd.IntN(2) == 0 {
							ts = append(ts, tp)
						}
					}
					d := subscribers.Device{Token: token, Platform: subscribers.PlatformAndroid, Lang: langs[rnd.IntN(len(langs))], Topics: ts}
					if _, _, err := reg.Upsert(t.Context(), d); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()

		d, err := reg.Device(t.Context(), token)
		exists := err == nil
		if err != nil && !errors.Is(err, subscribers.ErrNotFound) {
			t.Fatal(err)
		}
		for _, lang := range []string{"ar", "en", "fr"} {
			for _, tp := range topics {
				want := exists && subscribers.IndexLang(d.Lang) == lang && slices.Contains(d.Topics, tp)
				got := slices.Contains(walk(t, reg, tp, lang), token)
				if got != want {
					t.Errorf("round %d: index %s/%s holds %s: %v; final device %+v (exists %v)", round, tp, lang, token, got, d, exists)
				}
			}
		}
	}
}

// TestPageWalksEveryTokenOnce walks a 100k audience in pages and checks
// each token comes exactly once, in join order, and that devices joining
// during the walk are reached at the end.
func TestPageWalksEveryTokenOnce(t *testing.T) {
	const n = 100_000
	reg, _, _ := newRegistry(t, subscribers.Config{})
	ctx := t.Context()
	ds := make([]subscribers.Device, n)
	for i := range ds {
		ds[i] = subscribers.Device{Token: fmt.Sprintf("tok-%06d", i), Platform: subscribers.PlatformAndroid}
	}
	if err := reg.UpsertBatch(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if c, _ := reg.Count(ctx, "breaking", "ar"); c != n {
		t.Fatalf("Count = %d, want %d", c, n)
	}

	seen := make(map[string]bool, n+10)
	var order []string
	var cur subscribers.Cursor
	for pages := 0; ; pages++ {
		page, next, err := reg.Page(ctx, "breaking", "ar", cur, subscribers.MaxPage)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			if next != cur {
				t.Fatalf("an empty page moved the cursor from %d to %d", cur, next)
			}
			break
		}
		if len(page) > subscribers.MaxPage {
			t.Fatalf("page of %d tokens, over MaxPage", len(page))
		}
		if next <= cur {
			t.Fatalf("cursor went from %d to %d", cur, next)
		}
		for _, tok := range page {
			if seen[tok] {
				t.Fatalf("token %s returned twice", tok)
			}
			seen[tok] = true
			order = append(order, tok)
		}
		if pages == 10 { // devices join mid-walk
			for i := range 10 {
				if _, _, err := reg.Upsert(ctx, subscribers.Device{Token: fmt.Sprintf("late-%d", i), Platform: subscribers.PlatformIOS}); err != nil {
					t.Fatal(err)
				}
			}
		}
		cur = next
	}
	if len(order) != n+10 {
		t.Fatalf("walk returned %d tokens, want %d", len(order), n+10)
	}
	for i := range n {
		if want := fmt.Sprintf("tok-%06d", i); order[i] != want {
			t.Fatalf("token %d is %s, want %s: not in join order", i, order[i], want)
		}
	}
	for i, tok := range order[n:] {
		if tok != fmt.Sprintf("late-%d", i) {
			t.Fatalf("late joiner %d is %s", i, tok)
		}
	}
	if page, _, err := reg.Page(ctx, "breaking", "ar", 0, 3); err != nil || len(page) != 3 {
		t.Fatalf("Page with limit 3 returned %d tokens, %v", len(page), err)
	}
	if _, _, err := reg.Page(ctx, "Breaking News", "ar", 0, 3); alert.FieldErrors(err) == nil {
		t.Fatalf("Page with a bad topic: %v, want a field error", err)
	}
}

func TestExpire(t *testing.T) {
	clk := newClock()
	reg, _, _ := newRegistry(t, subscribers.Config{Now: clk.Now})
	ctx := t.Context()
	t0 := clk.Now()
	reg.Upsert(ctx, subscribers.Device{Token: "old", Platform: subscribers.PlatformAndroid, Topics: []string{"breaking", "sports"}})
	reg.Upsert(ctx, subscribers.Device{Token: "refreshed", Platform: subscribers.PlatformAndroid})
	clk.Advance(200 * 24 * time.Hour)
	reg.Upsert(ctx, subscribers.Device{Token: "refreshed", Platform: subscribers.PlatformAndroid})
	reg.Upsert(ctx, subscribers.Device{Token: "new", Platform: subscribers.PlatformIOS})

	tests := []struct {
		at      time.Time
		removed int
		left    []string
	}{
		{t0.Add(subscribers.DefaultDeviceTTL - time.Millisecond), 0, []string{"old", "refreshed", "new"}},
		{t0.Add(subscribers.DefaultDeviceTTL), 1, []string{"refreshed", "new"}},
		{t0.Add(subscribers.DefaultDeviceTTL + 199*24*time.Hour), 0, []string{"refreshed", "new"}},
		{t0.Add(200*24*time.Hour + subscribers.DefaultDeviceTTL), 2, nil},
	}
	for _, tt := range tests {
		n, err := reg.Expire(ctx, tt.at)
		if err != nil || n != tt.removed {
			t.Fatalf("Expire(%v) = %d, %v; want %d", tt.at, n, err, tt.removed)
		}
		wantAudience(t, reg, "breaking", "ar", tt.left...)
	}
	wantAudience(t, reg, "sports", "ar")
}

func TestExpireManyInBatches(t *testing.T) {
	clk := newClock()
	reg, _, _ := newRegistry(t, subscribers.Config{Now: clk.Now, DeviceTTL: time.Hour})
	ds := make([]subscribers.Device, 1234)
	for i := range ds {
		ds[i] = subscribers.Device{Token: fmt.Sprintf("t%d", i), Platform: subscribers.PlatformWeb}
	}
	if err := reg.UpsertBatch(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	n, err := reg.Expire(t.Context(), clk.Now().Add(time.Hour))
	if err != nil || n != len(ds) {
		t.Fatalf("Expire = %d, %v; want %d", n, err, len(ds))
	}
	wantAudience(t, reg, "breaking", "ar")
}

func TestEndpointLifecycle(t *testing.T) {
	clk := newClock()
	reg, _, _ := newRegistry(t, subscribers.Config{Now: clk.Now})
	ctx := t.Context()
	const desc = "موقع الشريك — تنبيهات عاجلة"
	e, err := reg.CreateEndpoint(ctx, subscribers.EndpointSpec{
		URL: "https://partner.example/hooks/ajil", Description: desc,
		Filter: subscribers.Filter{Kinds: []alert.Kind{alert.KindPublished}, Topics: []string{"breaking"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.ID, "ep_") || !e.Enabled() || !e.Created.Equal(clk.Now()) {
		t.Fatalf("new endpoint %+v: want an ep_ ID, enabled, created now", e)
	}
	checkSecret(t, e.Secret)

	got, err := reg.Endpoint(ctx, e.ID)
	if err != nil || got.Description != desc || got.Secret != e.Secret || !slices.Equal(got.Filter.Topics, []string{"breaking"}) {
		t.Fatalf("Endpoint = %+v, %v; want what was created", got, err)
	}
	if _, err := reg.CreateEndpoint(ctx, subscribers.EndpointSpec{URL: e.URL}); !errors.Is(err, subscribers.ErrConflict) || !strings.Contains(err.Error(), e.ID) {
		t.Fatalf("second endpoint for the same URL: %v, want ErrConflict naming %s", err, e.ID)
	}

	other, err := reg.CreateEndpoint(ctx, subscribers.EndpointSpec{URL: "https://other.example/h"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := reg.Endpoints(ctx)
	if err != nil || len(list) != 2 || list[0].ID != e.ID || list[1].ID != other.ID {
		t.Fatalf("Endpoints = %v, %v; want both, oldest first", list, err)
	}

	// PATCH: only what is set changes.
	newDesc := "وصف جديد"
	langs := []string{"ar"}
	upd, err := reg.UpdateEndpoint(ctx, e.ID, subscribers.EndpointPatch{Description: &newDesc, Langs: &langs})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Description != newDesc || upd.URL != e.URL || !slices.Equal(upd.Filter.Kinds, []alert.Kind{alert.KindPublished}) || !slices.Equal(upd.Filter.Langs, langs) {
		t.Fatalf("after patch: %+v", upd)
	}
	taken := other.URL
	if _, err := reg.UpdateEndpoint(ctx, e.ID, subscribers.EndpointPatch{URL: &taken}); !errors.Is(err, subscribers.ErrConflict) {
		t.Fatalf("patch onto another endpoint's URL: %v, want ErrConflict", err)
	}
	moved := "https://partner.example/hooks/v2"
	if _, err := reg.UpdateEndpoint(ctx, e.ID, subscribers.EndpointPatch{URL: &moved}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateEndpoint(ctx, subscribers.EndpointSpec{URL: e.URL}); err != nil {
		t.Fatalf("the old URL is free again after a move: %v", err)
	}
	bad := "http://partner.example/x"
	if _, err := reg.UpdateEndpoint(ctx, e.ID, subscribers.EndpointPatch{URL: &bad}); len(alert.FieldErrors(err)) == 0 || alert.FieldErrors(err)[0].Field != "url" {
		t.Fatalf("patch to an http URL: %v, want a url field error", err)
	}

	clk.Advance(time.Minute)
	dis, err := reg.DisableEndpoint(ctx, e.ID, "410 Gone from the endpoint")
	if err != nil || dis.Enabled() || dis.DisabledReason != "410 Gone from the endpoint" || !dis.DisabledAt.Equal(clk.Now()) {
		t.Fatalf("DisableEndpoint = %+v, %v", dis, err)
	}
	en, err := reg.EnableEndpoint(ctx, e.ID)
	if err != nil || !en.Enabled() || en.DisabledReason != "" || !en.DisabledAt.IsZero() {
		t.Fatalf("EnableEndpoint = %+v, %v", en, err)
	}

	if err := reg.DeleteEndpoint(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"get":    func() error { _, err := reg.Endpoint(ctx, e.ID); return err }(),
		"delete": reg.DeleteEndpoint(ctx, e.ID),
		"rotate": func() error { _, err := reg.RotateSecret(ctx, e.ID); return err }(),
		"enable": func() error { _, err := reg.EnableEndpoint(ctx, e.ID); return err }(),
		"update": func() error {
			_, err := reg.UpdateEndpoint(ctx, e.ID, subscribers.EndpointPatch{Description: &newDesc})
			return err
		}(),
		"bad ID":  func() error { _, err := reg.Endpoint(ctx, "../../etc"); return err }(),
		"disable": func() error { _, err := reg.DisableEndpoint(ctx, e.ID, "x"); return err }(),
	} {
		if !errors.Is(err, subscribers.ErrNotFound) {
			t.Errorf("%s after delete: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := reg.CreateEndpoint(ctx, subscribers.EndpointSpec{URL: moved}); err != nil {
		t.Fatalf("a deleted endpoint's URL is free: %v", err)
	}
}

// checkSecret checks s is a Standard Webhooks secret of 32 random bytes.
func checkSecret(t *testing.T, s string) {
	t.Helper()
	b64, ok := strings.CutPrefix(s, "whsec_")
	raw, err := base64StdDecode(b64)
	if !ok || err != nil || len(raw) != 32 {
		t.Fatalf("secret %q is not whsec_ and base64 of 32 bytes", s)
	}
}

func TestEndpointValidation(t *testing.T) {
	var tests []struct {
		URL          string `json:"url"`
		AllowHTTP    bool   `json:"allow_http"`
		AllowPrivate bool   `json:"allow_private"`
		OK           bool   `json:"ok"`
	}
	loadJSON(t, "endpoint_urls.json", &tests)
	srv := newRegistryServer(t)
	for _, tt := range tests {
		reg := subscribers.New(srv, subscribers.Config{AllowHTTP: tt.AllowHTTP, AllowPrivate: tt.AllowPrivate})
		_, err := reg.CreateEndpoint(t.Context(), subscribers.EndpointSpec{URL: tt.URL})
		if tt.OK != (err == nil) {
			t.Errorf("CreateEndpoint(%q, http=%v, private=%v) = %v, want ok=%v", tt.URL, tt.AllowHTTP, tt.AllowPrivate, err, tt.OK)
		}
		if fes := alert.FieldErrors(err); err != nil && (len(fes) == 0 || fes[0].Field != "url") {
			t.Errorf("CreateEndpoint(%q): %v does not name the url field", tt.URL, err)
		}
	}

	reg := subscribers.New(srv, subscribers.Config{})
	for field, spec := range map[string]subscribers.EndpointSpec{
		"description": {URL: "https://d.example/", Description: strings.Repeat("و", subscribers.MaxDescriptionBytes)},
		"kinds":       {URL: "https://k.example/", Filter: subscribers.Filter{Kinds: []alert.Kind{"deleted"}}},
		"topics":      {URL: "https://t.example/", Filter: subscribers.Filter{Topics: []string{"Breaking News"}}},
		"langs":       {URL: "https://l.example/", Filter: subscribers.Filter{Langs: []string{"arabic language"}}},
	} {
		_, err := reg.CreateEndpoint(t.Context(), spec)
		if fes := alert.FieldErrors(err); len(fes) != 1 || fes[0].Field != field {
			t.Errorf("CreateEndpoint(%+v) = %v, want one error naming %s", spec, err, field)
		}
	}
}

func TestSecretRotationGrace(t *testing.T) {
	for _, grace := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprint(grace), func(t *testing.T) {
			clk := newClock()
			reg, _, _ := newRegistry(t, subscribers.Config{Now: clk.Now, SecretGrace: grace})
			if grace == 0 {
				grace = subscribers.DefaultSecretGrace
			}
			ctx := t.Context()
			e, err := reg.CreateEndpoint(ctx, subscribers.EndpointSpec{URL: "https://partner.example/h"})
			if err != nil {
				t.Fatal(err)
			}
			if s := e.SigningSecrets(clk.Now()); !slices.Equal(s, []string{e.Secret}) {
				t.Fatalf("before rotation: %v", s)
			}
			clk.Advance(time.Hour)
			rotated := clk.Now()
			r, err := reg.RotateSecret(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkSecret(t, r.Secret)
			if r.Secret == e.Secret {
				t.Fatal("rotation kept the same secret")
			}
			tests := []struct {
				at   time.Time
				want []string
			}{
				{rotated, []string{r.Secret, e.Secret}},
				{rotated.Add(grace - time.Millisecond), []string{r.Secret, e.Secret}},
				{rotated.Add(grace), []string{r.Secret}},
				{rotated.Add(30 * 24 * time.Hour), []string{r.Secret}},
			}
			for _, tt := range tests {
				if got := r.SigningSecrets(tt.at); !slices.Equal(got, tt.want) {
					t.Errorf("SigningSecrets(rotation + %v) = %d secrets, want %d", tt.at.Sub(rotated), len(got), len(tt.want))
				}
			}
			stored, _ := reg.Endpoint(ctx, e.ID)
			if !slices.Equal(stored.SigningSecrets(rotated), []string{r.Secret, e.Secret}) {
				t.Fatal("the stored endpoint lost the previous secret")
			}
		})
	}
}

func TestEndpointMatches(t *testing.T) {
	var tests []struct {
		Name   string `json:"name"`
		Filter struct {
			Kinds  []alert.Kind `json:"kinds"`
			Topics []string     `json:"topics"`
			Langs  []string     `json:"langs"`
		} `json:"filter"`
		Disabled bool `json:"disabled"`
		Alert    struct {
			Kind   alert.Kind `json:"kind"`
			Lang   string     `json:"lang"`
			Topics []string   `json:"topics"`
		} `json:"alert"`
		Match bool `json:"match"`
	}
	loadJSON(t, "matches.json", &tests)
	for _, tt := range tests {
		e := subscribers.Endpoint{State: subscribers.EndpointEnabled, Filter: subscribers.Filter(tt.Filter)}
		if tt.Disabled {
			e.State = subscribers.EndpointDisabled
		}
		a := alert.Alert{Kind: tt.Alert.Kind, Lang: tt.Alert.Lang, Topics: tt.Alert.Topics}
		if got := e.Matches(a); got != tt.Match {
			t.Errorf("%s: Matches = %v, want %v", tt.Name, got, tt.Match)
		}
	}
}

// TestInProcessStore runs the registry on the in-process Redis that `ajil
// dev` uses when no --redis-url is given.
func TestInProcessStore(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	clk := newClock()
	reg := subscribers.New(rdb, subscribers.Config{Now: clk.Now})
	ctx := t.Context()
	for _, tok := range []string{"a", "b", "c"} {
		if _, _, err := reg.Upsert(ctx, subscribers.Device{Token: tok, Platform: subscribers.PlatformAndroid, Topics: []string{"breaking", "sports"}}); err != nil {
			t.Fatal(err)
		}
	}
	reg.Upsert(ctx, subscribers.Device{Token: "b", Platform: subscribers.PlatformAndroid, Lang: "en"})
	if err := reg.Rotate(ctx, "a", "a2"); err != nil {
		t.Fatal(err)
	}
	wantAudience(t, reg, "breaking", "ar", "a2", "c")
	wantAudience(t, reg, "sports", "ar", "a2", "c")
	wantAudience(t, reg, "breaking", "en", "b")
	if n, err := reg.RemoveTokens(ctx, []string{"c", "zz"}); err != nil || n != 1 {
		t.Fatalf("RemoveTokens = %d, %v", n, err)
	}
	if n, err := reg.Expire(ctx, clk.Now().Add(subscribers.DefaultDeviceTTL)); err != nil || n != 2 {
		t.Fatalf("Expire = %d, %v", n, err)
	}
	e, err := reg.CreateEndpoint(ctx, subscribers.EndpointSpec{URL: "https://partner.example/h", Description: "شريك"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.RotateSecret(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	desc := "x"
	if _, err := reg.UpdateEndpoint(ctx, e.ID, subscribers.EndpointPatch{Description: &desc}); err != nil {
		t.Fatal(err)
	}
	if err := reg.DeleteEndpoint(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
}

package publisher_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/publisher"
)

func TestParseArticle(t *testing.T) {
	tests := []struct {
		file       string
		headline   string
		bodyPrefix string // the body starts with it, and is empty when this is
		bodySuffix string
		url        string
	}{
		{
			file:       "seed-article.txt",
			headline:   "بيلاروسيا تطلب من روسيا ضمانات للدفاع عنها إذا تعرضت لعدوان",
			bodyPrefix: "شدد الرئيس البيلاروسي ألكسندر لوكاشينكو على ضرورة وجود ضمانات أمنية",
			bodySuffix: "إذا ما تعرضت لأي هجوم.",
		},
		{
			file:       "articles/og-arabic.html",
			headline:   "زلزال بقوة 6.2 درجات يضرب جنوب تركيا",
			bodyPrefix: "ضرب زلزال بقوة 6.2 درجات على مقياس ريختر جنوب تركيا فجر اليوم،",
			bodySuffix: "في سوريا.",
			url:        "https://news.example.com/2024/02/06/turkey-quake",
		},
		{
			file:       "articles/no-og.html",
			headline:   "وزير الخارجية يصل إلى القاهرة في زيارة رسمية",
			bodyPrefix: "وصل وزير الخارجية إلى القاهرة، اليوم الأحد، في زيارة رسمية يلتقي خلالها نظيره المصري لبحث «الملفات الإقليمية»",
			bodySuffix: "والعلاقات الثنائية.",
			url:        "https://www.example.org/world/1642001",
		},
		{
			file:       "articles/h1-only.html",
			headline:   "Central bank raises rates to 5.5%",
			bodyPrefix: "The central bank raised its benchmark rate by a quarter point on Wednesday",
			bodySuffix: "in 22 years.",
		},
		{
			file:       "articles/windows-1256.html",
			headline:   "الحكومة تعلن عطلة رسمية يوم الخميس",
			bodyPrefix: "أعلنت الحكومة أن يوم الخميس المقبل سيكون عطلة رسمية",
			bodySuffix: "في جميع الدوائر الحكومية.",
		},
		{
			file:       "articles/english.txt",
			headline:   "Ceasefire agreed in Gaza talks",
			bodyPrefix: "Negotiators agreed a ceasefire late on Tuesday after three days of talks, officials said.",
			url:        "https://www.example.com/world/ceasefire-2024",
		},
		{
			file:       "articles/glued-back-to-top.txt",
			headline:   "انقطاع الكهرباء عن معظم أحياء العاصمة",
			bodyPrefix: "أعلنت وزارة الكهرباء انقطاع التيار",
			bodySuffix: "في محطة التوليد الرئيسية.",
		},
		{
			file:       "articles/long-body.txt",
			headline:   "مجلس الأمن يعقد جلسة طارئة",
			bodyPrefix: "وقال المندوب في كلمته أمام المجلس إن الوضع الإنساني يتدهور بسرعة،",
			bodySuffix: alert.Ellipsis,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			a, err := publisher.ParseArticle(openArticle(t, tt.file))
			if err != nil {
				t.Fatalf("ParseArticle: %v", err)
			}
			if a.Headline != tt.headline {
				t.Errorf("Headline = %q\nwant       %q", a.Headline, tt.headline)
			}
			if !strings.HasPrefix(a.Body, tt.bodyPrefix) || !strings.HasSuffix(a.Body, tt.bodySuffix) {
				t.Errorf("Body = %q\nwant it to start with %q and end with %q", a.Body, tt.bodyPrefix, tt.bodySuffix)
			}
			if len(a.Body) > publisher.ArticleBodyBytes {
				t.Errorf("Body is %d bytes, over %d", len(a.Body), publisher.ArticleBodyBytes)
			}
			if a.URL != tt.url {
				t.Errorf("URL = %q, want %q", a.URL, tt.url)
			}
			// What the article yields must make a valid alert as it is.
			al := alert.Alert{Headline: a.Headline, Body: a.Body, URL: a.URL, Editor: "desk"}.WithDefaults(time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC))
			if err := al.Validate(); err != nil {
				t.Errorf("alert from the article is invalid: %v", err)
			}
		})
	}
}

// TestParseArticleFixtureClean checks that none of the page furniture in the
// scraped fixture reaches the alert.
func TestParseArticleFixtureClean(t *testing.T) {
	a, err := publisher.ParseArticle(openArticle(t, "seed-article.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range []string{"Jannah", "License", "خبر عاجل", "| أخبار", "اترك تعليق", "بريدك الإلكتروني", "زر الذهاب إلى الأعلى", "\n"} {
		if strings.Contains(a.Headline, junk) || strings.Contains(a.Body, junk) {
			t.Errorf("%q left in the article: %+v", junk, a)
		}
	}
}

func TestParseArticleRejects(t *testing.T) {
	tests := []struct {
		file    string
		want    error
		mention string // what the error says is missing or wrong
	}{
		{"articles/empty.txt", publisher.ErrNoHeadline, "empty"},
		{"articles/blank.txt", publisher.ErrNoHeadline, "page furniture"},
		{"articles/paragraph-first.txt", publisher.ErrNoHeadline, "too long for a headline"},
		{"articles/no-headline.html", publisher.ErrNoHeadline, "no og:title, <title> or <h1>"},
		{"articles/garbage.bin", publisher.ErrNotArticle, "binary"},
		{"articles/latin1.txt", publisher.ErrNotArticle, "not UTF-8"},
		{"articles/too-deep.html", publisher.ErrNotArticle, "does not parse as HTML"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			a, err := publisher.ParseArticle(openArticle(t, tt.file))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseArticle = %+v, %v; want %v", a, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "article: ") || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not say %q", err, tt.mention)
			}
		})
	}
}

func TestParseArticleTooLarge(t *testing.T) {
	page, err := os.ReadFile("testdata/articles/og-arabic.html")
	if err != nil {
		t.Fatal(err)
	}
	// A page padded past the limit, from a reader that never ends: the
	// parser must stop reading, not buffer all of it.
	r := &articleCountingReader{r: io.MultiReader(bytes.NewReader(page), articleEndless(' '))}
	_, err = publisher.ParseArticle(r)
	if !errors.Is(err, publisher.ErrArticleTooLarge) {
		t.Fatalf("ParseArticle = %v, want ErrArticleTooLarge", err)
	}
	if r.n > publisher.MaxArticleBytes+64<<10 {
		t.Errorf("read %d bytes, want about %d", r.n, publisher.MaxArticleBytes)
	}

	// The same page padded to exactly the limit is accepted.
	padded := append(page, bytes.Repeat([]byte(" "), publisher.MaxArticleBytes-len(page))...)
	a, err := publisher.ParseArticle(bytes.NewReader(padded))
	if err != nil || a.Headline == "" {
		t.Errorf("ParseArticle(%d bytes) = %+v, %v; want it parsed", len(padded), a, err)
	}
}

func TestParseArticleReadError(t *testing.T) {
	boom := errors.New("connection reset")
	_, err := publisher.ParseArticle(io.MultiReader(strings.NewReader("<html>"), articleErrReader{boom}))
	if !errors.Is(err, boom) {
		t.Errorf("ParseArticle = %v, want the read error wrapped", err)
	}
}

// FuzzParseArticle's seeds are in testdata/fuzz/FuzzParseArticle.
func FuzzParseArticle(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := publisher.ParseArticle(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, publisher.ErrNoHeadline) && !errors.Is(err, publisher.ErrNotArticle) {
				t.Fatalf("ParseArticle error %v matches no sentinel", err)
			}
			return
		}
		if a.Headline == "" || !utf8.ValidString(a.Headline) || strings.ContainsAny(a.Headline, "\n\r\t") {
			t.Fatalf("Headline = %q, want one line of UTF-8", a.Headline)
		}
		if !utf8.ValidString(a.Body) || len(a.Body) > publisher.ArticleBodyBytes {
			t.Fatalf("Body = %q (%d bytes), want UTF-8 within %d", a.Body, len(a.Body), publisher.ArticleBodyBytes)
		}
		al := alert.Alert{Headline: a.Headline, Body: a.Body, URL: a.URL}.WithDefaults(time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC))
		for _, fe := range alert.FieldErrors(al.Validate()) {
			if fe.Field == "url" || fe.Field == "body" {
				t.Fatalf("article makes an invalid alert: %v", fe)
			}
		}
	})
}

func openArticle(t *testing.T, name string) io.Reader {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

type articleCountingReader struct {
	r io.Reader
	n int
}

func (c *articleCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type articleEndless byte

func (e articleEndless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

type articleErrReader struct{ err error }

func (e articleErrReader) Read([]byte) (int, error) { return 0, e.err }

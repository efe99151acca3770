package publisher

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/PuerkitoBio/goquery"
	"github.com/rivo/uniseg"
	"golang.org/x/net/html/charset"

	"github.com/ajil-news/ajil/alert"
)

const (
	// MaxArticleBytes bounds what ParseArticle reads. A saved news page,
	// inline scripts and styles included, is a few hundred KiB; anything
	// past 4 MiB is not an article page.
	MaxArticleBytes = 4 << 20
	// ArticleBodyBytes bounds the body taken from an article: one opening
	// paragraph, enough for a webhook summary or the app's preview, and far
	// under alert.MaxBodyBytes so the alert stays small on the wire.
	ArticleBodyBytes = 1024
	// maxParagraphs is how many <p> of a page are tried for the body: the
	// first real paragraph comes early, and the bound keeps a hostile page
	// from costing time in proportion to its square.
	maxParagraphs = 100
)

// Errors from ParseArticle; the CLI branches on them with errors.Is.
var (
	// ErrNoHeadline means no headline could be found: the editor must pass one.
	ErrNoHeadline = errors.New("no headline found")
	// ErrArticleTooLarge means the input is over MaxArticleBytes.
	ErrArticleTooLarge = errors.New("article too large")
	// ErrNotArticle means the input is binary, text that is not UTF-8, or
	// HTML that does not parse.
	ErrNotArticle = errors.New("not an article")
)

// Article is what an alert needs from a news article.
type Article struct {
	Headline string // without the site name suffix or an "عاجل" label
	Body     string // the first paragraph, at most ArticleBodyBytes
	URL      string // the canonical http(s) address, if the article names one
}

// ParseArticle extracts an article from a saved HTML page or from the text a
// scraper took from one. It reads at most MaxArticleBytes from r.
//
// HTML (detected by sniffing, in any charset the page declares): the headline
// is og:title, else <title>, else the first <h1>; the URL is og:url, else the
// canonical link; the body is og:description, else the first substantial
// paragraph of <article>, <main> or <body>.
//
// Text (UTF-8): theme notices, labels such as "خبر عاجل", comment-form
// leftovers and "back to top" text are dropped; the first remaining line is
// the headline, a line holding only a URL is the URL, and the first real
// paragraph after the headline is the body.
//
// Either way the headline loses a trailing site name (" | أخبار") and a
// leading urgency label ("عاجل: "), and the body is cut with
// alert.Truncate to ArticleBodyBytes.
func ParseArticle(r io.Reader) (Article, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxArticleBytes+1))
	if err != nil {
		return Article{}, fmt.Errorf("article: read: %w", err)
	}
	if len(b) > MaxArticleBytes {
		return Article{}, fmt.Errorf("article: %w: over %d MiB; save the article page alone, or pass --headline",
			ErrArticleTooLarge, MaxArticleBytes>>20)
	}
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	if len(bytes.TrimSpace(b)) == 0 {
		return Article{}, fmt.Errorf("article: %w: the input is empty; pass --headline", ErrNoHeadline)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return Article{}, fmt.Errorf("article: %w: the input is binary, not HTML or text; pass --headline", ErrNotArticle)
	}
	if isHTML(b) {
		return parseHTML(b)
	}
	if !utf8.Valid(b) {
		return Article{}, fmt.Errorf("article: %w: the text is not UTF-8; save it as UTF-8 or pass --headline", ErrNotArticle)
	}
	return parseText(string(b))
}

// isHTML reports whether b looks like a web page rather than plain text.
func isHTML(b []byte) bool {
	head := b[:min(len(b), 1024)]
	if strings.HasPrefix(http.DetectContentType(head), "text/html") {
		return true
	}
	lower := bytes.ToLower(head)
	for _, tag := range []string{"<html", "<head", "<meta ", "<body"} {
		if bytes.Contains(lower, []byte(tag)) {
			return true
		}
	}
	return false
}

func parseHTML(b []byte) (Article, error) {
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(decodeHTML(b)))
	if err != nil {
		return Article{}, fmt.Errorf("article: %w: the page does not parse as HTML (%v); pass --headline", ErrNotArticle, err)
	}
	doc.Find("script, style, noscript, template, svg, iframe, nav").Remove()

	var a Article
	for _, h := range []string{meta(doc, "og:title"), doc.Find("title").First().Text(), doc.Find("h1").First().Text()} {
		if a.Headline = cleanHeadline(h); a.Headline != "" {
			break
		}
	}
	if a.Headline == "" {
		return Article{}, fmt.Errorf("article: %w: the page has no og:title, <title> or <h1>; pass --headline", ErrNoHeadline)
	}
	a.URL = absoluteURL(meta(doc, "og:url"))
	if a.URL == "" {
		a.URL = absoluteURL(doc.Find(`link[rel~="canonical"]`).First().AttrOr("href", ""))
	}
	a.Body = clean(meta(doc, "og:description"))
	for _, scope := range []string{"article", "main", "body"} {
		if a.Body != "" {
			break
		}
		doc.Find(scope + " p").EachWithBreak(func(i int, p *goquery.Selection) bool {
			if i >= maxParagraphs {
				return false
			}
			if p.Closest("header, footer, aside, form").Length() > 0 {
				return true
			}
			if text := clean(p.Text()); isParagraph(text) && !isBoilerplate(text) && text != a.Headline {
				a.Body = text
				return false
			}
			return true
		})
	}
	a.Body = alert.Truncate(a.Body, ArticleBodyBytes)
	return a, nil
}

// decodeHTML returns the page as UTF-8: as it is when it already is, else
// decoded from the charset its BOM or <meta> declares (windows-1256 is still
// common on Arabic sites), else from windows-1252, as browsers do.
func decodeHTML(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	enc, _, _ := charset.DetermineEncoding(b, "")
	if out, err := enc.NewDecoder().Bytes(b); err == nil {
		b = out
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// meta returns the content of the <meta> with the given property or name.
func meta(doc *goquery.Document, key string) string {
	sel := fmt.Sprintf(`meta[property=%q], meta[name=%q]`, key, key)
	var content string
	doc.Find(sel).EachWithBreak(func(_ int, m *goquery.Selection) bool {
		content = strings.TrimSpace(m.AttrOr("content", ""))
		return content == ""
	})
	return content
}

// absoluteURL returns s if it is an absolute http(s) URL that fits an alert,
// else "": a relative or odd link is worse than none, which the editor can
// pass with --url.
func absoluteURL(s string) string {
	s = strings.TrimSpace(s)
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(s) > alert.MaxURLBytes {
		return ""
	}
	return s
}

func parseText(s string) (Article, error) {
	var a Article
	for line := range textLines(s) {
		switch {
		case absoluteURL(line) == line:
			if a.URL == "" {
				a.URL = line
			}
		case a.Headline == "":
			a.Headline = cleanHeadline(line)
			if !graphemesAtMost(a.Headline, alert.MaxHeadlineGraphemes) {
				return Article{}, fmt.Errorf("article: %w: the first line is over %d characters, too long for a headline; put the headline first or pass --headline",
					ErrNoHeadline, alert.MaxHeadlineGraphemes)
			}
		case a.Body == "" && isParagraph(line):
			a.Body = alert.Truncate(line, ArticleBodyBytes)
		}
		if a.Headline != "" && a.Body != "" && a.URL != "" {
			break
		}
	}
	if a.Headline == "" {
		return Article{}, fmt.Errorf("article: %w: the text has no line that is not page furniture; pass --headline", ErrNoHeadline)
	}
	return a, nil
}

// textLines yields the lines of a scraped page that may belong to the
// article: cleaned, without boilerplate, and none after the comment form.
func textLines(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for line := range strings.Lines(s) {
			line = clean(trimTrailing(line))
			if line == "" {
				continue
			}
			if rule, ok := matchBoilerplate(line); ok {
				if rule.endsArticle {
					return
				}
				continue
			}
			if !yield(line) {
				return
			}
		}
	}
}

// lineRule recognises page furniture in a line of text.
type lineRule struct {
	// re matches a whole line of furniture in its alert.Normalize form, so
	// that diacritics, hamza forms and punctuation do not matter; for a
	// trailing rule it matches the end of the raw line instead.
	re *regexp.Regexp
	// trailing rules cut furniture that scrapers glue to the end of a line
	// of text, keeping the text before it.
	trailing bool
	// endsArticle means nothing after such a line is article text.
	endsArticle bool
}

// boilerplate is every kind of furniture a scraped page carries around the
// article. Whole-line patterns are written in normalized form: ا for أ إ آ,
// ي for ى, ه for ة, no punctuation, lower case. It is never modified.
var boilerplate = [...]lineRule{
	// Theme and plugin licence nags, e.g. "Jannah Theme License is not
	// validated, Go to the theme options page to validate the license, …".
	{re: regexp.MustCompile(`\b(theme|plugin)\b.*\blicen[cs]e\b.*\b(validat|activat|regist)`)},
	{re: regexp.MustCompile(`\blicen[cs]e (key |code )?(is )?(not |in)(validated|activated|registered|valid)\b`)},
	{re: regexp.MustCompile(`^(please )?(validate|activate|register) (the|your) (theme|licen[cs]e|copy|purchase code)\b`)},
	{re: regexp.MustCompile(`(ترخيص|رخصه) (القالب|الاضافه)`)},
	// Section labels on a line of their own.
	{re: regexp.MustCompile(`^(خبر عاجل|عاجل|عاجل جدا|اخبار عاجله|الخبر العاجل|breaking|breaking news|urgent|just in|مباشر|بث مباشر|live)$`)},
	// Share and "read also" widgets.
	{re: regexp.MustCompile(`^(شارك|مشاركه|شارك الخبر|share|share this|اقرا ايضا|اقرا المزيد|read more|read also|related articles|مواضيع ذات صله)( (على|عبر|on|via)( \S+){1,4})?$`)},
	// The comment form: the article is over.
	{re: regexp.MustCompile(`^(اترك|اضف|اكتب) (تعليقا|تعليق|تعليقك|ردا|رد)$`), endsArticle: true},
	{re: regexp.MustCompile(`^(leave a (reply|comment)|add a comment|post a comment)$`), endsArticle: true},
	{re: regexp.MustCompile(`^لن يتم نشر عنوان بريدك الالكتروني`), endsArticle: true},
	{re: regexp.MustCompile(`^your email address will not be published`), endsArticle: true},
	{re: regexp.MustCompile(`^(الحقول الالزاميه مشار اليها|required fields are marked|احفظ اسمي|save my name)`), endsArticle: true},
	// The "back to top" button, on a line of its own or glued to the last one.
	{re: regexp.MustCompile(`^(زر )?(الذهاب|العوده|الرجوع) (الي الاعلي|للاعلي)$|^(scroll )?back to top( button)?$`)},
	{re: regexp.MustCompile(`\s*زر\s+(?:الذهاب|العودة|الرجوع)\s+[إا]لى\s+ال[أا]على\s*$|(?i:\s*\bback\s+to\s+top\s+button\s*$)`), trailing: true},
}

// maxFurnitureBytes bounds the lines matched against the whole-line rules
// and the tail searched by the trailing ones: furniture is a short phrase or
// notice, and long lines then cost no regexp time.
const maxFurnitureBytes = 512

// trimTrailing removes the furniture that trailing rules find at the end of
// line.
func trimTrailing(line string) string {
	i := max(0, len(line)-maxFurnitureBytes)
	for i < len(line) && !utf8.RuneStart(line[i]) {
		i++
	}
	head, tail := line[:i], line[i:]
	for _, rule := range boilerplate {
		if rule.trailing {
			tail = rule.re.ReplaceAllString(tail, "")
		}
	}
	return head + tail
}

func matchBoilerplate(line string) (lineRule, bool) {
	if len(line) > maxFurnitureBytes {
		return lineRule{}, false
	}
	n := alert.Normalize(line)
	for _, rule := range boilerplate {
		if !rule.trailing && rule.re.MatchString(n) {
			return rule, true
		}
	}
	return lineRule{}, false
}

func isBoilerplate(line string) bool {
	_, ok := matchBoilerplate(line)
	return ok
}

// isParagraph tells article prose from subheadings, bylines and captions:
// a sentence that ends as one, or a long run of words.
func isParagraph(line string) bool {
	words := len(strings.Fields(line))
	last, _ := utf8.DecodeLastRuneInString(strings.TrimRight(line, "\"'”’»)]"))
	return words >= 12 || (words >= 4 && strings.ContainsRune(".!?؟…", last))
}

var (
	// siteSuffix is a trailing " | Site" or " - Site" on a page title.
	siteSuffix = regexp.MustCompile(`^(.*\S)(?:\s*\|\s*|\s+[-–—]\s+)([^|]+)$`)
	// urgencyLabel is a leading "عاجل:" or "Breaking |" on a headline: the
	// notification already says it is breaking news.
	urgencyLabel = regexp.MustCompile(`(?i)^(?:خبر\s+عاجل|عاجل|breaking(?:\s+news)?|urgent)\s*[:|\-–—]\s*`)
)

// maxSuffixWords and maxSuffixGraphemes bound what counts as a site name:
// "أخبار", "الجزيرة نت" or "BBC News عربي", not the second half of a
// headline that has a dash in it. Titles carry at most a section and a site
// name ("Headline | World | Site"), so at most maxSuffixes are removed.
const (
	maxSuffixWords     = 4
	maxSuffixGraphemes = 32
	maxSuffixes        = 2
)

// cleanHeadline removes the site name suffixes and the urgency label. A line
// far too long to be a headline is only cleaned, which bounds the work a
// hostile input costs.
func cleanHeadline(s string) string {
	s = clean(s)
	if !graphemesAtMost(s, 2*alert.MaxHeadlineGraphemes) {
		return s
	}
	for range maxSuffixes {
		m := siteSuffix.FindStringSubmatch(s)
		if m == nil {
			break
		}
		head, site := m[1], strings.TrimSpace(m[2])
		sw, hw := len(strings.Fields(site)), len(strings.Fields(head))
		if sw > maxSuffixWords || alert.GraphemeCount(site) > maxSuffixGraphemes || hw < 3 || hw <= sw {
			break
		}
		s = head
	}
	return strings.TrimSpace(urgencyLabel.ReplaceAllString(s, ""))
}

// clean makes s one line of valid UTF-8 text: control characters become
// spaces, runs of white space one space, and invisible format characters
// (bidi marks, BOM) at either end go.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return strings.TrimFunc(strings.Join(strings.Fields(s), " "), func(r rune) bool {
		return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r)
	})
}

// graphemesAtMost reports whether s has at most n grapheme clusters, reading
// no more of s than it needs to.
func graphemesAtMost(s string, n int) bool {
	state := -1
	for ; s != "" && n >= 0; n-- {
		_, s, _, state = uniseg.FirstGraphemeClusterInString(s, state)
	}
	return n >= 0
}

package report

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// Markup in a target's URL, endpoint names, query text, function names and
// probe details is shown as text and never becomes an element.
func TestXSSInHTML(t *testing.T) {
	r := xssReport()
	opt := HTMLOptions{Timeline: timelineFor(r), CPUProfile: cpuProfile("main.(*"+xssScript+").h", xssImg, "runtime.mallocgc", "net/http.(*conn).serve"),
		ProfileLabel: xssImg, Notes: []string{xssScript}}
	page := render(t, r, opt)
	assertInert(t, page)
	if strings.Contains(page, "<script>") || strings.Contains(page, "<img") {
		t.Fatal("raw markup from the target in the page")
	}
	var body string
	walk(t, page, func(n *html.Node) {
		if n.Data == "body" {
			body = textOf(n)
		}
	})
	// Shown literally, as text: escaped, not dropped.
	for _, want := range []string{"GET /" + xssScript + xssImg, "SELECT '" + xssScript, "main.(*" + xssScript + xssImg + ").ServeHTTP", "Sequential scan " + xssScript} {
		if !strings.Contains(body, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
}

func TestXSSInMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, xssReport()); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, bad := range []string{"<script", "<img", "]("} {
		if strings.Contains(md, bad) {
			t.Errorf("markdown carries %q:\n%s", bad, md)
		}
	}
	if !strings.Contains(md, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("markdown does not show the markup as text:\n%s", md)
	}
	// Every backtick from the target is escaped: the only code spans are
	// the finding kinds chokepoint writes itself.
	for _, line := range strings.Split(md, "\n") {
		if strings.Count(line, "`")-strings.Count(line, "\\`") > 2 {
			t.Errorf("unbalanced code span from target text: %q", line)
		}
	}
}

// Terminal escape sequences from the target do not reach the terminal.
func TestTextControlCharacters(t *testing.T) {
	r := completeReport()
	r.Endpoints[0].Name = "GET /\x1b[2J\x1b]0;pwned\x07"
	r.Findings[0].Title = "title\rover"
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); strings.ContainsAny(s, "\x1b\x07\r") {
		t.Errorf("control characters in text output: %q", s)
	}
}

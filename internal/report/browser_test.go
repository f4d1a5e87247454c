package report

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds one page's test, browser start included; Chromium
// starts in about a second here, rendering takes milliseconds.
const browserTimeout = 60 * time.Second

// chromium finds the browser, or skips (fails under CI=true) with how to
// install it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHOKEPOINT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	noBrowser(t, "no Chromium found")
	return ""
}

func noBrowser(t *testing.T, why string) {
	t.Helper()
	msg := why + ": install it (Debian: apt-get install -y chromium; scripts/install-deps.sh does) or set CHOKEPOINT_CHROMIUM"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// artifactDir is where screenshots go: $CHOKEPOINT_ARTIFACTS, else a
// directory of the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("CHOKEPOINT_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// pageEvents records what a page did that it must not: console errors,
// exceptions, dialogs, and requests other than the page itself.
type pageEvents struct {
	mu       sync.Mutex
	requests []string
	problems []string
}

func (p *pageEvents) listen(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		if e.Request != nil {
			p.requests = append(p.requests, e.Request.URL)
		}
	case *runtime.EventConsoleAPICalled:
		p.problems = append(p.problems, fmt.Sprintf("console.%s called", e.Type))
	case *runtime.EventExceptionThrown:
		p.problems = append(p.problems, "exception: "+e.ExceptionDetails.Text)
	case *log.EventEntryAdded:
		if e.Entry != nil && (e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning) {
			p.problems = append(p.problems, fmt.Sprintf("console %s (%s): %s", e.Entry.Level, e.Entry.Source, e.Entry.Text))
		}
	case *page.EventJavascriptDialogOpening:
		p.problems = append(p.problems, "dialog opened: "+e.Message)
	}
}

func (p *pageEvents) snapshot() (requests, problems []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...), append([]string(nil), p.problems...)
}

// TestReportInChromium opens report.html from a file:// URL in headless
// Chromium: it must render with no console error and no request but its
// own, show the verdict and every finding's title, and leave a screenshot.
func TestReportInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	exe := chromium(t)
	artifacts := artifactDir(t)
	tests := []struct {
		name string
		r    *Report
		opt  HTMLOptions
	}{
		{"complete", completeReport(), HTMLOptions{Timeline: timelineFor(completeReport()), CPUProfile: cpuProfile(), ProfileLabel: "CPU profile of step 8 at 900 req/s"}},
		{"xss", xssReport(), HTMLOptions{Timeline: timelineFor(xssReport()), CPUProfile: cpuProfile("main.(*"+xssScript+").h", xssImg, "runtime.mallocgc", "main.serve")}},
		{"partial", partialReport(), HTMLOptions{}},
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	defer cancelAlloc()

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(artifacts, "report-"+tt.name+".html")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteHTML(f, tt.r, tt.opt); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			pageURL := (&url.URL{Scheme: "file", Path: path}).String()

			ev := &pageEvents{}
			ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(ev.listen))
			defer cancel()
			ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
			defer cancelTimeout()

			if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
				if strings.Contains(err.Error(), "exec") || strings.Contains(err.Error(), "chrome") || strings.Contains(err.Error(), "browser") {
					noBrowser(t, "Chromium did not start: "+err.Error())
				}
				t.Fatal(err)
			}
			verdict, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#verdict-line"), chromedp.NodeVisible))
			if err != nil {
				t.Fatalf("verdict not visible: %v", err)
			}
			if strings.TrimSpace(verdict) != Verdict(tt.r) {
				t.Errorf("verdict %q, want %q", verdict, Verdict(tt.r))
			}
			for i, fd := range tt.r.Findings {
				sel := chromedp.CSS(fmt.Sprintf("#finding-%d .finding-title", i+1))
				title, err := chromedp.Run(ctx, chromedp.Text(sel, chromedp.NodeVisible))
				if err != nil {
					t.Errorf("finding %d not visible: %v", i+1, err)
					continue
				}
				if strings.TrimSpace(title) != fd.Title {
					t.Errorf("finding %d shows %q, want %q", i+1, title, fd.Title)
				}
			}
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			shot := filepath.Join(artifacts, "report-"+tt.name+".png")
			if err := os.WriteFile(shot, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s", shot)

			requests, problems := ev.snapshot()
			for _, p := range problems {
				t.Errorf("page problem: %s", p)
			}
			if len(requests) == 0 {
				t.Error("no request seen at all: the network listener is not working")
			}
			for _, r := range requests {
				if r != pageURL {
					t.Errorf("page requested %s", r)
				}
			}
		})
	}
}

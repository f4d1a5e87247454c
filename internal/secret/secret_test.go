package secret

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestDSN(t *testing.T) {
	for _, tc := range []struct{ in, leak string }{
		{"postgres://app:s3cr3t@127.0.0.1:5432/db?sslmode=disable", "s3cr3t"},
		{"postgresql://app:p%40ss@localhost/db", "p%40ss"},
		{"postgres://app@localhost/db?password=hunter2", "hunter2"},
		{"host=127.0.0.1 user=app password=hunter2 dbname=x", "hunter2"},
		{"host=127.0.0.1 password='with space' dbname=x", "with space"},
		{"host=127.0.0.1 PASSWORD = abc dbname=x", "abc"},
	} {
		got := DSN(tc.in)
		if strings.Contains(got, tc.leak) {
			t.Errorf("DSN(%q) = %q leaks %q", tc.in, got, tc.leak)
		}
		if !strings.Contains(got, Redacted) {
			t.Errorf("DSN(%q) = %q, want %q in it", tc.in, got, Redacted)
		}
	}
	if got := DSN("postgres://app@localhost/db"); strings.Contains(got, Redacted) {
		t.Errorf("DSN without password changed: %q", got)
	}
}

func TestHeaders(t *testing.T) {
	for _, name := range []string{"Authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "Set-Cookie", "X-Session-Id", "client_secret"} {
		if !IsSensitiveHeader(name) {
			t.Errorf("%s should be sensitive", name)
		}
	}
	for _, name := range []string{"Accept", "Content-Type", "X-Request-Source"} {
		if IsSensitiveHeader(name) {
			t.Errorf("%s should not be sensitive", name)
		}
	}
	if got := HeaderLine("Authorization: Bearer abc"); strings.Contains(got, "abc") {
		t.Errorf("HeaderLine leaks: %q", got)
	}
}

func TestArgs(t *testing.T) {
	args := []string{"hunt", "-H", "Authorization: Bearer tok1", "--header=Cookie: c=tok2", "-HX-Api-Key: tok3",
		"--postgres", "postgres://u:tok4@h/db", "--postgres=postgres://u:tok5@h/db", "-H", "Accept: json",
		"--api-token=tok6", "--session-key", "tok7", "http://127.0.0.1/keys", "http://u:tok8@127.0.0.1/"}
	got := strings.Join(Args(args), " ")
	for _, leak := range []string{"tok1", "tok2", "tok3", "tok4", "tok5", "tok6", "tok7", "tok8"} {
		if strings.Contains(got, leak) {
			t.Errorf("Args leaks %s: %s", leak, got)
		}
	}
	if !strings.Contains(got, "Accept: json") || !strings.Contains(got, "http://127.0.0.1/keys") {
		t.Errorf("Args redacted a harmless header: %s", got)
	}
}

func TestString(t *testing.T) {
	s := String("pw")
	b, _ := json.Marshal(struct{ P String }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v", s, s, s), string(b)} {
		if strings.Contains(out, "pw") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if s.Reveal() != "pw" {
		t.Error("Reveal lost the value")
	}
}

package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWebConsole: with Options.Web, plain GETs of the console's path get
// the page and its files, each with headers that confine them to this
// origin.
func TestWebConsole(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Web = true })
	mux := http.NewServeMux()
	mux.Handle("/x/ops-repl", f.srv)
	mux.Handle("/x/ops-repl/", f.srv)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		path     string
		status   int
		typ      string
		location string
	}{
		{"/x/ops-repl", http.StatusSeeOther, "", "/x/ops-repl/"},
		{"/x/ops-repl/", http.StatusOK, "text/html; charset=utf-8", ""},
		{"/x/ops-repl/app.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"/x/ops-repl/app.css", http.StatusOK, "text/css; charset=utf-8", ""},
		{"/x/ops-repl/index.html", http.StatusNotFound, "", ""},
		{"/x/ops-repl/web/app.js", http.StatusNotFound, "", ""},
		{"/x/ops-repl/app.js/", http.StatusNotFound, "", ""},
		{"/x/ops-repl/nothing", http.StatusNotFound, "", ""},
		{"/x/ops-repl/?token=x", http.StatusBadRequest, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, hs.URL+tt.path, nil)
			req.URL.Opaque = strings.SplitN(tt.path, "?", 2)[0] // as sent, not cleaned
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d; want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if tt.location != "" && resp.Header.Get("Location") != tt.location {
				t.Fatalf("Location %q; want %q", resp.Header.Get("Location"), tt.location)
			}
			if tt.status != http.StatusOK {
				return
			}
			h := resp.Header
			if h.Get("Content-Type") != tt.typ {
				t.Errorf("Content-Type %q; want %q", h.Get("Content-Type"), tt.typ)
			}
			csp := h.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self';", "style-src 'self';", "frame-ancestors 'none'",
				"connect-src 'self' ws://" + strings.TrimPrefix(hs.URL, "http://") + ";", "object-src 'none'", "base-uri 'none'", "require-trusted-types-for 'script'", "trusted-types 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy %q allows something unsafe", csp)
			}
			for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
				if h.Get(k) != v {
					t.Errorf("%s: %q; want %q", k, h.Get(k), v)
				}
			}
		})
	}

	// Mounted otherwise: as the whole handler, at the root, behind
	// StripPrefix. Nothing from the request goes into a redirect.
	root := http.NewServeMux()
	root.Handle("/", f.srv)
	strip := http.NewServeMux()
	strip.Handle("/s/", http.StripPrefix("/s", f.srv))
	for _, m := range []struct {
		name    string
		handler http.Handler
		ok, bad []string
	}{
		{"whole handler", f.srv, []string{"/", "/app.js", "/app.css"}, []string{"/%5Cevil.test", "/any/dir/app.js", "/x/", "/x", "/index.html"}},
		{"root pattern", root, []string{"/", "/app.js"}, []string{"/%5Cevil.test", "/any/dir/app.js", "/x/"}},
		{"StripPrefix", strip, []string{"/s/", "/s/app.js"}, []string{"/s/%5Cevil.test", "/s/x/app.js"}},
	} {
		hs := httptest.NewServer(m.handler)
		for _, p := range append(m.ok, m.bad...) {
			req, _ := http.NewRequest(http.MethodGet, hs.URL+p, nil)
			req.URL.Opaque = p
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusOK
			if !slices.Contains(m.ok, p) {
				want = http.StatusNotFound
			}
			if resp.StatusCode != want || resp.Header.Get("Location") != "" {
				t.Errorf("%s: GET %s: %d, Location %q; want %d, no redirect", m.name, p, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
		hs.Close()
	}

	// Off by default: a plain GET says what the endpoint is.
	off := newFixture(t, nil)
	resp, err := http.Get(off.hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("without Options.Web a plain GET got %d; want 400", resp.StatusCode)
	}
}

// TestWebFilesConfined checks, by construction, what the page's files may
// do: no inline script, style or event handler (the policy would block
// them anyway), and a script that never turns server text into markup,
// runs strings as code, or keeps the token anywhere but in memory.
func TestWebFilesConfined(t *testing.T) {
	html, _ := webFiles.ReadFile("web/index.html")
	js, _ := webFiles.ReadFile("web/app.js")
	for _, bad := range []struct {
		file []byte
		re   string
	}{
		{html, `<style`},
		{html, `\sstyle=`},
		{html, `\son[a-z]+=`},
		{html, `(?:src|href)="(?:https?:)?//`},
		{js, `innerHTML|outerHTML|insertAdjacentHTML|document\.write`},
		{js, `\beval\(|new Function|setTimeout\(\s*['"]`},
		{js, `localStorage|sessionStorage|document\.cookie|indexedDB`},
		{js, `history\.(push|replace)State|location\.(href|search|hash)\s*=`},
		{js, `fetch\(|XMLHttpRequest|import\(`},
	} {
		if loc := regexp.MustCompile(bad.re).FindIndex(bad.file); loc != nil {
			t.Errorf("web file holds %q (matching %s)", bad.file[loc[0]:loc[1]], bad.re)
		}
	}
	for _, m := range regexp.MustCompile(`(?s)<script([^>]*)>(.*?)</script>`).FindAllSubmatch(html, -1) {
		if !strings.Contains(string(m[1]), ` src="`) || len(m[2]) > 0 {
			t.Errorf("inline script: %q", m[0])
		}
	}
}

// TestSessionAuditsClient: a session's open record names its client.
func TestSessionAuditsClient(t *testing.T) {
	f := newFixture(t, nil)
	f.raw(t, "admin")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.audit.String(), `"client":"Go-http-client/1.1"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no session record names the client:\n%s", f.audit.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

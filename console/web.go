package console

import (
	"embed"
	"net/http"
	"path"
	"regexp"
	"strings"
)

// webFiles are the web console (Options.Web): a page, its script and its
// style sheet, written for this package; nothing is fetched from
// elsewhere.
//
//go:embed web/index.html web/app.js web/app.css
var webFiles embed.FS

// webTypes maps each file of the web console to its content type.
var webTypes = map[string]string{
	"index.html": "text/html; charset=utf-8",
	"app.js":     "text/javascript; charset=utf-8",
	"app.css":    "text/css; charset=utf-8",
}

// plainHost is a Host header that may appear in a Content-Security-Policy.
var plainHost = regexp.MustCompile(`^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)

// serveWeb answers a plain GET when Options.Web is on: the page at the
// console's path with a trailing slash, its files right under it. The
// console's path is the ServeMux pattern that routed the request; without
// one (the Server is the whole handler, or sits behind StripPrefix) it is
// the root. Nothing from the request goes into a redirect.
func serveWeb(w http.ResponseWriter, r *http.Request) {
	p, mount := r.URL.Path, patternPath(r.Pattern)
	if mount != "" && !strings.HasPrefix(p, strings.TrimSuffix(mount, "/")) {
		mount = "" // the path was rewritten (StripPrefix): serve it as the root
	}
	if mount == "" {
		mount = "/"
	}
	dir := path.Dir(p)
	if !strings.HasSuffix(dir, "/") {
		dir += "/"
	}
	base := path.Base(p)
	name := ""
	switch {
	case !strings.HasSuffix(mount, "/"):
		// The console's own path: the page lives under it, so that its
		// relative links stay within the mount.
		http.Redirect(w, r, mount+"/", http.StatusSeeOther)
		return
	case p == mount:
		name = "index.html"
	case base != "index.html" && webTypes[base] != "" && dir == mount:
		name = base
	default:
		http.NotFound(w, r)
		return
	}
	b, err := webFiles.ReadFile("web/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", webTypes[name])
	h.Set("Content-Security-Policy", webCSP(r))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
	w.Write(b)
}

// patternPath is the path of the ServeMux pattern that routed a request
// ("GET host/x/" → "/x/"), or "" when there is none or it has wildcards.
func patternPath(pattern string) string {
	f := pattern[strings.LastIndexByte(pattern, ' ')+1:]
	i := strings.IndexByte(f, '/')
	if i < 0 || strings.Contains(f, "{") {
		return ""
	}
	return f[i:]
}

// webCSP is the page's Content-Security-Policy: its own files only, no
// inline script or style, WebSockets to this origin only, never framed.
func webCSP(r *http.Request) string {
	connect := "'self'"
	if plainHost.MatchString(r.Host) {
		scheme := "ws://"
		if r.TLS != nil {
			scheme = "wss://"
		}
		connect += " " + scheme + r.Host
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; connect-src " + connect +
		"; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" +
		"; require-trusted-types-for 'script'; trusted-types 'none'"
}

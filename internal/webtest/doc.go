// Package webtest holds the web console's tests in a real browser: they
// drive headless Chromium (github.com/chromedp/chromedp) against the demo
// service, as an operator would use the page. The package has no code of
// its own.
//
// Without a Chromium binary (Debian's chromium package) the tests skip,
// saying so, unless OPS_REPL_REQUIRE_CHROMIUM=1, as in CI, where they fail
// instead. go test ./internal/webtest -args -screenshots rewrites the
// README's screenshots under docs/.
package webtest

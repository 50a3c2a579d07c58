package webtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/pprof/profile"

	"github.com/opsrepl/opsrepl/demo"
	"github.com/opsrepl/opsrepl/sandbox"
)

var screenshots = flag.Bool("screenshots", false, "write the README's screenshots of the web console to docs/")

// TestMain: the demo evaluates Go in children of this test binary.
func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

// chromium finds the browser, or skips (fails where
// OPS_REPL_REQUIRE_CHROMIUM=1).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("OPS_REPL_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("no Chromium found and OPS_REPL_REQUIRE_CHROMIUM=1: install Debian's chromium package (apt-get install chromium)")
	}
	t.Skip("no Chromium found: install Debian's chromium package (apt-get install chromium) to run the browser tests")
	return ""
}

var (
	browserOnce sync.Once
	browserCtx  context.Context
	browserErr  error
)

// tab opens a new tab of the one headless browser this test binary runs,
// at 1280×800, failing the test on any uncaught error of the page.
func tab(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	browserOnce.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 800))
		if os.Geteuid() == 0 {
			opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run its sandbox as root
		}
		actx, _ := chromedp.NewExecAllocator(context.Background(), opts...)
		browserCtx, _ = chromedp.NewContext(actx)
		browserErr = chromedp.Do(browserCtx)
	})
	if browserErr != nil {
		t.Fatalf("starting Chromium: %v", browserErr)
	}
	var mu sync.Mutex
	var thrown []string
	var ctx context.Context
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			what := ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				what += " " + ex.Description
			}
			mu.Lock()
			thrown = append(thrown, what)
			mu.Unlock()
		case *page.EventJavascriptDialogOpening:
			mu.Lock()
			thrown = append(thrown, "a dialog opened: "+ev.Message)
			mu.Unlock()
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}))
	t.Cleanup(func() {
		cancel()
		mu.Lock()
		defer mu.Unlock()
		for _, e := range thrown {
			t.Errorf("the page: %s", e)
		}
	})
	viewport(t, ctx, 1280, 800)
	return ctx
}

var (
	demoOnce sync.Once
	theDemo  *demo.Demo
	demoErr  error
)

// startDemo starts one demo for the test binary.
func startDemo(t *testing.T) *demo.Demo {
	t.Helper()
	demoOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ops-repl-webtest-")
		if err != nil {
			demoErr = err
			return
		}
		theDemo, demoErr = demo.Start(context.Background(), demo.Options{Dir: dir})
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	return theDemo
}

// viewport sizes the tab; below 600 pixels wide, as a phone.
func viewport(t *testing.T, ctx context.Context, w, h int64) {
	t.Helper()
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: w, Height: h, DeviceScaleFactor: 1, Mobile: w < 600}); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatal(err)
	}
}

// eval returns the value of a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is true in the page.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 45 s; the page shows:\n%s", what, text(t, ctx, "body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// text returns what an element shows.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel)))
	return s
}

// signIn opens the page and connects with subject's token, pasted into
// the field (typed key by key when typed is set).
func signIn(t *testing.T, ctx context.Context, d *demo.Demo, subject string, typed ...bool) {
	t.Helper()
	run(t, ctx, chromedp.Navigate(d.WebURL), chromedp.WaitVisible(chromedp.CSS("#token")))
	if len(typed) > 0 && typed[0] {
		run(t, ctx, chromedp.SendKeys(chromedp.CSS("#token"), d.Tokens[subject]))
	} else {
		eval[string](t, ctx, fmt.Sprintf(`document.getElementById("token").value = %q`, d.Tokens[subject]))
	}
	run(t, ctx, chromedp.Click(chromedp.CSS("#connect")))
	waitJS(t, ctx, "signed in as "+subject, fmt.Sprintf(`!document.getElementById("console").hidden && document.getElementById("who").innerText.startsWith(%q)`, subject))
}

// enter puts a line at the prompt and presses Enter, then waits until
// the request has ended (the Run button is back).
func enter(t *testing.T, ctx context.Context, line string) {
	t.Helper()
	before := outputCount(t, ctx)
	eval[string](t, ctx, fmt.Sprintf(`document.getElementById("input").value = %q`, line))
	run(t, ctx, chromedp.SendKeys(chromedp.CSS("#input"), kb.End+kb.Enter))
	waitJS(t, ctx, "the request "+line+" ends", fmt.Sprintf(`document.querySelectorAll("#output pre").length > %d && !document.getElementById("run").disabled`, before))
}

func clearInput(t *testing.T, ctx context.Context) {
	t.Helper()
	eval[string](t, ctx, `document.getElementById("input").value = ""`)
}

func outputCount(t *testing.T, ctx context.Context) int {
	return eval[int](t, ctx, `document.querySelectorAll("#output pre").length`)
}

func TestSignInEachRole(t *testing.T) {
	t.Parallel()
	chromium(t) // the check after the subtests needs them to have run
	d := startDemo(t)
	for _, subject := range []string{"viewer", "operator", "admin"} {
		t.Run(subject, func(t *testing.T) {
			ctx := tab(t)
			signIn(t, ctx, d, subject, subject == "viewer")
			who := text(t, ctx, "#who")
			if !strings.Contains(who, "role:"+subject) || !strings.Contains(who, "session ") {
				t.Fatalf("the header shows %q; want the subject, its role and the session", who)
			}
			stored := eval[string](t, ctx, `JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie + location.href`)
			if strings.Contains(stored, d.Tokens[subject]) {
				t.Fatal("the token is in storage, a cookie or the URL")
			}
			enter(t, ctx, "whoami")
			if out := text(t, ctx, "#output"); !strings.Contains(out, "subject  "+subject) {
				t.Fatalf("whoami shows:\n%s", out)
			}
			run(t, ctx, chromedp.Click(chromedp.CSS("#disconnect")))
			waitJS(t, ctx, "signed out", `!document.getElementById("signin").hidden`)
		})
	}
	b, err := os.ReadFile(d.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"client":"Mozilla/5.0`) {
		t.Fatal("no session record carries the browser's User-Agent")
	}
}

// TestSignInMistakes: a pasted "Bearer TOKEN" is taken; text that is no
// token, or a wrong one, is refused without the page repeating it.
func TestSignInMistakes(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	ctx := tab(t)
	run(t, ctx, chromedp.Navigate(d.WebURL), chromedp.WaitVisible(chromedp.CSS("#token")))
	for _, bad := range []string{"not a token at all", strings.Repeat("0", 64)} {
		eval[string](t, ctx, fmt.Sprintf(`document.getElementById("token").value = %q`, bad))
		run(t, ctx, chromedp.Click(chromedp.CSS("#connect")))
		waitJS(t, ctx, "the page says the token was not taken", `document.getElementById("signin-error").innerText !== ""`)
		if msg := text(t, ctx, "#signin-error"); strings.Contains(msg, bad) {
			t.Fatalf("the page repeats what was pasted: %q", msg)
		}
		if v := eval[string](t, ctx, `document.getElementById("token").value`); v != "" {
			t.Fatalf("the field still holds %q", v)
		}
		eval[string](t, ctx, `document.getElementById("signin-error").innerText = ""`)
	}
	eval[string](t, ctx, fmt.Sprintf(`document.getElementById("token").value = %q`, "Bearer "+d.Tokens["operator"]))
	run(t, ctx, chromedp.SendKeys(chromedp.CSS("#token"), kb.Enter))
	waitJS(t, ctx, "signed in with a pasted header", `document.getElementById("who").innerText.startsWith("operator")`)
}

func TestViewerRefusedHeapdump(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	ctx := tab(t)
	signIn(t, ctx, d, "viewer")
	enter(t, ctx, "heapdump")
	waitJS(t, ctx, "the refusal is shown as an error", `[...document.querySelectorAll("#output pre.error")].some(p => p.innerText.startsWith("forbidden:"))`)
}

func TestREPL(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	ctx := tab(t)
	signIn(t, ctx, d, "admin")

	enter(t, ctx, "1+2")
	waitJS(t, ctx, "1+2 is 3", `[...document.querySelectorAll("#output pre.value")].some(p => p.innerText === "3")`)

	// Multi-line: the server answers incomplete until the loop is closed.
	enter(t, ctx, "for i := 0; i < 3; i++ {")
	if p := text(t, ctx, "#prompt"); !strings.HasPrefix(p, "…") {
		t.Fatalf("after an incomplete line the prompt is %q; want a continuation", p)
	}
	enter(t, ctx, `fmt.Println("line", i)`)
	enter(t, ctx, "}")
	if out := text(t, ctx, "#output"); !strings.Contains(out, "line 0\nline 1\nline 2") {
		t.Fatalf("the loop printed:\n%s", out)
	}
	// Completion inside unfinished Go sees the lines before.
	enter(t, ctx, "for j := 0; j < 1; j++ {")
	run(t, ctx, chromedp.SendKeys(chromedp.CSS("#input"), "fmt.Printl"+kb.Tab))
	waitJS(t, ctx, "Tab completes inside the block", `document.getElementById("input").value === "fmt.Println"`)
	clearInput(t, ctx)
	enter(t, ctx, "}")

	// History: ↑ brings the last line back.
	run(t, ctx, chromedp.SendKeys(chromedp.CSS("#input"), kb.ArrowUp))
	if v := eval[string](t, ctx, `document.getElementById("input").value`); v != "}" {
		t.Fatalf("↑ recalls %q; want the last line", v)
	}
	clearInput(t, ctx)

	// Completion: one candidate completes in place; several open a list.
	run(t, ctx, chromedp.SendKeys(chromedp.CSS("#input"), "strings.ToUpp"+kb.Tab))
	waitJS(t, ctx, "Tab completes strings.ToUpper", `document.getElementById("input").value === "strings.ToUpper"`)
	clearInput(t, ctx)
	run(t, ctx, chromedp.SendKeys(chromedp.CSS("#input"), "strings.To"+kb.Tab))
	waitJS(t, ctx, "Tab lists the candidates", `!document.getElementById("completions").hidden && document.querySelectorAll("#completions li").length > 2`)
	run(t, ctx, chromedp.SendKeys(chromedp.CSS("#input"), kb.Enter))
	waitJS(t, ctx, "Enter picks a candidate", `document.getElementById("completions").hidden && /^strings\.To[A-Z]/.test(document.getElementById("input").value)`)
	clearInput(t, ctx)

	// Cancel: Ctrl+C stops for {} long before its time limit.
	start := time.Now()
	run(t, ctx, chromedp.SendKeys(chromedp.CSS("#input"), "for {}"+kb.Enter))
	waitJS(t, ctx, "for {} runs", `!document.getElementById("cancel").disabled`)
	run(t, ctx, chromedp.KeyEvent("c", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	waitJS(t, ctx, "for {} is cancelled", `[...document.querySelectorAll("#output pre.error")].some(p => p.innerText.startsWith("canceled"))`)
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	enter(t, ctx, "2+2")
	waitJS(t, ctx, "the session goes on", `[...document.querySelectorAll("#output pre.value")].some(p => p.innerText === "4")`)
}

// TestServerTextIsText: whatever the server sends is shown as text: markup
// in output, values, errors and notices stays characters.
func TestServerTextIsText(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	ctx := tab(t)
	signIn(t, ctx, d, "admin")
	rows := []struct{ line, want string }{
		{`fmt.Println("<img src=x onerror=\"document.title='pwned'\">")`, `<img src=x onerror="document.title='pwned'">`},
		{`"<script>document.title='pwned'</script>"`, `<script>document.title='pwned'</script>`},
		{`fmt.Print("<svg onload=document.title='pwned'>")`, `<svg onload=document.title='pwned'>`},
		{`undefinedName<b>bold</b>`, `<b>bold</b>`},
		{`help <iframe src=javascript:alert(1)>`, `<iframe src=javascript:alert(1)>`},
	}
	for _, r := range rows {
		enter(t, ctx, r.line)
		if out := text(t, ctx, "#output"); !strings.Contains(out, r.want) {
			t.Errorf("after %s the output does not show %q as text:\n%s", r.line, r.want, out)
		}
	}
	n := eval[int](t, ctx, `document.querySelectorAll("#output img, #output script, #output svg, #output iframe, #output b").length`)
	title := eval[string](t, ctx, `document.title`)
	if n != 0 || title == "pwned" {
		t.Fatalf("server text became markup: %d elements, title %q", n, title)
	}
}

func TestHeapdumpDownload(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	ctx := tab(t)
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
		t.Fatal(err)
	}
	signIn(t, ctx, d, "admin")
	enter(t, ctx, "heapdump")
	waitJS(t, ctx, "the dump is verified and offered", `!!document.querySelector("#output .file a[download]")`)
	name := eval[string](t, ctx, `document.querySelector("#output .file a[download]").download`)
	sum := eval[string](t, ctx, `document.querySelector("#output .file a[download]").dataset.sha256`)
	if !strings.HasPrefix(name, "heap-") || !strings.HasSuffix(name, ".pb.gz") {
		t.Fatalf("download name %q; want the server's heap-….pb.gz", name)
	}
	path := filepath.Join(dir, name)
	var b []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if b, err = os.ReadFile(path); err == nil && len(b) > 0 {
			if _, err := os.Stat(path + ".crdownload"); errors.Is(err, os.ErrNotExist) {
				break
			}
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(dir)
			t.Fatalf("no download at %s after 30 s (folder: %v)", path, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := sha256.Sum256(b)
	if hex.EncodeToString(got[:]) != sum {
		t.Fatalf("the downloaded bytes hash to %x; the server's SHA-256 is %s", got, sum)
	}
	if _, err := profile.ParseData(b); err != nil {
		t.Fatalf("the download is not a heap profile: %v", err)
	}
}

func TestMemoryChart(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	ctx := tab(t)
	signIn(t, ctx, d, "operator")
	run(t, ctx, chromedp.Click(chromedp.CSS("#charts-toggle")))
	waitJS(t, ctx, "the heap chart draws points", `Number((document.querySelector("#chart-heap polyline.live") || {dataset: {}}).dataset.points || 0) >= 2`)
	waitJS(t, ctx, "the goroutines chart draws points", `!!document.querySelector("#chart-goroutines polyline.gor")`)
	if s := text(t, ctx, "#gc-cycles"); s == "" || s == "–" {
		t.Fatalf("GC cycles shows %q", s)
	}
	run(t, ctx, chromedp.Click(chromedp.CSS("#goroutines-refresh")))
	waitJS(t, ctx, "the goroutines table fills", `document.querySelectorAll("#goroutines-table tbody tr").length > 2`)
	// Sorting by function, then by count again.
	run(t, ctx, chromedp.Click(chromedp.CSS(`#goroutines-table button[data-sort="fn"]`)))
	waitJS(t, ctx, "sorted by function", `document.querySelector("#goroutines-table th[aria-sort=ascending] button").dataset.sort === "fn"`)
	if !eval[bool](t, ctx, `(() => { const v = [...document.querySelectorAll("#goroutines-table tbody tr td:nth-child(2)")].map(td => td.innerText); return v.every((x, i) => i === 0 || v[i-1] <= x); })()`) {
		t.Fatal("the rows are not in function order")
	}
	run(t, ctx, chromedp.Click(chromedp.CSS("#charts-toggle")))
	waitJS(t, ctx, "the charts stop", `document.getElementById("charts-toggle").getAttribute("aria-pressed") === "false"`)
}

// TestOtherOrigin: a page from another origin, holding a valid token,
// cannot open a session.
func TestOtherOrigin(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/evil.js" {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprintf(w, `const ws = new WebSocket(%q, ["ops-repl.v1", "ops-repl.bearer.%s"]);
ws.onopen = () => { document.title = "open"; };
ws.onclose = () => { if (document.title !== "open") document.title = "refused"; };`, d.ConsoleURL, d.Tokens["admin"])
			return
		}
		fmt.Fprint(w, `<!doctype html><title>waiting</title><script src="/evil.js"></script>`)
	}))
	defer evil.Close()
	ctx := tab(t)
	run(t, ctx, chromedp.Navigate(evil.URL))
	waitJS(t, ctx, "the foreign page's connection ends", `document.title !== "waiting"`)
	if title := eval[string](t, ctx, `document.title`); title != "refused" {
		t.Fatalf("a page from %s opened a session (title %q)", evil.URL, title)
	}
	b, _ := os.ReadFile(d.AuditPath)
	if !strings.Contains(string(b), "cross-origin request refused") {
		t.Fatal("the refusal is not in the audit log")
	}
}

// TestLayouts: the page fits a laptop and a phone without sideways
// scrolling, and every control is reachable with the keyboard.
func TestLayouts(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	if *screenshots {
		d = demoProcess(t) // what an operator sees: the demo alone in its process
	}
	for _, size := range []struct {
		name string
		w, h int64
	}{{"laptop", 1280, 800}, {"phone", 390, 844}} {
		t.Run(size.name, func(t *testing.T) {
			ctx := tab(t)
			viewport(t, ctx, size.w, size.h)
			signIn(t, ctx, d, "admin")
			if eval[bool](t, ctx, `document.documentElement.scrollWidth > document.documentElement.clientWidth + 1`) {
				t.Fatalf("at %d×%d the page scrolls sideways", size.w, size.h)
			}
			// Keyboard only: Tab from the empty prompt reaches the buttons.
			run(t, ctx, chromedp.Focus(chromedp.CSS("#input")))
			seen := map[string]bool{}
			for i := 0; i < 12; i++ {
				run(t, ctx, chromedp.KeyEvent(kb.Tab))
				seen[eval[string](t, ctx, `document.activeElement.id`)] = true
			}
			for _, id := range []string{"run", "charts-toggle", "goroutines-refresh"} {
				if !seen[id] {
					t.Errorf("Tab from the prompt never reaches #%s (reached %v)", id, seen)
				}
			}
			if *screenshots {
				shoot(t, ctx, d, size.name)
			}
		})
	}
}

// demoProcess runs `ops-repl demo --serve` until the test ends.
func demoProcess(t *testing.T) *demo.Demo {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ops-repl")
	if b, err := exec.Command("go", "build", "-o", bin, "../../cmd/ops-repl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	cmd := exec.Command(bin, "demo", "--serve", "--dir", t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	var ready struct {
		Web    string            `json:"web"`
		Tokens map[string]string `json:"tokens"`
	}
	if err := json.NewDecoder(out).Decode(&ready); err != nil {
		t.Fatalf("demo --serve: %v", err)
	}
	return &demo.Demo{WebURL: ready.Web, Tokens: ready.Tokens}
}

// shoot writes docs/web-SIZE.png: the page after a few commands, with the
// charts running.
func shoot(t *testing.T, ctx context.Context, d *demo.Demo, size string) {
	enter(t, ctx, "memstats")
	enter(t, ctx, "x := strings.Repeat(\"ab\", 3); len(x)")
	run(t, ctx, chromedp.Click(chromedp.CSS("#charts-toggle")), chromedp.Click(chromedp.CSS("#goroutines-refresh")))
	waitJS(t, ctx, "a minute of points", `Number((document.querySelector("#chart-heap polyline.live") || {dataset: {}}).dataset.points || 0) >= 6`)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "web-"+size+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

package console

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/opsrepl/opsrepl/audit"
)

// Rate is a token-bucket rate: PerSecond events on average, up to Burst at
// once.
type Rate struct {
	PerSecond float64
	Burst     int
}

func (r Rate) withDefault(def Rate) Rate {
	if r.PerSecond <= 0 {
		r.PerSecond = def.PerSecond
	}
	if r.Burst <= 0 {
		r.Burst = def.Burst
	}
	return r
}

func (r Rate) limiter() *rate.Limiter { return rate.NewLimiter(rate.Limit(r.PerSecond), r.Burst) }

// refill is how long an idle bucket takes to fill up again: after that,
// forgetting it changes nothing.
func (r Rate) refill() time.Duration {
	return time.Duration(float64(r.Burst) / r.PerSecond * float64(time.Second))
}

// maxSources bounds the per-source state, so a flood from many addresses
// cannot grow it without bound. Past it, the rate limiters forget an
// entry at random (an address's bucket is never shared with another), and
// the refusal windows count the refusals of new sources in one "overflow"
// window per outcome.
const maxSources = 10000

// sourceKey is the address a limit is kept for: the client IP, or its /64
// for IPv6 (one host usually holds a whole /64).
func sourceKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// sourceLimiter keeps one token bucket per source.
type sourceLimiter struct {
	rate  Rate
	mu    sync.Mutex
	m     map[string]*sourceEntry
	swept time.Time
}

type sourceEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newSourceLimiter(r Rate) *sourceLimiter {
	return &sourceLimiter{rate: r, m: map[string]*sourceEntry{}}
}

// allow takes a token from source's bucket; it reports false, with the
// wait for the next token, when the bucket is empty.
func (l *sourceLimiter) allow(source string) (bool, time.Duration) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[source]
	if e == nil {
		if len(l.m) >= maxSources && now.Sub(l.swept) > time.Second {
			l.sweep(now)
			l.swept = now
		}
		if len(l.m) >= maxSources {
			// Still full: forget one bucket (map order is random). A
			// flood from many addresses then loses its own buckets; it
			// never makes a new address share one it has drained.
			for k := range l.m {
				delete(l.m, k)
				break
			}
		}
		e = &sourceEntry{lim: l.rate.limiter()}
		l.m[source] = e
	}
	e.last = now
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep forgets buckets that have refilled. Called with l.mu held.
func (l *sourceLimiter) sweep(now time.Time) {
	idle := l.rate.refill()
	for k, e := range l.m {
		if now.Sub(e.last) > idle {
			delete(l.m, k)
		}
	}
}

// refusals aggregates the audit records of refused handshakes: the first
// refusal of a source (for one code) in an interval is written at once,
// the others are counted and written as one record when the interval
// ends. A flood of bad credentials thus costs the log one record per
// source per interval.
type refusals struct {
	srv      *Server
	interval time.Duration
	mu       sync.Mutex
	m        map[string]*refusalWindow
	closed   bool
}

type refusalWindow struct {
	source, code string
	count        int64
	timer        *time.Timer
}

// add records one refusal. It reports whether this refusal opened a new
// window (and was written at once): the caller logs only those.
func (a *refusals) add(rec audit.Record, source string) bool {
	a.mu.Lock()
	if a.m == nil {
		a.m = map[string]*refusalWindow{}
	}
	key := source + " " + rec.Outcome
	if w := a.m[key]; w != nil {
		w.count++
		a.mu.Unlock()
		return false
	}
	if len(a.m) >= maxSources {
		source, key = "overflow", "overflow "+rec.Outcome
		if w := a.m[key]; w != nil {
			w.count++
			a.mu.Unlock()
			return false
		}
	}
	if a.closed { // no timer would write the window: write each refusal
		a.mu.Unlock()
		rec.Count = 1
		a.srv.auditWrite(rec)
		return true
	}
	w := &refusalWindow{source: source, code: rec.Outcome}
	a.m[key] = w
	w.timer = time.AfterFunc(a.interval, func() { a.flush(key) })
	a.mu.Unlock()
	rec.Count = 1
	a.srv.auditWrite(rec)
	return true
}

func (a *refusals) flush(key string) {
	a.mu.Lock()
	w := a.m[key]
	delete(a.m, key)
	a.mu.Unlock()
	if w != nil {
		a.write(w)
	}
}

func (a *refusals) write(w *refusalWindow) {
	if w.count == 0 {
		return
	}
	a.srv.auditWrite(audit.Record{Kind: audit.KindHandshake, Remote: w.source, Outcome: w.code, Count: w.count,
		Message: fmt.Sprintf("%d more refused handshakes (%s) from %s within %s of the first", w.count, w.code, w.source, a.interval)})
	a.srv.log.Warn("console: handshakes refused", "source", w.source, "code", w.code, "count", w.count, "interval", a.interval)
}

// close writes every open window now.
func (a *refusals) close() {
	a.mu.Lock()
	a.closed = true
	all := a.m
	a.m = nil
	a.mu.Unlock()
	for _, w := range all {
		if w.timer != nil {
			w.timer.Stop()
		}
		a.write(w)
	}
}

package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/watchfile"
)

// ErrUnauthenticated is returned (wrapped) by Authenticate for a request
// without valid credentials.
var ErrUnauthenticated = errors.New("unauthenticated")

// Tokens is a set of token hashes, each bound to a subject. The zero value
// accepts no token. It is safe for concurrent use; one read from a file can
// follow the file's changes (Watch).
type Tokens struct {
	path string
	cur  atomic.Pointer[tokenSet]

	mu       sync.Mutex
	onRevoke []func(subjects []string)
}

// tokenSet is one version of a Tokens: immutable once built.
type tokenSet struct {
	entries []entry
	hash    string // of the file it was read from
}

func (t *Tokens) set() *tokenSet {
	if s := t.cur.Load(); s != nil {
		return s
	}
	return &tokenSet{}
}

type entry struct {
	subject string
	hash    [sha256.Size]byte
}

// NewToken returns a fresh random token for subject and the token-file line
// ("SUBJECT SHA256-HEX") that makes the server accept it.
func NewToken(subject string) (token, line string, err error) {
	if err := validSubject(subject); err != nil {
		return "", "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("auth: random token: %w", err)
	}
	token = hex.EncodeToString(b[:])
	return token, subject + " " + hash(token), nil
}

// Hash returns the hex SHA-256 of token, the form a token file stores.
func hash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ValidSubject reports (as an error) whether s can name a subject: 1 to 64
// characters from letters, digits and . _ @ -. Colons are excluded so a
// subject can never be mistaken for a role ("role:admin") or object.
func validSubject(s string) error {
	switch {
	case s == "" || len(s) > 64:
		return fmt.Errorf("auth: subject must be 1 to 64 characters; got %d", len(s))
	case !wire.IsSubject(s):
		return fmt.Errorf("auth: subject %q: only letters, digits and . _ @ - are allowed", s)
	}
	return nil
}

// NewTokens builds an in-memory token set from subject → token pairs (the
// tokens in clear, as an embedding app may hold them). Only their hashes
// are kept.
func NewTokens(tokens map[string]string) (*Tokens, error) {
	s := &tokenSet{}
	for subject, token := range tokens {
		if err := validSubject(subject); err != nil {
			return nil, err
		}
		if len(token) < 16 {
			return nil, fmt.Errorf("auth: token for %q is shorter than 16 characters", subject)
		}
		if err := s.add(subject, sha256.Sum256([]byte(token))); err != nil {
			return nil, err
		}
	}
	t := &Tokens{}
	t.cur.Store(s)
	return t, nil
}

// LoadFile reads a token file (see Watch to follow its changes).
func LoadFile(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s, err := parseSet(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", path, err)
	}
	s.hash = watchfile.Hash(b)
	t := &Tokens{path: path}
	t.cur.Store(s)
	return t, nil
}

// Parse reads token-file lines: "SUBJECT SHA256-HEX", blank lines and
// # comments. Any malformed line is an error naming its line number.
func parse(r io.Reader) (*Tokens, error) {
	s, err := parseSet(r)
	if err != nil {
		return nil, err
	}
	t := &Tokens{}
	t.cur.Store(s)
	return t, nil
}

func parseSet(r io.Reader) (*tokenSet, error) {
	t := &tokenSet{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"SUBJECT SHA256-HEX\"", n)
		}
		if err := validSubject(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		raw, err := hex.DecodeString(f[1])
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("line %d: the hash must be 64 hex digits (the SHA-256 of the token, not the token)", n)
		}
		if err := t.add(f[0], [sha256.Size]byte(raw)); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return t, nil
}

func (t *tokenSet) add(subject string, h [sha256.Size]byte) error {
	for _, e := range t.entries {
		if e.hash == h {
			return errors.New("the same token is listed twice")
		}
	}
	t.entries = append(t.entries, entry{subject: subject, hash: h})
	return nil
}

// Len returns the number of tokens in the set.
func (t *Tokens) Len() int { return len(t.set().entries) }

// Lookup returns the subject token belongs to. It compares against every
// entry in constant time, so timing reveals neither which entry matched
// nor how much of a hash did.
func (t *Tokens) Lookup(token string) (subject string, ok bool) {
	h := sha256.Sum256([]byte(token))
	entries := t.set().entries
	found := -1
	for i := range entries {
		if subtle.ConstantTimeCompare(h[:], entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 || token == "" {
		return "", false
	}
	return entries[found].subject, true
}

// Authenticate returns the subject of the bearer token in r's Authorization
// header, or in a wire.BearerProtocolPrefix subprotocol. Errors wrap
// ErrUnauthenticated and never contain the token.
func (t *Tokens) Authenticate(r *http.Request) (string, error) {
	token, err := bearerToken(r)
	if err != nil {
		return "", err
	}
	subject, ok := t.Lookup(token)
	if !ok {
		return "", fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	return subject, nil
}

// BearerToken extracts the bearer token from r: the Authorization header
// ("Bearer TOKEN", scheme case-insensitive), or else a subprotocol
// wire.BearerProtocolPrefix+TOKEN. Both at once is an error.
func bearerToken(r *http.Request) (string, error) {
	var fromProto string
	for _, p := range websocketProtocols(r) {
		if strings.HasPrefix(p, wire.BearerProtocolPrefix) {
			fromProto = strings.TrimPrefix(p, wire.BearerProtocolPrefix)
		}
	}
	h := r.Header.Values("Authorization")
	switch {
	case len(h) > 1:
		return "", fmt.Errorf("%w: more than one Authorization header", ErrUnauthenticated)
	case len(h) == 1 && fromProto != "":
		return "", fmt.Errorf("%w: credentials in both the Authorization header and a subprotocol", ErrUnauthenticated)
	case len(h) == 1:
		scheme, token, ok := strings.Cut(strings.TrimSpace(h[0]), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", fmt.Errorf("%w: the Authorization header must be \"Bearer TOKEN\"", ErrUnauthenticated)
		}
		token = strings.TrimSpace(token)
		if token == "" {
			return "", fmt.Errorf("%w: empty bearer token", ErrUnauthenticated)
		}
		return token, nil
	case fromProto != "":
		return fromProto, nil
	}
	return "", fmt.Errorf("%w: no credentials (send \"Authorization: Bearer TOKEN\")", ErrUnauthenticated)
}

func websocketProtocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Change describes a reload of a token file: the SHA-256 of the content
// in force before and of the content read, the subjects that lost a
// token, and Err when the content was rejected (the old tokens stay).
type Change struct {
	Path             string
	OldHash, NewHash string
	Tokens           int      // tokens in force after it
	Revoked          []string // subjects that lost at least one token, sorted
	Err              error
}

// WatchOptions configures Watch.
type WatchOptions struct {
	// Interval is how often the file is read. Default: 500ms.
	Interval time.Duration
	// Quiet is how long new content must stay the same before it is
	// taken (a writer that pauses between lines is not taken halfway; a
	// file whose last line has no newline is refused). Default: 3s.
	Quiet time.Duration
	// OnChange is called after each reload or rejected version, once per
	// distinct content. Default: none.
	OnChange func(Change)
}

// Watch follows the changes of the token file t was loaded from, until ctx
// is done. A new content is parsed strictly (an empty file, a malformed
// line or a last line without a newline is rejected, and the tokens in
// force stay), then swapped in at once; the subjects that lost a token
// are passed to every function registered with OnRevoke, which closes
// their sessions (see console.Options.Authenticator).
func (t *Tokens) Watch(ctx context.Context, opts WatchOptions) {
	if t.path == "" {
		return
	}
	watchfile.Watch(ctx, watchfile.Options{Path: t.path, Interval: opts.Interval, Quiet: opts.Quiet}, t.set().hash,
		func(b []byte, err error) {
			ch := t.reload(b, err)
			if opts.OnChange != nil {
				opts.OnChange(ch)
			}
		})
}

func (t *Tokens) reload(b []byte, readErr error) Change {
	old := t.set()
	ch := Change{Path: t.path, OldHash: old.hash, NewHash: watchfile.Hash(b), Tokens: len(old.entries)}
	s, err := (*tokenSet)(nil), readErr
	switch {
	case err != nil:
	case len(b) == 0:
		err = errors.New("the file is empty")
	case b[len(b)-1] != '\n':
		err = errors.New("its last line does not end with a newline: it may be cut off (write the file whole, or rename a complete one into place)")
	default:
		s, err = parseSet(bytes.NewReader(b))
	}
	if err != nil {
		ch.Err = fmt.Errorf("auth: %s: %w; the tokens in force are unchanged", t.path, err)
		return ch
	}
	s.hash = ch.NewHash
	kept := map[[sha256.Size]byte]bool{}
	for _, e := range s.entries {
		kept[e.hash] = true
	}
	revoked := map[string]bool{}
	for _, e := range old.entries {
		if !kept[e.hash] {
			revoked[e.subject] = true
		}
	}
	for sub := range revoked {
		ch.Revoked = append(ch.Revoked, sub)
	}
	sort.Strings(ch.Revoked)
	t.cur.Store(s)
	ch.Tokens = len(s.entries)
	if len(ch.Revoked) > 0 {
		t.mu.Lock()
		fns := slices.Clone(t.onRevoke)
		t.mu.Unlock()
		for _, fn := range fns {
			fn(ch.Revoked)
		}
	}
	return ch
}

// OnRevoke registers fn, called with the subjects that lost a token each
// time Watch takes a new content. console.New registers the console's
// own: their sessions are closed.
func (t *Tokens) OnRevoke(fn func(subjects []string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onRevoke = append(t.onRevoke, fn)
}

package policy

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsrepl/opsrepl/access"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"

	"github.com/opsrepl/opsrepl/internal/watchfile"

	opsrepl "github.com/opsrepl/opsrepl"
)

// Options configures New. The zero value uses the model and policy embedded
// in the opsrepl package (model.conf and policy.csv).
type Options struct {
	// ModelPath is a Casbin model file. Default: opsrepl.DefaultModel.
	ModelPath string
	// PolicyPath is a policy file (CSV lines, see policy.csv).
	// Default: PolicyText, else opsrepl.DefaultPolicy.
	PolicyPath string
	// PolicyText is policy given inline, used when PolicyPath is empty.
	PolicyText string
}

// Enforcer answers access questions. It is safe for concurrent use, also
// while Reload or Watch swap in a new policy.
type Enforcer struct {
	model  model.Model
	path   string // PolicyPath, for Reload
	cur    atomic.Pointer[loaded]
	reload sync.Mutex // one Reload at a time
}

// loaded is one policy version: swapped as a whole, never changed.
type loaded struct {
	e     *casbin.SyncedCachedEnforcer
	rules []Rule
	hash  string // SHA-256 of the policy text
}

// New loads the model and policy and returns an Enforcer. It fails on a
// malformed model, a malformed policy line, or a policy with no rule.
func New(opts Options) (*Enforcer, error) {
	modelText := opsrepl.DefaultModel
	if opts.ModelPath != "" {
		b, err := os.ReadFile(opts.ModelPath)
		if err != nil {
			return nil, fmt.Errorf("policy: read model: %w", err)
		}
		modelText = string(b)
	}
	m, err := model.NewModelFromString(modelText)
	if err != nil {
		return nil, fmt.Errorf("policy: load model: %w", err)
	}
	policyText, source := opts.PolicyText, "inline policy"
	switch {
	case opts.PolicyPath != "":
		b, err := os.ReadFile(opts.PolicyPath)
		if err != nil {
			return nil, fmt.Errorf("policy: read policy: %w", err)
		}
		policyText, source = string(b), opts.PolicyPath
	case policyText == "":
		policyText, source = opsrepl.DefaultPolicy, "default policy"
	}
	p := &Enforcer{model: m, path: opts.PolicyPath}
	l, err := p.load(policyText)
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", source, err)
	}
	p.cur.Store(l)
	return p, nil
}

// load builds a complete enforcer for policy text, without touching the
// current one.
func (p *Enforcer) load(text string) (*loaded, error) {
	rules, err := parse(text)
	if err != nil {
		return nil, err
	}
	e, err := casbin.NewSyncedCachedEnforcer(p.model.Copy(), &adapter{rules: rules})
	if err != nil {
		return nil, err
	}
	return &loaded{e: e, rules: rules, hash: hash([]byte(text))}, nil
}

// Hash returns the hex SHA-256 of a policy text, the form Change reports.
func hash(text []byte) string { return watchfile.Hash(text) }

// Authorize reports whether subject may perform action on object. An error
// means no decision could be made; callers must treat it as a denial.
func (p *Enforcer) Authorize(subject, object, action string) (bool, error) {
	ok, err := p.cur.Load().e.Enforce(subject, object, action)
	if err != nil {
		return false, fmt.Errorf("policy: enforce %s %s %s: %w", subject, object, action, err)
	}
	return ok, nil
}

// Explain is Authorize that also returns the rule that decided: the deny
// rule that matched, or the allow rule that did. A nil rule with allowed
// false means no rule matched (deny by default).
func (p *Enforcer) Explain(subject, object, action string) (allowed bool, rule *Rule, err error) {
	l := p.cur.Load()
	ok, ex, err := l.e.EnforceEx(subject, object, action)
	if err != nil {
		return false, nil, fmt.Errorf("policy: enforce %s %s %s: %w", subject, object, action, err)
	}
	if len(ex) > 0 {
		for i := range l.rules {
			if r := &l.rules[i]; r.Type == "p" && slices.Equal(r.Fields, ex) {
				return ok, r, nil
			}
		}
		return ok, &Rule{Type: "p", Fields: ex}, nil
	}
	return ok, nil, nil
}

// Roles returns the roles subject holds, directly or inherited, sorted.
func (p *Enforcer) Roles(subject string) []string {
	roles, err := p.cur.Load().e.GetImplicitRolesForUser(subject)
	if err != nil {
		return nil
	}
	sort.Strings(roles)
	return roles
}

// Objects returns every object named by a p rule of the policy, sorted and
// without duplicates, so callers can check them against what exists.
func (p *Enforcer) Objects() []string { return objects(p.cur.Load().rules) }

func objects(rules []Rule) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rules {
		if r.Type == "p" && !seen[r.Fields[1]] {
			seen[r.Fields[1]] = true
			out = append(out, r.Fields[1])
		}
	}
	sort.Strings(out)
	return out
}

// Change describes a Reload: the policy file's hash before and after, and
// why a new version was rejected (the old one then stays in force).
type Change struct {
	Path    string
	OldHash string
	NewHash string
	Rules   int   // rules in force after the change
	Err     error // non-nil: rejected, the old policy still decides
}

// Reload reads the policy file again (Options.PolicyPath) and, if its
// content changed, validates it (strict parsing, at least one rule, a
// complete Casbin load, then validate, if not nil, with the objects it
// names) before swapping it in at once: a request is decided wholly by
// the old policy or wholly by the new. A file that fails any check
// changes nothing. changed is false when the content is the one in force.
func (p *Enforcer) Reload(validate func(objects []string) error) (ch Change, changed bool) {
	if p.path == "" {
		old := p.cur.Load()
		return Change{OldHash: old.hash, NewHash: old.hash, Rules: len(old.rules), Err: errors.New("policy: no policy file to reload (Options.PolicyPath)")}, true
	}
	b, err := os.ReadFile(p.path)
	return p.apply(b, err, validate)
}

// apply swaps in the policy text b (read with readErr) if it is new and
// valid.
func (p *Enforcer) apply(b []byte, readErr error, validate func(objects []string) error) (ch Change, changed bool) {
	p.reload.Lock()
	defer p.reload.Unlock()
	old := p.cur.Load()
	ch = Change{Path: p.path, OldHash: old.hash, NewHash: old.hash, Rules: len(old.rules)}
	if readErr != nil {
		ch.Err = fmt.Errorf("policy: read policy: %w; the policy in force is unchanged", readErr)
		return ch, true
	}
	ch.NewHash = hash(b)
	if ch.NewHash == old.hash {
		return ch, false
	}
	l, err := p.load(string(b))
	if err == nil {
		err = Whole(b)
	}
	if err == nil && validate != nil {
		err = validate(objects(l.rules))
	}
	if err != nil {
		ch.Err = fmt.Errorf("policy: %s: %w; the policy in force is unchanged", p.path, err)
		return ch, true
	}
	p.cur.Store(l)
	ch.Rules = len(l.rules)
	return ch, true
}

// Whole reports, as an error, a policy file that may be cut off: one whose
// last line has no newline. A file being written (a writer that paused
// at the end of a line aside) ends that way.
func Whole(b []byte) error {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return errors.New("its last line does not end with a newline: it may be cut off (write the file whole, or rename a complete one into place)")
	}
	return nil
}

// WatchOptions configures Watch.
type WatchOptions struct {
	// Interval is how often the file is read. Default: 500ms.
	Interval time.Duration
	// Quiet is how long new content must stay unchanged before it is
	// taken, so that a writer that pauses between lines does not get its
	// first half loaded; a file whose last line has no newline is never
	// taken. A change is in force within Quiet plus an Interval. Writers
	// should still rename a complete file into place (as Kubernetes
	// ConfigMap volumes do): a writer that pauses longer than Quiet at
	// the end of a line is not told apart from a finished file.
	// Default: 3s.
	Quiet time.Duration
	// Validate checks the objects a new policy names before it is swapped
	// in (console.Server.CheckObjects). Default: none.
	Validate func(objects []string) error
	// OnChange is called after each reload or rejected version, once per
	// distinct content. Default: none.
	OnChange func(Change)
}

// Watch reloads the policy file whenever its content changes and then
// stays the same for WatchOptions.Quiet, until ctx is done. A version that
// fails validation (a parse error, an empty file, a last line without a
// newline, an unknown command) is rejected and reported through OnChange
// once; the policy in force stays.
func (p *Enforcer) Watch(ctx context.Context, opts WatchOptions) {
	watchfile.Watch(ctx, watchfile.Options{Path: p.path, Interval: opts.Interval, Quiet: opts.Quiet}, p.cur.Load().hash,
		func(b []byte, err error) {
			ch, changed := p.apply(b, err, opts.Validate)
			if changed && opts.OnChange != nil {
				opts.OnChange(ch)
			}
		})
}

// Rule is one parsed policy line: its type ("p" or "g"), its fields and the
// line number it came from.
type Rule struct {
	Type   string
	Fields []string
	Line   int
}

// errEmpty is returned by Parse for a policy without any rule.
var errEmpty = errors.New("policy has no rule")

// Parse parses policy text strictly: every non-blank, non-comment line must
// be "p, SUBJECT, OBJECT, ACTION, allow|deny" or "g, SUBJECT, ROLE".
func parse(text string) ([]Rule, error) {
	var rules []Rule
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := csv.NewReader(strings.NewReader(line))
		r.TrimLeadingSpace = true
		fields, err := r.Read()
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
			if fields[i] == "" {
				return nil, fmt.Errorf("line %d: field %d is empty", n, i+1)
			}
		}
		switch fields[0] {
		case "p":
			if len(fields) != 5 {
				return nil, fmt.Errorf("line %d: a p rule has 4 fields (subject, object, action, allow|deny); got %d", n, len(fields)-1)
			}
			if fields[4] != "allow" && fields[4] != "deny" {
				return nil, fmt.Errorf("line %d: effect must be allow or deny; got %q", n, fields[4])
			}
			if err := access.Check(fields[2], fields[3]); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		case "g":
			if len(fields) != 3 {
				return nil, fmt.Errorf("line %d: a g rule has 2 fields (subject, role); got %d", n, len(fields)-1)
			}
			if fields[1] == fields[2] {
				return nil, fmt.Errorf("line %d: %q cannot hold itself as a role", n, fields[1])
			}
		default:
			return nil, fmt.Errorf("line %d: rule type must be p or g; got %q", n, fields[0])
		}
		rules = append(rules, Rule{Type: fields[0], Fields: fields[1:], Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	if len(rules) == 0 {
		return nil, errEmpty
	}
	return rules, nil
}

// adapter feeds already-validated rules to Casbin; unlike Casbin's string
// adapter it never skips a line silently.
type adapter struct{ rules []Rule }

func (a *adapter) LoadPolicy(m model.Model) error {
	for _, r := range a.rules {
		if err := persist.LoadPolicyArray(append([]string{r.Type}, r.Fields...), m); err != nil {
			return fmt.Errorf("line %d: %w", r.Line, err)
		}
	}
	return nil
}

var errReadOnly = errors.New("policy: the policy is read-only")

func (a *adapter) SavePolicy(model.Model) error                { return errReadOnly }
func (a *adapter) AddPolicy(string, string, []string) error    { return errReadOnly }
func (a *adapter) RemovePolicy(string, string, []string) error { return errReadOnly }
func (a *adapter) RemoveFilteredPolicy(string, string, int, ...string) error {
	return errReadOnly
}

package policy

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"

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

// Enforcer answers access questions. It is safe for concurrent use.
type Enforcer struct {
	e *casbin.SyncedCachedEnforcer
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
	rules, err := Parse(policyText)
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", source, err)
	}
	e, err := casbin.NewSyncedCachedEnforcer(m, &adapter{rules: rules})
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", source, err)
	}
	return &Enforcer{e: e}, nil
}

// Authorize reports whether subject may perform action on object. An error
// means no decision could be made; callers must treat it as a denial.
func (p *Enforcer) Authorize(subject, object, action string) (bool, error) {
	ok, err := p.e.Enforce(subject, object, action)
	if err != nil {
		return false, fmt.Errorf("policy: enforce %s %s %s: %w", subject, object, action, err)
	}
	return ok, nil
}

// Roles returns the roles subject holds, directly or inherited, sorted.
func (p *Enforcer) Roles(subject string) []string {
	roles, err := p.e.GetImplicitRolesForUser(subject)
	if err != nil {
		return nil
	}
	sort.Strings(roles)
	return roles
}

// Objects returns every object named by a p rule of the policy, sorted and
// without duplicates, so callers can check them against what exists.
func (p *Enforcer) Objects() []string {
	rules, _ := p.e.GetPolicy()
	seen := map[string]bool{}
	var out []string
	for _, r := range rules {
		if len(r) > 1 && !seen[r[1]] {
			seen[r[1]] = true
			out = append(out, r[1])
		}
	}
	sort.Strings(out)
	return out
}

// Rule is one parsed policy line: its type ("p" or "g"), its fields and the
// line number it came from.
type Rule struct {
	Type   string
	Fields []string
	Line   int
}

// ErrEmpty is returned by Parse for a policy without any rule.
var ErrEmpty = errors.New("policy has no rule")

// Parse parses policy text strictly: every non-blank, non-comment line must
// be "p, SUBJECT, OBJECT, ACTION, allow|deny" or "g, SUBJECT, ROLE".
func Parse(text string) ([]Rule, error) {
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
		return nil, ErrEmpty
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

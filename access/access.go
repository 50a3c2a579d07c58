package access

import (
	"fmt"
	"strings"
)

// Objects and their prefixes.
const (
	// Eval is the object of evaluating Go.
	Eval = "eval"
	// CommandPrefix starts the object of a command: cmd:NAME.
	CommandPrefix = "cmd:"
	// PackagePrefix starts the object of an exported package: pkg:PATH.
	PackagePrefix = "pkg:"
	// Any is the pattern that matches every object.
	Any = "*"
)

// Actions.
const (
	// Run is asked about commands and Go evaluation.
	Run = "run"
	// Import is asked about exported packages.
	Import = "import"
	// RequireReason is asked about commands and Go evaluation; allowed
	// means the subject must give a reason first.
	RequireReason = "require-reason"
)

// Command returns the object of the command name.
func Command(name string) string { return CommandPrefix + name }

// Package returns the object of the exported package path.
func Package(path string) string { return PackagePrefix + path }

// ActionOf returns the action the console asks about object with:
// Import for a package, Run otherwise.
func ActionOf(object string) string {
	if strings.HasPrefix(object, PackagePrefix) {
		return Import
	}
	return Run
}

// Check reports whether a policy rule on object with action could ever
// match what the console asks: an error says why not (an unknown kind of
// object, an unknown action, or an action the object is never asked
// with). It does not know the commands: the console checks their names.
func Check(object, action string) error {
	isCmd, isPkg := strings.HasPrefix(object, CommandPrefix), strings.HasPrefix(object, PackagePrefix)
	// The policy matches objects with Casbin's keyMatch: a '*' matches
	// anything, but only as the last character (one in the middle ends the
	// comparison there: cmd:*-full would match every command), and nothing
	// else is a pattern (cmd:g? or cmd:{gc,trace} would match nothing).
	if i := strings.IndexAny(object, "*?{}[]"); i >= 0 && (object[i] != '*' || i != len(object)-1) {
		return fmt.Errorf("the object %q: a policy pattern may only end in * (cmd:*, pkg:shop/*); ?, {}, [] and a * elsewhere do not match as they read", object)
	}
	switch {
	case object == "" || isCmd && object == CommandPrefix || isPkg && object == PackagePrefix:
		return fmt.Errorf("the object %q names nothing (objects are cmd:NAME, eval and pkg:PATH)", object)
	case object != Any && object != Eval && !isCmd && !isPkg:
		return fmt.Errorf("the object %q is none the console asks about (objects are cmd:NAME, eval and pkg:PATH; patterns *, cmd:*, pkg:*)", object)
	}
	switch action {
	case Run, RequireReason:
		if isPkg {
			return fmt.Errorf("%s is asked with %s, never %s", object, Import, action)
		}
	case Import:
		if isCmd || object == Eval {
			return fmt.Errorf("%s is asked with %s (or %s), never %s", object, Run, RequireReason, Import)
		}
	default:
		return fmt.Errorf("the action %q is none the console asks with (actions are %s, %s and %s)", action, Run, Import, RequireReason)
	}
	return nil
}

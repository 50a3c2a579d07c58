package opsrepl

import _ "embed"

// DefaultModel is the Casbin model that ships with ops-repl (model.conf).
//
//go:embed model.conf
var DefaultModel string

// DefaultPolicy is the policy that ships with ops-repl (policy.csv): the
// roles role:viewer, role:operator and role:admin, and no subjects.
//
//go:embed policy.csv
var DefaultPolicy string

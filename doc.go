// Package opsrepl holds the defaults that ship with ops-repl, a secured
// remote maintenance console for Go services: the Casbin model
// (DefaultModel, model.conf) and policy (DefaultPolicy, policy.csv).
//
// The console itself lives in package console; the access decisions in
// package policy; the Go interpreter in package interp; the operator's
// client is the ops-repl command.
package opsrepl

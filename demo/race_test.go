//go:build race

package demo

// raceScale stretches the hostile snippets' time limit: under the race
// detector the interpreter runs many times slower, and snippets meant to
// be stopped by a guard would reach the time limit first.
const raceScale = 4

//go:build !race

package demo

const raceScale = 1

//go:build race

package sandbox

// raceEnabled: the race detector maps terabytes of shadow memory, so a
// data limit cannot apply; the host's watch of the resident set does.
const raceEnabled = true

//go:build gops

package main

import "github.com/google/gops/agent"

func init() {
	startAgent = func() error { return agent.Listen(agent.Options{ShutdownCleanup: true}) }
}

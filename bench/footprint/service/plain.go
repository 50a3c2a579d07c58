//go:build !console

package main

func sandboxMain() {}

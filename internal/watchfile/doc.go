// Package watchfile watches a file that an operator edits by hand (a
// policy, a token file) and hands over its content once it has settled:
// changed, then unchanged for a quiet interval. A writer that pauses
// between lines is not taken halfway. Packages policy and auth use it.
//
// Usage:
//
//	watchfile.Watch(ctx, watchfile.Options{Path: path}, watchfile.Hash(current),
//		func(content []byte, err error) { ... }) // validate, then swap
package watchfile

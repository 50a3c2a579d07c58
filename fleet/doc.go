// Package fleet runs one console request on many targets, found the way
// the platform already knows them: a list of URLs, a file (one URL a line,
// or Prometheus file_sd JSON), every address of a DNS name (a Kubernetes
// headless Service), or DNS SRV records (Consul, Kubernetes named ports).
//
// It builds no cluster of its own: each target authenticates, authorizes
// and audits the request as it would any other. Every run request carries
// one fleet id, which each target writes into its audit record, so that
// `ops-repl audit show --fleet ID` over the collected logs joins them.
//
//	targets, err := fleet.Discover(ctx, "dns:api.prod.svc:7227", fleet.DiscoverOptions{})
//	results := fleet.Run(ctx, targets, []string{"memstats"}, fleet.Options{Client: client.Options{Token: tok}})
package fleet

package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Target is one console to run on.
type Target struct {
	// URL is the console's WebSocket URL.
	URL string
	// Source is the item of the spec it came from ("dns:api:7227",
	// "file:targets.json", or the URL itself): tokens may be given for it.
	Source string
}

// DiscoverOptions configures Discover.
type DiscoverOptions struct {
	// Resolver answers the dns: and dnssrv: items. Default:
	// net.DefaultResolver.
	Resolver *net.Resolver
	// Path is the console's path on targets given as host:port (DNS,
	// file_sd). Default: /ops-repl.
	Path string
	// Scheme is the scheme of those targets, ws or wss. Default: ws.
	Scheme string
}

func (o DiscoverOptions) withDefaults() DiscoverOptions {
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Path == "" {
		o.Path = "/ops-repl"
	}
	if o.Scheme == "" {
		o.Scheme = "ws"
	}
	return o
}

// SRVService is the service name dnssrv: looks up: _ops-repl._tcp.NAME.
const SRVService = "ops-repl"

// Discover returns the targets spec names, without duplicates, in a
// stable order. spec is a comma-separated list of:
//
//   - a console URL (ws://host:port/ops-repl, wss://…);
//   - file:PATH: one URL a line (# starts a comment), or Prometheus
//     file_sd JSON ([{"targets": ["host:port", …], "labels": {…}}]; the
//     labels __scheme__ and __console_path__ override Scheme and Path);
//   - dns:NAME:PORT: every A and AAAA address of NAME (what a Kubernetes
//     headless Service returns);
//   - dnssrv:NAME: every target of the SRV records _ops-repl._tcp.NAME (as
//     Consul and Kubernetes named ports serve them).
//
// Files and names are read on each call.
func Discover(ctx context.Context, spec string, opts DiscoverOptions) ([]Target, error) {
	opts = opts.withDefaults()
	var out []Target
	seen := map[string]bool{}
	add := func(source, u string) {
		if !seen[u] {
			seen[u] = true
			out = append(out, Target{URL: u, Source: source})
		}
	}
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		urls, err := expand(ctx, item, opts)
		if err != nil {
			return nil, fmt.Errorf("targets %q: %w", item, err)
		}
		if len(urls) == 0 {
			return nil, fmt.Errorf("targets %q: names no console", item)
		}
		for _, u := range urls {
			add(item, u)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("targets: none given")
	}
	return out, nil
}

func expand(ctx context.Context, item string, opts DiscoverOptions) ([]string, error) {
	kind, rest, _ := strings.Cut(item, ":")
	switch kind {
	case "file":
		return fromFile(rest, opts)
	case "dns":
		host, port, err := net.SplitHostPort(rest)
		if err != nil || host == "" {
			return nil, errors.New("want dns:NAME:PORT")
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("port %q is not a port number", port)
		}
		addrs, err := opts.Resolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		var urls []string
		for _, a := range addrs {
			urls = append(urls, opts.url(net.JoinHostPort(a.IP.String(), port), opts.Scheme, opts.Path))
		}
		slices.Sort(urls)
		return urls, nil
	case "dnssrv":
		if rest == "" {
			return nil, errors.New("want dnssrv:NAME")
		}
		_, srvs, err := opts.Resolver.LookupSRV(ctx, SRVService, "tcp", rest)
		if err != nil {
			return nil, err
		}
		var urls []string
		for _, s := range srvs {
			urls = append(urls, opts.url(net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port))), opts.Scheme, opts.Path))
		}
		slices.Sort(urls)
		return urls, nil
	case "ws", "wss":
		return []string{item}, checkURL(item)
	}
	return nil, errors.New("want a ws:// or wss:// URL, file:PATH, dns:NAME:PORT or dnssrv:NAME")
}

func (o DiscoverOptions) url(hostport, scheme, path string) string {
	return (&url.URL{Scheme: scheme, Host: hostport, Path: path}).String()
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("%q is not a ws:// or wss:// URL", raw)
	}
	return nil
}

// fileSD is one group of a Prometheus file_sd file.
type fileSD struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

func fromFile(path string, opts DiscoverOptions) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		var groups []fileSD
		if err := json.Unmarshal(t, &groups); err != nil {
			return nil, fmt.Errorf("%s: not Prometheus file_sd JSON: %w", path, err)
		}
		var urls []string
		for _, g := range groups {
			scheme, p := opts.Scheme, opts.Path
			if v := g.Labels["__scheme__"]; v != "" {
				scheme = v
			}
			if v := g.Labels["__console_path__"]; v != "" {
				p = v
			}
			for _, t := range g.Targets {
				if _, _, err := net.SplitHostPort(t); err != nil {
					return nil, fmt.Errorf("%s: target %q is not host:port", path, t)
				}
				u := opts.url(t, scheme, p)
				if err := checkURL(u); err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				urls = append(urls, u)
			}
		}
		return urls, nil
	}
	var urls []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if err := checkURL(line); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		urls = append(urls, line)
	}
	return urls, sc.Err()
}

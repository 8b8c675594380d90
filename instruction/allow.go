package instruction

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// DefaultAllowedHosts are the platforms' documented API hosts and their
// OAuth 2.0 token endpoints' hosts.
const DefaultAllowedHosts = "graph.facebook.com,datamanager.googleapis.com,googleads.googleapis.com,api.linkedin.com,oauth2.googleapis.com,www.linkedin.com"

// AllowList is the deployment's list of hosts data may be sent to. An
// entry "host" allows that host on any port, "host:port" only that port.
// The zero AllowList allows nothing.
type AllowList struct {
	entries []string
}

// ParseAllowList parses a comma-separated list of hosts.
func ParseAllowList(s string) (AllowList, error) {
	var a AllowList
	for _, e := range strings.Split(s, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if strings.ContainsAny(e, "/?#@ ") {
			return AllowList{}, fmt.Errorf("allowed host %q: want host or host:port", e)
		}
		a.entries = append(a.entries, e)
	}
	return a, nil
}

// Hosts returns the entries.
func (a AllowList) Hosts() []string { return slices.Clone(a.entries) }

// Check returns an error unless rawURL is an https URL (plain http only for
// a loopback host) without credentials, query or fragment whose host is on
// the list.
func (a AllowList) Check(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("destination %q is not an absolute URL", rawURL)
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("destination %q must not carry credentials, a query or a fragment", rawURL)
	case u.Scheme == "https":
	case u.Scheme == "http" && loopback(host):
	default:
		return fmt.Errorf("destination %q must use https", rawURL)
	}
	hostPort := strings.ToLower(u.Host)
	for _, e := range a.entries {
		if e == hostPort || e == host {
			return nil
		}
	}
	return fmt.Errorf("destination host %q is not on this deployment's allow-list (-forward.allowed-hosts: %s)",
		u.Host, strings.Join(a.entries, ","))
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

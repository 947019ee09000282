package proxy

import "path"

// resolveContext picks the client's SELinux context: its Unix peer label, else the
// first matching rule, else default_context.
func resolveContext(c *client, cfg *Config) (ctx, source string, ok bool) {
	if c.peerLabel != "" {
		return c.peerLabel, "peer", true
	}
	for i := range cfg.Context {
		if cfg.Context[i].matches(c) {
			return cfg.Context[i].Context, "rule", true
		}
	}
	if cfg.DefaultContext != "" {
		return cfg.DefaultContext, "default", true
	}
	return "", "", false
}

func (r *Rule) matches(c *client) bool {
	glob := func(pattern, v string) bool {
		if pattern == "" {
			return true
		}
		ok, _ := path.Match(pattern, v)
		return ok
	}
	if !glob(r.User, c.user) || !glob(r.Database, c.db) || !glob(r.ApplicationName, c.appName) {
		return false
	}
	if r.network != nil && (c.ip == nil || !r.network.Contains(c.ip)) {
		return false
	}
	if r.TLSSubject != "" {
		if c.tlsState == nil || len(c.tlsState.VerifiedChains) == 0 || !glob(r.TLSSubject, c.tlsState.PeerCertificates[0].Subject.String()) {
			return false
		}
	}
	return true
}

// Package jwks fetches the JSON Web Key Sets of RequestAuthentication's
// JWT issuers for the xDS translator, as istiod does by default: the keys
// are fetched by the control plane and sent inline to the proxies, so a
// proxy needs no route to the issuer, and an issuer whose keys cannot be
// fetched fails closed and says so.
//
//   - A jwtRule with inline jwks needs nothing. One with a jwksUri is
//     fetched from it; one with neither by OpenID discovery: the issuer's
//     ISSUER/.well-known/openid-configuration names its jwks_uri.
//   - A response must be a JSON Web Key Set with at least one key (an
//     SSRF-chosen URL cannot get an arbitrary body into the proxies'
//     config), at most 1 MiB. Link-local addresses (cloud metadata
//     endpoints such as 169.254.169.254) are never dialled.
//   - Keys are fetched again every Config.Refresh; a failure keeps the last
//     keys fetched and is retried every Config.RetryAfterFailure. Until a
//     source's keys were ever fetched, its Result says why not, and the
//     translator sends a key set whose private key nobody has: every token
//     of that issuer is refused (fails closed). The failure is logged,
//     counted in meshlens_jwks_fetches_total{result="error"}, shown by
//     meshlens_jwks_unavailable and listed by Keys.Failures.
package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	security "istio.io/api/security/v1"

	"github.com/meshlens/meshlens/controlplane/config"
)

// Source is one key set to fetch: an issuer and its jwksUri ("" for
// OpenID discovery).
type Source struct {
	Issuer, URI string
}

// Result is what fetching a Source gave.
type Result struct {
	// JWKS is the key set last fetched, "" when none ever was.
	JWKS string
	// URI is where it came from (the discovered jwks_uri for discovery).
	URI string
	// Err is why the last fetch failed, "" when it did not.
	Err string
	// Fetched is when JWKS was fetched; Tried when the last fetch ended.
	Fetched, Tried time.Time
}

// Keys is an immutable snapshot of every Source's Result.
type Keys struct {
	results map[Source]Result
}

// NewKeys is a snapshot of results, for callers that fetch keys
// themselves (and tests).
func NewKeys(results map[Source]Result) *Keys {
	k := &Keys{results: make(map[Source]Result, len(results))}
	for s, r := range results {
		k.results[s] = r
	}
	return k
}

// Lookup is the Result of the issuer's key set at uri ("" for
// discovery); false when it was never tried.
func (k *Keys) Lookup(issuer, uri string) (Result, bool) {
	if k == nil {
		return Result{}, false
	}
	r, ok := k.results[Source{issuer, uri}]
	return r, ok
}

// Failures lists the sources whose keys were never fetched, with why.
func (k *Keys) Failures() map[Source]string {
	out := map[Source]string{}
	if k == nil {
		return out
	}
	for s, r := range k.results {
		if r.JWKS == "" && r.Err != "" {
			out[s] = r.Err
		}
	}
	return out
}

// Config configures a Resolver. Zero fields take the defaults.
type Config struct {
	// Client fetches; nil is an HTTP client that never dials link-local
	// addresses.
	Client *http.Client
	// Refresh is how often keys are fetched again (Istio's 20 minutes).
	Refresh time.Duration
	// RetryAfterFailure is how soon a failed fetch is tried again (1m).
	RetryAfterFailure time.Duration
	// Timeout bounds each request when the jwtRule sets no timeout (5s).
	Timeout time.Duration
	// OnChange is called with every new snapshot of keys, outside any
	// lock of the Resolver (xds.Server.UpdateJWKS).
	OnChange func(*Keys)
	Logger   *slog.Logger
	// Registerer takes the resolver's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// maxBody bounds a fetched document.
const maxBody = 1 << 20

// Resolver keeps the key sets of the config's RequestAuthentications
// fetched. Create it with New, feed it config with Update, run it with Run.
type Resolver struct {
	cfg   Config
	wake  chan struct{}
	mu    sync.Mutex
	want  map[Source]time.Duration // source -> timeout
	state map[Source]Result
	keys  *Keys

	fetches     *prometheus.CounterVec
	unavailable prometheus.Gauge
}

// New builds a Resolver.
func New(cfg Config) (*Resolver, error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 20 * time.Minute
	}
	if cfg.RetryAfterFailure <= 0 {
		cfg.RetryAfterFailure = time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = SafeClient()
	}
	r := &Resolver{cfg: cfg, wake: make(chan struct{}, 1), want: map[Source]time.Duration{}, state: map[Source]Result{}, keys: &Keys{},
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_jwks_fetches_total",
			Help: "Fetches of RequestAuthentication JWKS (and OpenID discovery), by result (ok, error)."}, []string{"result"}),
		unavailable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_jwks_unavailable",
			Help: "JWT issuers whose keys were never fetched: their tokens are refused (fail closed)."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.fetches, r.unavailable} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("jwks resolver: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// SafeClient is an HTTP client that refuses to dial link-local addresses
// (IPv4 169.254.0.0/16, IPv6 fe80::/10: cloud metadata endpoints), even
// when a name resolves to them or a redirect leads there.
func SafeClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return err
		}
		if ip := ip.Unmap(); ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
			return fmt.Errorf("refusing to fetch JWKS from link-local address %s", ip)
		}
		return nil
	}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	tr.Proxy = nil // the dial check must see the real address
	return &http.Client{Transport: tr}
}

// Keys is the current snapshot.
func (r *Resolver) Keys() *Keys {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys
}

// Update sets the sources from snap's RequestAuthentications: the issuers
// of jwtRules without inline jwks. New sources are fetched at once by Run;
// sources no longer named are forgotten.
func (r *Resolver) Update(snap *config.Snapshot) {
	want := map[Source]time.Duration{}
	for _, o := range snap.OfKind(config.KindRequestAuthentication) {
		ra, ok := o.Spec.(*security.RequestAuthentication)
		if !ok {
			continue
		}
		for _, rule := range ra.GetJwtRules() {
			if rule.GetJwks() != "" || rule.GetIssuer() == "" {
				continue
			}
			timeout := r.cfg.Timeout
			if d := rule.GetTimeout(); d != nil && d.AsDuration() > 0 {
				timeout = d.AsDuration()
			}
			want[Source{rule.GetIssuer(), rule.GetJwksUri()}] = timeout
		}
	}
	r.mu.Lock()
	r.want = want
	changed := false
	for s := range r.state {
		if _, ok := want[s]; !ok {
			delete(r.state, s)
			changed = true
		}
	}
	keys := r.publishLocked(changed)
	r.mu.Unlock()
	if keys != nil && r.cfg.OnChange != nil {
		r.cfg.OnChange(keys)
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// publishLocked makes a new snapshot when changed, returning it (nil when
// nothing changed). Caller holds mu.
func (r *Resolver) publishLocked(changed bool) *Keys {
	if !changed {
		return nil
	}
	k := &Keys{results: make(map[Source]Result, len(r.state))}
	unavailable := 0
	for s, res := range r.state {
		k.results[s] = res
		if res.JWKS == "" {
			unavailable++
		}
	}
	r.keys = k
	r.unavailable.Set(float64(unavailable))
	return k
}

// Run fetches what is due until ctx ends.
func (r *Resolver) Run(ctx context.Context) error {
	for {
		next := r.fetchDue(ctx)
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// fetchDue fetches every source that is new or due, publishes what
// changed, and says how long until the next is due.
func (r *Resolver) fetchDue(ctx context.Context) time.Duration {
	now := time.Now()
	r.mu.Lock()
	type job struct {
		src     Source
		timeout time.Duration
	}
	var due []job
	next := r.cfg.Refresh
	for s, timeout := range r.want {
		res, seen := r.state[s]
		at := res.Tried.Add(r.cfg.Refresh)
		if res.Err != "" {
			at = res.Tried.Add(r.cfg.RetryAfterFailure)
		}
		if !seen || !at.After(now) {
			due = append(due, job{s, timeout})
			continue
		}
		next = min(next, at.Sub(now))
	}
	r.mu.Unlock()
	slices.SortFunc(due, func(a, b job) int { return strings.Compare(a.src.Issuer+a.src.URI, b.src.Issuer+b.src.URI) })
	changed := false
	for _, j := range due {
		if ctx.Err() != nil {
			return next
		}
		jwks, uri, err := r.fetch(ctx, j.src, j.timeout)
		r.mu.Lock()
		if _, still := r.want[j.src]; !still {
			r.mu.Unlock()
			continue
		}
		prev := r.state[j.src]
		res := Result{JWKS: prev.JWKS, URI: prev.URI, Fetched: prev.Fetched, Tried: time.Now()}
		if err != nil {
			res.Err = err.Error()
			r.fetches.WithLabelValues("error").Inc()
			keep := "every token of this issuer is refused until they are (fail closed)"
			if prev.JWKS != "" {
				keep = "the keys fetched at " + prev.Fetched.UTC().Format(time.RFC3339) + " stay in use"
			}
			r.cfg.Logger.Warn("jwks: cannot fetch the keys of a RequestAuthentication issuer; "+keep, "issuer", j.src.Issuer, "jwksUri", j.src.URI, "err", err)
			next = min(next, r.cfg.RetryAfterFailure)
		} else {
			r.fetches.WithLabelValues("ok").Inc()
			if prev.Err != "" || prev.JWKS == "" {
				r.cfg.Logger.Info("jwks: keys fetched", "issuer", j.src.Issuer, "jwksUri", uri)
			}
			res.JWKS, res.URI, res.Fetched = jwks, uri, res.Tried
		}
		if res.JWKS != prev.JWKS || res.Err != prev.Err || res.URI != prev.URI {
			changed = true
		}
		r.state[j.src] = res
		r.mu.Unlock()
	}
	r.mu.Lock()
	keys := r.publishLocked(changed)
	r.mu.Unlock()
	if keys != nil && r.cfg.OnChange != nil {
		r.cfg.OnChange(keys)
	}
	return next
}

// fetch gets a source's key set: from its URI, or the jwks_uri its
// issuer's OpenID configuration names.
func (r *Resolver) fetch(ctx context.Context, src Source, timeout time.Duration) (jwks, uri string, err error) {
	uri = src.URI
	if uri == "" {
		disc := strings.TrimSuffix(src.Issuer, "/") + "/.well-known/openid-configuration"
		body, err := r.get(ctx, disc, timeout)
		if err != nil {
			return "", "", fmt.Errorf("OpenID discovery (no jwksUri): %w", err)
		}
		var doc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return "", "", fmt.Errorf("OpenID discovery %s: not an OpenID configuration: %w", disc, err)
		}
		if u, err := url.Parse(doc.JWKSURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", "", fmt.Errorf("OpenID discovery %s: jwks_uri %q is not an http(s) URL", disc, doc.JWKSURI)
		}
		uri = doc.JWKSURI
	}
	body, err := r.get(ctx, uri, timeout)
	if err != nil {
		return "", uri, err
	}
	if err := ValidateJWKS(body); err != nil {
		return "", uri, fmt.Errorf("%s: %w", uri, err)
	}
	return string(body), uri, nil
}

func (r *Resolver) get(ctx context.Context, uri string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", uri, resp.Status)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("GET %s: more than %d bytes", uri, maxBody)
	}
	return body, nil
}

// ValidateJWKS checks a document is a JSON Web Key Set with at least one
// key, each with a key type.
func ValidateJWKS(body []byte) error {
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	if len(set.Keys) == 0 {
		return errors.New("not a JSON Web Key Set: no keys")
	}
	for i, k := range set.Keys {
		if kty, _ := k["kty"].(string); kty == "" {
			return fmt.Errorf("not a JSON Web Key Set: keys[%d] has no kty", i)
		}
	}
	return nil
}

// PublicOnly is a key set whose only key's private half was generated and
// immediately discarded: no token verifies against it. Envoy refuses an
// empty key set, so an issuer without keys gets this one, and fails
// closed.
const PublicOnly = `{"keys":[{"kty":"RSA","e":"AQAB","kid":"meshlens-no-keys","n":"3zirSpWNvmHnv17rPoR1ROSUbmnJsgakSNP-wcUwq2O4kC632WaNGK95wk-Qhru0CP2dGYfZO4DBoqFGVPg9DGDpWevjhq3pDwagRdpbZbPX6SBU5dmIi2PS6AUujwVTksgOwCJOins_BmpN0sTycPK1QdjqKVAw-TSuNa35-Khr0A_wm8CbSftk7ar3r7jjqsenDKMWGbBI8tJ161g_xmU89tGytGpRgewdIEcpbLCq0agQQfoSqlTx1hi6IavQ_euh5znLvU1584L-44k_XcAQBcRsABOKAbsHLSUe8-vX-QGLjBFGzuNKcD8la8oNyW6ym4ayE6lp7r6aN0ohxQ"}]}`

// Unavailable says why the keys of issuer at uri ("" for OpenID
// discovery) were never fetched: the URL tried and the last error; ok is
// false once they were fetched, and before the first try. It fits
// config.IstioOptions.JWKSUnavailable.
func (k *Keys) Unavailable(issuer, uri string) (at, lastErr string, ok bool) {
	r, found := k.Lookup(issuer, uri)
	if !found || r.JWKS != "" || r.Err == "" {
		return "", "", false
	}
	at = uri
	if at == "" {
		at = strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	}
	return at, r.Err, true
}

package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// OIDCConfig is the OpenID Connect issuer whose JWTs meshlens accepts as
// bearer tokens, beside the static ones: a company's SSO.
type OIDCConfig struct {
	// Issuer is the issuer URL (the tokens' iss); its discovery document is
	// ISSUER/.well-known/openid-configuration.
	Issuer string
	// Audience must be among the tokens' aud.
	Audience string
	// RoleClaim names the claim holding the caller's roles (Grant's
	// grammar): a string or a list of strings. A dotted path
	// ("realm_access.roles") reaches into objects when no claim has the
	// whole name.
	RoleClaim string
	// RolePrefix, when set, makes only the claim's values starting with it
	// count, the prefix removed: "meshlens:" with a groups claim turns
	// the group "meshlens:operator:team-a" into operator:team-a.
	RolePrefix string
	// KeysMaxAge is how long the issuer's keys are used before they are
	// fetched again (a revoked key stops being accepted); an unknown key
	// id fetches them at once.
	KeysMaxAge time.Duration
}

// DefaultRoleClaim is the claim read for roles unless told otherwise.
const DefaultRoleClaim = "meshlens_roles"

// DefaultOIDCConfig is OIDC off, with the defaults of its other settings.
func DefaultOIDCConfig() OIDCConfig {
	return OIDCConfig{RoleClaim: DefaultRoleClaim, KeysMaxAge: 10 * time.Minute}
}

func (c OIDCConfig) claim() string {
	if c.RoleClaim == "" {
		return DefaultRoleClaim
	}
	return c.RoleClaim
}

// Validate says what is wrong with the settings, naming the flag.
func (c OIDCConfig) Validate() error {
	if c.Issuer == "" {
		return errors.New("--oidc-audience is set but --oidc-issuer is not: both are needed for OIDC tokens")
	}
	u, err := url.Parse(c.Issuer)
	if err != nil {
		return fmt.Errorf("--oidc-issuer %q: %w", c.Issuer, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--oidc-issuer %q: want an http(s) URL with a host and no query or fragment, as the tokens' iss claim says it", c.Issuer)
	}
	if c.Audience == "" {
		return fmt.Errorf("--oidc-issuer %s needs --oidc-audience: the audience (aud) tokens for meshlens carry, often the client ID", c.Issuer)
	}
	if c.KeysMaxAge <= 0 {
		return fmt.Errorf("--oidc-keys-max-age %s: want a positive duration", c.KeysMaxAge)
	}
	return nil
}

// Bounds of what meshlens reads from the issuer and how often it asks.
const (
	maxIssuerDocument = 1 << 20
	// minKeysRefresh spaces fetches of the issuer's keys: tokens with
	// unknown key ids (forged ones too) do not make meshlens hammer the
	// issuer.
	minKeysRefresh = time.Second
	issuerTimeout  = 10 * time.Second
	clockLeeway    = time.Minute
)

// signingAlgs are the asymmetric algorithms OIDC issuers sign with; HMAC
// is never accepted (a public key is no secret).
var signingAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// oidcVerifier verifies an issuer's JWTs. It finds the issuer's keys by
// discovery at the first token and fetches them again when a token names a
// key id it does not know (the issuer rotated its keys) or they are older
// than KeysMaxAge.
type oidcVerifier struct {
	cfg    OIDCConfig
	client *http.Client
	logger *slog.Logger
	now    func() time.Time

	fetch sync.Mutex // held by the one request fetching from the issuer

	mu      sync.Mutex // guards the fields below; never held across I/O
	jwksURL string     // "" until discovered
	algs    []jose.SignatureAlgorithm
	keys    []jose.JSONWebKey
	fetched time.Time // when keys were fetched
	tried   time.Time // last fetch attempt (discovery or keys)
	err     error     // its error
}

func newOIDCVerifier(cfg OIDCConfig, logger *slog.Logger) *oidcVerifier {
	return &oidcVerifier{cfg: cfg, client: &http.Client{Timeout: issuerTimeout}, logger: logger, now: time.Now}
}

func (v *oidcVerifier) refused(format string, args ...any) error {
	return &refusal{http.StatusUnauthorized, "OIDC token refused: " + fmt.Sprintf(format, args...)}
}

// verify checks a JWT: signature by one of the issuer's keys, issuer,
// audience, expiry; then reads its subject and grant.
func (v *oidcVerifier) verify(ctx context.Context, raw string) (Caller, error) {
	tok, err := jwt.ParseSigned(raw, signingAlgs)
	if err != nil {
		return Caller{}, v.refused("not a JWT signed with an asymmetric algorithm (%v)", err)
	}
	if len(tok.Headers) != 1 {
		return Caller{}, v.refused("%d signatures, want 1", len(tok.Headers))
	}
	kid, alg := tok.Headers[0].KeyID, jose.SignatureAlgorithm(tok.Headers[0].Algorithm)
	keys, algs, err := v.keysFor(ctx, kid)
	if err != nil {
		return Caller{}, err
	}
	if len(algs) > 0 && !slices.Contains(algs, alg) {
		return Caller{}, v.refused("signed with %s; the issuer signs with %v", alg, algs)
	}
	if len(keys) == 0 {
		return Caller{}, v.refused("its key id %q is not among the issuer's signing keys (%s)", kid, v.jwksDescription())
	}
	var std jwt.Claims
	var all map[string]any
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		if err := tok.Claims(k.Key, &std, &all); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Caller{}, v.refused("its signature does not verify with the issuer's key %q", kid)
	}
	now := v.now()
	switch err := std.ValidateWithLeeway(jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: now}, clockLeeway); {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Caller{}, v.refused("issued by %q, not by %q (--oidc-issuer)", std.Issuer, v.cfg.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Caller{}, v.refused("audience %q does not include %q (--oidc-audience)", []string(std.Audience), v.cfg.Audience)
	case errors.Is(err, jwt.ErrExpired):
		return Caller{}, v.refused("expired at %s (now %s)", std.Expiry.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return Caller{}, v.refused("not valid before %s (now %s)", std.NotBefore.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case err != nil:
		return Caller{}, v.refused("%v", err)
	}
	if std.Expiry == nil {
		return Caller{}, v.refused("it has no exp claim: tokens that never expire are not accepted")
	}
	if std.Subject == "" {
		return Caller{}, v.refused("it has no sub claim, so its changes could not be attributed")
	}
	name := "oidc:" + strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, std.Subject)
	value, _ := claimValue(all, v.cfg.claim())
	g, ignored := grantFromClaim(value, v.cfg.RolePrefix)
	if g.Role == 0 {
		msg := fmt.Sprintf("%s has no meshlens role: its claim %q (--oidc-role-claim", name, v.cfg.claim())
		if v.cfg.RolePrefix != "" {
			msg += fmt.Sprintf(", values starting with %q (--oidc-role-prefix)", v.cfg.RolePrefix)
		}
		msg += ") holds none of viewer, operator, operator:NAMESPACE, admin"
		if len(ignored) > 0 {
			if len(ignored) > 5 {
				ignored = append(ignored[:5], fmt.Sprintf("and %d more", len(ignored)-5))
			}
			msg += "; ignored: " + strings.Join(ignored, "; ")
		}
		return Caller{}, &refusal{http.StatusForbidden, msg}
	}
	return Caller{Name: fmt.Sprintf("%s (%s)", name, g), Grant: g}, nil
}

func (v *oidcVerifier) jwksDescription() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return fmt.Sprintf("JWKS %s, fetched %s ago", v.jwksURL, v.now().Sub(v.fetched).Round(time.Second))
}

// keysFor returns the issuer's keys that may have signed a token with key
// id kid (all of them for no kid) and the algorithms the issuer signs with,
// fetching them first if they are unknown, old, or lack kid. An error is a
// *refusal: 503 when the issuer cannot be asked.
func (v *oidcVerifier) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, []jose.SignatureAlgorithm, error) {
	keys, algs, fresh := v.cached(kid)
	if fresh {
		return keys, algs, nil
	}
	v.fetch.Lock()
	defer v.fetch.Unlock()
	// Another request may have fetched them while this one waited.
	keys, algs, fresh = v.cached(kid)
	if fresh {
		return keys, algs, nil
	}
	v.mu.Lock()
	jwksURL, discovered := v.jwksURL, v.jwksURL != ""
	recent, lastErr := v.now().Sub(v.tried) < minKeysRefresh, v.err
	v.mu.Unlock()
	if recent {
		// Asked a moment ago: answer from what that gave.
		if lastErr != nil && len(keys) == 0 {
			return nil, nil, &refusal{http.StatusServiceUnavailable, "cannot verify OIDC tokens now: " + lastErr.Error()}
		}
		return keys, algs, nil
	}
	err := v.refresh(ctx, jwksURL, discovered)
	v.mu.Lock()
	v.tried, v.err = v.now(), err
	v.mu.Unlock()
	keys, algs, _ = v.cached(kid)
	if err != nil {
		if len(keys) > 0 {
			// The issuer is away: keys it gave before still verify.
			v.logger.Warn("OIDC issuer keys not refreshed; using those fetched before", "issuer", v.cfg.Issuer, "err", err)
			return keys, algs, nil
		}
		return nil, nil, &refusal{http.StatusServiceUnavailable, "cannot verify OIDC tokens now: " + err.Error()}
	}
	return keys, algs, nil
}

// cached returns the known keys for kid and whether they are fresh: some
// match and they are younger than KeysMaxAge.
func (v *oidcVerifier) cached(kid string) ([]jose.JSONWebKey, []jose.SignatureAlgorithm, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []jose.JSONWebKey
	for _, k := range v.keys {
		if kid == "" || k.KeyID == kid {
			out = append(out, k)
		}
	}
	fresh := len(out) > 0 && v.now().Sub(v.fetched) < v.cfg.KeysMaxAge
	return out, v.algs, fresh
}

// refresh discovers the issuer (once) and fetches its keys.
func (v *oidcVerifier) refresh(ctx context.Context, jwksURL string, discovered bool) error {
	var algs []jose.SignatureAlgorithm
	if !discovered {
		var err error
		jwksURL, algs, err = v.discover(ctx)
		if err != nil {
			return err
		}
	}
	keys, err := v.fetchKeys(ctx, jwksURL)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !discovered {
		v.jwksURL, v.algs = jwksURL, algs
		v.logger.Info("OIDC issuer discovered", "issuer", v.cfg.Issuer, "jwks", jwksURL, "keys", len(keys))
	} else {
		v.logger.Debug("OIDC issuer keys fetched", "issuer", v.cfg.Issuer, "keys", len(keys))
	}
	v.keys, v.fetched = keys, v.now()
	return nil
}

// discover reads the issuer's discovery document (OpenID Connect Discovery
// 1.0): where its keys are and what it signs with.
func (v *oidcVerifier) discover(ctx context.Context) (string, []jose.SignatureAlgorithm, error) {
	where := strings.TrimSuffix(v.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := v.getJSON(ctx, where, &doc); err != nil {
		return "", nil, fmt.Errorf("OIDC discovery: %w", err)
	}
	if doc.Issuer != v.cfg.Issuer {
		return "", nil, fmt.Errorf("OIDC discovery: %s names issuer %q, not %q (--oidc-issuer must be exactly the issuer's URL)", where, doc.Issuer, v.cfg.Issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", nil, fmt.Errorf("OIDC discovery: %s: jwks_uri %q is not an http(s) URL", where, doc.JWKSURI)
	}
	var algs []jose.SignatureAlgorithm
	for _, a := range doc.Algs {
		if slices.Contains(signingAlgs, jose.SignatureAlgorithm(a)) {
			algs = append(algs, jose.SignatureAlgorithm(a))
		}
	}
	if len(doc.Algs) > 0 && len(algs) == 0 {
		return "", nil, fmt.Errorf("OIDC discovery: %s: the issuer signs with %v, none of which meshlens accepts (%v)", where, doc.Algs, signingAlgs)
	}
	return doc.JWKSURI, algs, nil
}

// fetchKeys reads the issuer's JSON Web Key Set: its public signing keys.
func (v *oidcVerifier) fetchKeys(ctx context.Context, jwksURL string) ([]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := v.getJSON(ctx, jwksURL, &set); err != nil {
		return nil, fmt.Errorf("OIDC keys: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Use == "enc" || !k.Valid() {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("OIDC keys: %s holds no signing key", jwksURL)
	}
	return keys, nil
}

func (v *oidcVerifier) getJSON(ctx context.Context, where string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", where, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", where, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIssuerDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", where, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", where, resp.Status)
	}
	if len(body) > maxIssuerDocument {
		return fmt.Errorf("GET %s: larger than %d bytes", where, maxIssuerDocument)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: %w", where, err)
	}
	return nil
}

// claimValue is the claim named name, or, when no claim has that whole
// name, the value at its dotted path through objects.
func claimValue(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// grantFromClaim reads roles from a claim's value: a string or a list of
// strings, each holding roles separated by commas or spaces. With prefix,
// only values starting with it count (the prefix removed); values that
// are no role are ignored and returned, with why, for the error when no
// role is left.
func grantFromClaim(value any, prefix string) (Grant, []string) {
	var values []string
	switch x := value.(type) {
	case string:
		values = []string{x}
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				values = append(values, s)
			}
		}
	}
	var g Grant
	var ignored []string
	for _, val := range values {
		for _, part := range strings.FieldsFunc(val, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			if prefix != "" {
				rest, ok := strings.CutPrefix(part, prefix)
				if !ok {
					continue
				}
				part = rest
			}
			one, err := parseOne(part)
			if err != nil {
				ignored = append(ignored, err.Error())
				continue
			}
			g = g.Merge(one)
		}
	}
	return g, ignored
}

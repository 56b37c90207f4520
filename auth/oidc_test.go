package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/meshlens/meshlens/internal/oidctest"
)

const audience = "meshlens"

// testVerifier verifies tokens of iss with a clock the test moves.
func testVerifier(t *testing.T, iss *oidctest.Issuer, mod func(*OIDCConfig)) (*oidcVerifier, *clock) {
	t.Helper()
	cfg := DefaultOIDCConfig()
	cfg.Issuer, cfg.Audience = iss.URL, audience
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v := newOIDCVerifier(cfg, discard())
	c := &clock{t: time.Now()}
	v.now = c.now
	return v, c
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// refusalOf is the status and message of a refused token, or 200 and "".
func refusalOf(err error) (int, string) {
	if err == nil {
		return http.StatusOK, ""
	}
	var r *refusal
	if !errors.As(err, &r) {
		return 0, err.Error()
	}
	return r.status, r.msg
}

func TestOIDCTokensRefusedSayWhy(t *testing.T) {
	iss := oidctest.New(t)
	v, _ := testVerifier(t, iss, nil)
	ctx := context.Background()
	good := iss.Claims("alice@example.com", audience, []any{"operator:team-a"})
	with := func(k string, val any) map[string]any {
		c := iss.Claims("alice@example.com", audience, []any{"operator:team-a"})
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("a shared secret of 32 bytes ....")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hmac, err := jwt.Signed(hs).Claims(good).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token string
		status      int
		why         string
	}{
		{"valid", iss.Sign(t, good), 200, ""},
		{"expired", iss.Sign(t, with("exp", time.Now().Add(-time.Hour).Unix())), 401, "OIDC token refused: expired at "},
		{"no expiry", iss.Sign(t, with("exp", nil)), 401, "no exp claim"},
		{"not yet valid", iss.Sign(t, with("nbf", time.Now().Add(time.Hour).Unix())), 401, "not valid before"},
		{"wrong audience", iss.Sign(t, with("aud", "grafana")), 401, `audience ["grafana"] does not include "meshlens" (--oidc-audience)`},
		{"wrong issuer", iss.Sign(t, with("iss", "https://evil.example.com")), 401, `issued by "https://evil.example.com", not by "` + iss.URL + `"`},
		{"no subject", iss.Sign(t, with("sub", nil)), 401, "no sub claim"},
		{"unknown key id", iss.Forge(t, "key-99", good), 401, `its key id "key-99" is not among the issuer's signing keys`},
		{"bad signature", iss.Forge(t, "key-1", good), 401, `its signature does not verify with the issuer's key "key-1"`},
		{"HMAC", hmac, 401, "not a JWT signed with an asymmetric algorithm"},
		{"garbage", "a.b.c", 401, "not a JWT"},
		{"no role", iss.Sign(t, with("meshlens_roles", nil)), 403, `oidc:alice@example.com has no meshlens role: its claim "meshlens_roles"`},
		{"only unknown roles", iss.Sign(t, with("meshlens_roles", []any{"root", "admin:team-a"})), 403,
			`ignored: unknown role "root" (want viewer, operator, operator:NAMESPACE or admin); "admin:team-a": admin is cluster-wide`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.verify(ctx, tt.token)
			status, msg := refusalOf(err)
			if status != tt.status || !strings.Contains(msg, tt.why) {
				t.Fatalf("status %d %q, want %d with %q", status, msg, tt.status, tt.why)
			}
			if status == 200 && (c.Name != "oidc:alice@example.com (operator:team-a)" || !reflect.DeepEqual(c.Grant, Grant{Role: Operator, Namespaces: []string{"team-a"}})) {
				t.Fatalf("caller %+v", c)
			}
		})
	}
}

func TestOIDCRoleClaimForms(t *testing.T) {
	iss := oidctest.New(t)
	tests := []struct {
		name   string
		mod    func(*OIDCConfig)
		claims map[string]any
		want   Grant
	}{
		{"list", nil, map[string]any{"meshlens_roles": []any{"operator:team-b", "operator:team-a"}}, Grant{Role: Operator, Namespaces: []string{"team-a", "team-b"}}},
		{"comma-separated string", nil, map[string]any{"meshlens_roles": "viewer, operator:team-a"}, Grant{Role: Operator, Namespaces: []string{"team-a"}}},
		{"admin wins", nil, map[string]any{"meshlens_roles": []any{"operator:team-a", "admin"}}, Grant{Role: Admin}},
		{"groups with a prefix", func(c *OIDCConfig) { c.RoleClaim, c.RolePrefix = "groups", "meshlens:" },
			map[string]any{"groups": []any{"engineering", "admin", "meshlens:operator:team-a"}}, Grant{Role: Operator, Namespaces: []string{"team-a"}}},
		{"dotted path", func(c *OIDCConfig) { c.RoleClaim = "realm_access.roles" },
			map[string]any{"realm_access": map[string]any{"roles": []any{"offline_access", "viewer"}}}, Grant{Role: Viewer}},
		{"claim named with dots", func(c *OIDCConfig) { c.RoleClaim = "https://meshlens.io/roles" },
			map[string]any{"https://meshlens.io/roles": "admin"}, Grant{Role: Admin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := testVerifier(t, iss, tt.mod)
			claims := iss.Claims("bob", audience, nil)
			for k, val := range tt.claims {
				claims[k] = val
			}
			c, err := v.verify(context.Background(), iss.Sign(t, claims))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Grant, tt.want) {
				t.Fatalf("grant %v, want %v", c.Grant, tt.want)
			}
		})
	}
}

// The issuer rotates its key: a token of the new key fetches the keys
// again at once; tokens of the old key verify while it is published, and
// not after it is retired and the keys are older than KeysMaxAge.
func TestOIDCKeyRotationAndRetirement(t *testing.T) {
	iss := oidctest.New(t)
	v, clk := testVerifier(t, iss, func(c *OIDCConfig) { c.KeysMaxAge = 5 * time.Minute })
	ctx := context.Background()
	claims := iss.Claims("carol", audience, "viewer")
	old := iss.Sign(t, claims)
	if _, err := v.verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := iss.KeyFetches(); got != 1 {
		t.Fatalf("%d key fetches after the first token, want 1", got)
	}
	clk.add(2 * time.Second)
	newID := iss.Rotate(t, jose.ES256)
	if _, err := v.verify(ctx, iss.SignWith(t, newID, claims)); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if got := iss.KeyFetches(); got != 2 {
		t.Fatalf("%d key fetches after the rotated key's token, want 2", got)
	}
	if _, err := v.verify(ctx, old); err != nil {
		t.Fatalf("old key still published: %v", err)
	}
	iss.Retire("key-1")
	if _, err := v.verify(ctx, old); err != nil {
		t.Fatalf("keys younger than KeysMaxAge are not fetched again, so the old key still verifies: %v", err)
	}
	clk.add(6 * time.Minute)
	status, msg := refusalOf(mustFail(v.verify(ctx, old)))
	if status != 401 || !strings.Contains(msg, `its key id "key-1" is not among the issuer's signing keys`) {
		t.Fatalf("retired key after KeysMaxAge: %d %q", status, msg)
	}
}

func mustFail(_ Caller, err error) error { return err }

// Forged tokens with made-up key ids do not make meshlens ask the issuer
// for every one of them.
func TestOIDCUnknownKeyIDsDoNotHammerTheIssuer(t *testing.T) {
	iss := oidctest.New(t)
	v, clk := testVerifier(t, iss, nil)
	claims := iss.Claims("mallory", audience, "admin")
	for i := range 50 {
		if _, err := v.verify(context.Background(), iss.Forge(t, "made-up-"+string(rune('a'+i%26)), claims)); err == nil {
			t.Fatal("forged token accepted")
		}
	}
	if got := iss.KeyFetches(); got != 1 {
		t.Fatalf("50 forged tokens within a second made %d key fetches, want 1", got)
	}
	clk.add(minKeysRefresh)
	_, _ = v.verify(context.Background(), iss.Forge(t, "made-up-z", claims))
	if got := iss.KeyFetches(); got != 2 {
		t.Fatalf("a second later: %d key fetches, want 2", got)
	}
}

// The issuer down: 503 naming why while no key is known; keys fetched
// before keep verifying.
func TestOIDCIssuerDown(t *testing.T) {
	iss := oidctest.New(t)
	v, clk := testVerifier(t, iss, func(c *OIDCConfig) { c.KeysMaxAge = time.Minute })
	tok := iss.Sign(t, iss.Claims("dave", audience, "viewer"))
	iss.FailKeys(true)
	status, msg := refusalOf(mustFail(v.verify(context.Background(), tok)))
	if status != 503 || !strings.Contains(msg, "cannot verify OIDC tokens now: OIDC keys: GET "+iss.URL+"/keys: 503") {
		t.Fatalf("issuer down at the first token: %d %q", status, msg)
	}
	iss.FailKeys(false)
	clk.add(minKeysRefresh)
	if _, err := v.verify(context.Background(), tok); err != nil {
		t.Fatalf("issuer back: %v", err)
	}
	iss.FailKeys(true)
	clk.add(2 * time.Minute)
	if _, err := v.verify(context.Background(), tok); err != nil {
		t.Fatalf("issuer down after keys were fetched: %v", err)
	}
}

func TestOIDCConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg OIDCConfig
		err string
	}{
		{OIDCConfig{Audience: "x", KeysMaxAge: time.Minute}, "--oidc-audience is set but --oidc-issuer is not"},
		{OIDCConfig{Issuer: "https://sso.example.com", KeysMaxAge: time.Minute}, "--oidc-issuer https://sso.example.com needs --oidc-audience"},
		{OIDCConfig{Issuer: "sso.example.com", Audience: "x", KeysMaxAge: time.Minute}, "want an http(s) URL with a host"},
		{OIDCConfig{Issuer: "https://sso.example.com", Audience: "x"}, "--oidc-keys-max-age 0s: want a positive duration"},
	} {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.err)
		}
	}
}

func TestDiscoveryNamingAnotherIssuerIsRefused(t *testing.T) {
	iss := oidctest.New(t)
	// The issuer's URL with a trailing slash is another issuer to OIDC.
	v, _ := testVerifier(t, iss, func(c *OIDCConfig) { c.Issuer += "/" })
	status, msg := refusalOf(mustFail(v.verify(context.Background(), iss.Sign(t, iss.Claims("erin", audience, "viewer")))))
	if status != 503 || !strings.Contains(msg, `names issuer "`+iss.URL+`", not "`+iss.URL+`/"`) {
		t.Fatalf("%d %q", status, msg)
	}
}

// FuzzOIDCToken: whatever the bearer string, the verifier neither panics
// nor accepts what the issuer did not sign.
func FuzzOIDCToken(f *testing.F) {
	iss := oidctest.New(f)
	cfg := DefaultOIDCConfig()
	cfg.Issuer, cfg.Audience = iss.URL, audience
	v := newOIDCVerifier(cfg, discard())
	valid := iss.Sign(f, iss.Claims("fuzz", audience, "admin"))
	f.Add(valid)
	f.Add(iss.Forge(f, "key-1", iss.Claims("fuzz", audience, "admin")))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.verify(context.Background(), tok)
		if err == nil && tok != valid {
			t.Fatalf("accepted %q as %+v", tok, c)
		}
	})
}

// FuzzRoleClaim: any claims JSON gives a grant that reads back as itself,
// or none.
func FuzzRoleClaim(f *testing.F) {
	f.Add(`{"meshlens_roles":["operator:team-a","viewer"]}`, "")
	f.Add(`{"meshlens_roles":"admin, operator:x"}`, "")
	f.Add(`{"groups":["meshlens:operator:a","eng"]}`, "meshlens:")
	f.Add(`{"meshlens_roles":[1,{"a":2},null,"operator:Team_A"]}`, "")
	f.Fuzz(func(t *testing.T, claims, prefix string) {
		var m map[string]any
		if json.Unmarshal([]byte(claims), &m) != nil {
			return
		}
		for _, name := range []string{"meshlens_roles", "groups", "a.b"} {
			val, _ := claimValue(m, name)
			g, _ := grantFromClaim(val, prefix)
			if g.Role == 0 {
				continue
			}
			again, err := ParseGrant(g.String())
			if err != nil || !reflect.DeepEqual(again, g) {
				t.Fatalf("grant %#v prints as %q, which parses as %#v, %v", g, g.String(), again, err)
			}
		}
	})
}

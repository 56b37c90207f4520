// Package oidctest is an OpenID Connect issuer for tests: a loopback HTTP
// server with the discovery document and a JWKS, and keys the test makes
// to sign tokens with, rotate and retire, as a company's SSO does.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer is an OIDC issuer on a loopback port.
type Issuer struct {
	URL string // the issuer URL (iss), http://127.0.0.1:PORT

	srv      *httptest.Server
	mu       sync.Mutex
	keys     []key // published, newest last; the newest signs
	forged   *key  // never published
	n        int
	fetches  atomic.Int64
	failKeys atomic.Bool
}

type key struct {
	id   string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// New starts an issuer with one RS256 key; it stops when the test ends.
func New(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": i.URL, "jwks_uri": i.URL + "/keys",
			"authorization_endpoint": i.URL + "/auth", "token_endpoint": i.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"response_types_supported":              []string{"code"}, "subject_types_supported": []string{"public"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		i.fetches.Add(1)
		if i.failKeys.Load() {
			http.Error(w, "keys unavailable", http.StatusServiceUnavailable)
			return
		}
		i.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range i.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.id, Algorithm: string(k.alg), Use: "sig"})
		}
		i.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	i.srv = httptest.NewServer(mux) // loopback
	t.Cleanup(i.srv.Close)
	i.URL = i.srv.URL
	i.Rotate(t, jose.RS256)
	return i
}

func newKey(t testing.TB, id string, alg jose.SignatureAlgorithm) key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		t.Fatalf("oidctest: algorithm %s not made here", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key{id: id, alg: alg, priv: priv}
}

// Rotate publishes a new key (RS256 or ES256) that signs from now on; the
// earlier ones stay published until Retire. It returns the new key id.
func (i *Issuer) Rotate(t testing.TB, alg jose.SignatureAlgorithm) string {
	t.Helper()
	i.mu.Lock()
	i.n++
	id := fmt.Sprintf("key-%d", i.n)
	i.mu.Unlock()
	k := newKey(t, id, alg)
	i.mu.Lock()
	i.keys = append(i.keys, k)
	i.mu.Unlock()
	return id
}

// Retire stops publishing key id (tokens it signed no longer verify once
// the verifier fetches the keys again).
func (i *Issuer) Retire(id string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = slices.DeleteFunc(i.keys, func(k key) bool { return k.id == id })
}

// FailKeys makes the JWKS answer 503 (the issuer is down) or not.
func (i *Issuer) FailKeys(fail bool) { i.failKeys.Store(fail) }

// KeyFetches is how many times the JWKS was asked for.
func (i *Issuer) KeyFetches() int64 { return i.fetches.Load() }

// Claims are the usual claims of a token of this issuer for subject and
// audience, valid for an hour, with roles in the claim "meshlens_roles"
// unless roles is nil.
func (i *Issuer) Claims(subject, audience string, roles any) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": i.URL, "sub": subject, "aud": audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if roles != nil {
		c["meshlens_roles"] = roles
	}
	return c
}

// Sign signs claims with the newest key.
func (i *Issuer) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	i.mu.Lock()
	k := i.keys[len(i.keys)-1]
	i.mu.Unlock()
	return sign(t, k, k.id, claims)
}

// SignWith signs claims with the published key id.
func (i *Issuer) SignWith(t testing.TB, id string, claims map[string]any) string {
	t.Helper()
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, k := range i.keys {
		if k.id == id {
			return sign(t, k, k.id, claims)
		}
	}
	t.Fatalf("oidctest: no published key %q", id)
	return ""
}

// Forge signs claims with a key the issuer never published, its header
// naming key id kid: a published one (a bad signature) or not (an unknown
// key id).
func (i *Issuer) Forge(t testing.TB, kid string, claims map[string]any) string {
	t.Helper()
	i.mu.Lock()
	if i.forged == nil {
		k := newKey(t, "forged", jose.RS256)
		i.forged = &k
	}
	k := *i.forged
	i.mu.Unlock()
	return sign(t, k, kid, claims)
}

func sign(t testing.TB, k key, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

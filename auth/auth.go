// Package auth decides who may call meshlens' HTTP API and what they may
// change: bearer tokens, static ones from a tokens file or OIDC JWTs of a
// company's SSO, each with a Grant (viewer, operator of every namespace or
// of some, admin).
package auth

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/labstack/echo/v4"
)

// Role is what a token may do. An operator may do everything a viewer may,
// an admin everything.
type Role int

// Roles, ordered by power.
const (
	Viewer Role = iota + 1
	Operator
	Admin
)

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole reads "viewer", "operator" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	case "admin":
		return Admin, nil
	}
	return 0, fmt.Errorf("unknown role %q (want viewer, operator, operator:NAMESPACE or admin)", s)
}

// TokenFile is the name, under the data dir, of the operator token meshlens
// creates when no tokens file is given. The CLI reads it as its default.
const TokenFile = "operator.token"

// MinTokenLength rejects guessable tokens in a tokens file.
const MinTokenLength = 16

// TokenPath is where the generated operator token lives.
func TokenPath(dataDir string) string { return filepath.Join(dataDir, TokenFile) }

// Token is one line of a tokens file: a token and its grant (Role, and
// with Namespaces operator of those only; see Grant).
type Token struct {
	Value      string
	Role       Role
	Namespaces []string
}

// Grant is what the token may do.
func (t Token) Grant() Grant { return Grant{Role: t.Role, Namespaces: t.Namespaces} }

// ParseTokens reads a tokens file: one "TOKEN ROLES" per line, ROLES in
// the grammar of Grant ("viewer", "operator", "operator:team-a,operator:team-b",
// "admin"), blank lines and lines starting with # ignored, and a trailing
// "# comment" allowed. Any other line is an error naming it.
func ParseTokens(r io.Reader) ([]Token, error) {
	var out []Token
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) > 2 && strings.HasPrefix(fields[2], "#") {
			fields = fields[:2]
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"TOKEN ROLE\", got %d fields", n, len(fields))
		}
		g, err := ParseGrant(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(fields[0]) < MinTokenLength {
			return nil, fmt.Errorf("line %d: token is shorter than %d characters", n, MinTokenLength)
		}
		if prev, dup := seen[fields[0]]; dup {
			return nil, fmt.Errorf("line %d: token already listed on line %d", n, prev)
		}
		seen[fields[0]] = n
		out = append(out, Token{Value: fields[0], Role: g.Role, Namespaces: g.Namespaces})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading tokens: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("no tokens: add lines \"TOKEN ROLE\" (role viewer, operator, operator:NAMESPACE or admin)")
	}
	return out, nil
}

// Authorizer checks bearer tokens: those of the tokens file (or the
// generated operator token) and, with an OIDC issuer, JWTs it signed.
type Authorizer struct {
	entries []entry
	token   string // the generated operator token, if any
	peer    string // see PeerToken
	oidc    *oidcVerifier
	root    string // the mesh root namespace
}

type entry struct {
	hash  [sha256.Size]byte
	grant Grant
}

// DefaultRootNamespace is Istio's mesh root namespace: its config applies to
// every namespace, so only an unscoped operator or an admin changes it.
const DefaultRootNamespace = "istio-system"

// New builds an Authorizer from tokens, without OIDC, with the default
// mesh root namespace.
func New(tokens []Token) *Authorizer {
	a := &Authorizer{root: DefaultRootNamespace}
	for _, t := range tokens {
		a.entries = append(a.entries, entry{hash: sha256.Sum256([]byte(t.Value)), grant: t.Grant()})
	}
	return a
}

// Config is where an Authorizer's callers come from.
type Config struct {
	// Tokens is the tokens file; "" uses DataDir's generated operator token.
	Tokens  string
	DataDir string
	// OIDC, when its Issuer is set, also accepts that issuer's JWTs.
	OIDC OIDCConfig
	// RootNamespace is the mesh root namespace (default DefaultRootNamespace).
	RootNamespace string
}

// Load builds the Authorizer of cfg. It reads the tokens file at
// cfg.Tokens; without one, it uses the operator token in
// DataDir/operator.token, creating it (mode 0600, 32 random bytes in hex)
// if absent, and logs where it is. The OIDC issuer is not asked anything
// yet: its discovery document and keys are fetched at the first JWT.
func Load(cfg Config, logger *slog.Logger) (*Authorizer, error) {
	a, err := loadTokens(cfg.Tokens, cfg.DataDir, logger)
	if err != nil {
		return nil, err
	}
	if cfg.RootNamespace != "" {
		a.root = cfg.RootNamespace
	}
	if cfg.OIDC.Issuer != "" || cfg.OIDC.Audience != "" {
		if err := cfg.OIDC.Validate(); err != nil {
			return nil, err
		}
		a.oidc = newOIDCVerifier(cfg.OIDC, logger)
		logger.Info("OIDC tokens accepted", "issuer", cfg.OIDC.Issuer, "audience", cfg.OIDC.Audience,
			"role-claim", cfg.OIDC.claim(), "role-prefix", cfg.OIDC.RolePrefix)
	}
	return a, nil
}

func loadTokens(path, dataDir string, logger *slog.Logger) (*Authorizer, error) {
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("tokens file: %w", err)
		}
		defer f.Close()
		tokens, err := ParseTokens(f)
		if err != nil {
			return nil, fmt.Errorf("tokens file %s: %w", path, err)
		}
		logger.Info("API tokens loaded", "file", path, "tokens", len(tokens))
		a := New(tokens)
		// Replicas share the tokens file: each presents the least powerful
		// token to the others (reads are all it needs).
		for _, t := range tokens {
			if a.peer == "" || (t.Role == Viewer && !t.Grant().Scoped()) {
				a.peer = t.Value
			}
		}
		return a, nil
	}
	tokenPath := TokenPath(dataDir)
	tok, created, err := operatorToken(tokenPath)
	if err != nil {
		return nil, err
	}
	if created {
		logger.Info("created operator token; the CLI reads it, or pass it as Authorization: Bearer", "file", tokenPath)
	} else {
		logger.Info("using operator token", "file", tokenPath)
	}
	a := New([]Token{{Value: tok, Role: Operator}})
	a.token, a.peer = tok, tok
	return a, nil
}

func operatorToken(path string) (tok string, created bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < MinTokenLength {
			return "", false, fmt.Errorf("operator token %s is shorter than %d characters; delete it to have a new one made", path, MinTokenLength)
		}
		return tok, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("operator token: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("operator token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("operator token: %w", err)
	}
	tok = hex.EncodeToString(raw)
	// O_EXCL: if two processes race, one fails instead of both writing.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("operator token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("operator token: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("operator token: %w", err)
	}
	return tok, true, nil
}

// Token is the operator token Load created or reused in the data dir, or
// "" when tokens came from a file.
func (a *Authorizer) Token() string { return a.token }

// PeerToken is the token this replica presents to the other meshlens
// replicas when it reads their live graphs: a viewer token of the tokens
// file if it has one, else its first; the generated operator token without
// a file (replicas then only accept each other where reads need no token).
func (a *Authorizer) PeerToken() string { return a.peer }

// RoleOf returns the role of a static token. Every entry is compared, in
// constant time, so timing says nothing about which or how much of a token
// matched.
func (a *Authorizer) RoleOf(token string) (Role, bool) {
	g, ok := a.staticGrant(token)
	return g.Role, ok
}

func (a *Authorizer) staticGrant(token string) (Grant, bool) {
	h := sha256.Sum256([]byte(token))
	var g Grant
	for _, e := range a.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			g = e.grant
		}
	}
	return g, g.Role != 0
}

// Caller is who a request comes from, once its token is verified.
type Caller struct {
	// Name names the caller without giving its token away: "token:1a2b3c4d
	// (operator)" for a static token, "oidc:SUBJECT (operator:team-a)" for
	// an OIDC one. The audit trail records it.
	Name  string
	Grant Grant
	root  string
}

// refusal is an authentication or authorization failure: its HTTP status
// and the message that says why.
type refusal struct {
	status int
	msg    string
}

func (r *refusal) Error() string { return r.msg }

// ErrForbidden is what MayChange returns (wrapped, with the reason) when
// the caller may not change a namespace.
var ErrForbidden = errors.New("forbidden")

// MayChange says why the caller may not change namespace ns, or nil.
func (c Caller) MayChange(ns string) error {
	if c.Grant.mayChange(ns, c.root) {
		return nil
	}
	if ns == c.root && c.Grant.MayChangeSomething() {
		return fmt.Errorf("%w: namespace %s is the mesh root namespace, whose config applies to every namespace: changing it needs admin or operator (of all namespaces); %s is not", ErrForbidden, ns, c.Name)
	}
	if !c.Grant.MayChangeSomething() {
		return fmt.Errorf("%w: this change needs the operator role; %s has role %s", ErrForbidden, c.Name, c.Grant)
	}
	return fmt.Errorf("%w: %s may change namespace %s only, not %s", ErrForbidden, c.Name, strings.Join(c.Grant.Namespaces, ", "), ns)
}

// authenticate finds who tok belongs to: a static token, else (with OIDC)
// a JWT of the issuer. Its error is a *refusal.
func (a *Authorizer) authenticate(r *http.Request, tok string) (Caller, error) {
	if g, ok := a.staticGrant(tok); ok {
		return Caller{Name: TokenName(tok, g), Grant: g, root: a.root}, nil
	}
	if a.oidc == nil || strings.Count(tok, ".") != 2 {
		return Caller{}, &refusal{http.StatusUnauthorized, "unknown token"}
	}
	c, err := a.oidc.verify(r.Context(), tok)
	if err != nil {
		return Caller{}, err
	}
	c.root = a.root
	return c, nil
}

// RequireForReads reports whether reads need a token for an HTTP listener
// address: anything but a loopback address does.
func RequireForReads(listenAddr string) bool {
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		host = listenAddr
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// Viewer guards reads: a presented token must be valid; without one, the
// call passes unless requireForReads.
func (a *Authorizer) Viewer(requireForReads bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, present := bearer(c.Request())
			if !present {
				if requireForReads {
					return unauthorized(c, "this API needs a token: send Authorization: Bearer TOKEN")
				}
				return next(c)
			}
			if _, err := a.authenticate(c.Request(), tok); err != nil {
				return refuse(c, err)
			}
			return next(c)
		}
	}
}

// Operator guards changes: the call needs a token that may change
// something, and, on a route with a :namespace parameter, that namespace.
// Handlers whose changes name their namespaces in the body check each with
// MayChange. The caller goes into the request's context (CallerOf, and
// ActorOf for the audit trail).
func (a *Authorizer) Operator() echo.MiddlewareFunc {
	return a.changes(func(c echo.Context, caller Caller) error {
		if ns := c.Param("namespace"); ns != "" {
			return caller.MayChange(ns)
		}
		if !caller.Grant.MayChangeSomething() {
			return caller.MayChange("")
		}
		return nil
	})
}

// ClusterOperator guards changes that may reach any namespace (the
// Alertmanager webhook rolls back whichever rollout an alert names): the
// call needs an unscoped operator or an admin.
func (a *Authorizer) ClusterOperator() echo.MiddlewareFunc {
	return a.changes(func(_ echo.Context, caller Caller) error {
		if caller.Grant.MayChangeEverywhere() {
			return nil
		}
		if !caller.Grant.MayChangeSomething() {
			return caller.MayChange("")
		}
		return fmt.Errorf("%w: this call may change any namespace, so it needs admin or operator (of all namespaces); %s may change %s only",
			ErrForbidden, caller.Name, strings.Join(caller.Grant.Namespaces, ", "))
	})
}

func (a *Authorizer) changes(check func(echo.Context, Caller) error) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, present := bearer(c.Request())
			if !present {
				return unauthorized(c, "changes need an operator token: send Authorization: Bearer TOKEN")
			}
			caller, err := a.authenticate(c.Request(), tok)
			if err != nil {
				return refuse(c, err)
			}
			if err := check(c, caller); err != nil {
				return c.JSON(http.StatusForbidden, map[string]string{"error": err.Error()})
			}
			// The audit trail names the caller (never its token) and the
			// client's address for every change the request makes.
			ctx := WithActor(c.Request().Context(), Actor{Who: caller.Name, From: c.Request().RemoteAddr})
			ctx = context.WithValue(ctx, callerKey{}, caller)
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

type callerKey struct{}

// CallerOf is the caller Operator or ClusterOperator verified, if any.
func CallerOf(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// MayChange says why the caller of ctx may not change namespace ns, or
// nil. A context without a caller (a change that did not come through the
// API's Operator guard: the config dir, Kubernetes) may.
func MayChange(ctx context.Context, ns string) error {
	c, ok := CallerOf(ctx)
	if !ok {
		return nil
	}
	return c.MayChange(ns)
}

// TokenName names a static token without giving it away: the start of its
// SHA-256 and its grant, "token:1a2b3c4d (operator)".
func TokenName(tok string, g Grant) string {
	h := sha256.Sum256([]byte(tok))
	return fmt.Sprintf("token:%x (%s)", h[:4], g)
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true // present but unusable: treated as an unknown token
	}
	return strings.TrimSpace(tok), true
}

// refuse answers an authentication failure with its status and why.
func refuse(c echo.Context, err error) error {
	var r *refusal
	if !errors.As(err, &r) {
		r = &refusal{http.StatusInternalServerError, err.Error()}
	}
	if r.status == http.StatusUnauthorized {
		return unauthorized(c, r.msg)
	}
	return c.JSON(r.status, map[string]string{"error": r.msg})
}

func unauthorized(c echo.Context, msg string) error {
	c.Response().Header().Set("WWW-Authenticate", `Bearer realm="meshlens"`)
	return c.JSON(http.StatusUnauthorized, map[string]string{"error": msg})
}

// Actor is who makes the changes of a request, and from where: what the
// audit trail records.
type Actor struct {
	Who, From string
}

type actorKey struct{}

// WithActor tells the changes made under ctx who makes them.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorOf is who WithActor named, if anyone.
func ActorOf(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

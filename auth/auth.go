// Package auth decides who may call meshlens' HTTP API: bearer tokens with a
// role, viewer (reads) or operator (reads and changes).
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

// Role is what a token may do. An operator may do everything a viewer may.
type Role int

// Roles, ordered by power.
const (
	Viewer Role = iota + 1
	Operator
)

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole reads "viewer" or "operator".
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	}
	return 0, fmt.Errorf("unknown role %q (want viewer or operator)", s)
}

// TokenFile is the name, under the data dir, of the operator token meshlens
// creates when no tokens file is given. The CLI reads it as its default.
const TokenFile = "operator.token"

// MinTokenLength rejects guessable tokens in a tokens file.
const MinTokenLength = 16

// TokenPath is where the generated operator token lives.
func TokenPath(dataDir string) string { return filepath.Join(dataDir, TokenFile) }

// Token is one line of a tokens file.
type Token struct {
	Value string
	Role  Role
}

// ParseTokens reads a tokens file: one "TOKEN ROLE" per line, roles viewer
// and operator, blank lines and lines starting with # ignored, and a
// trailing "# comment" allowed. Any other line is an error naming it.
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
		role, err := ParseRole(fields[1])
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
		out = append(out, Token{Value: fields[0], Role: role})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading tokens: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("no tokens: add lines \"TOKEN ROLE\" (role viewer or operator)")
	}
	return out, nil
}

// Authorizer checks bearer tokens.
type Authorizer struct {
	entries []entry
	token   string // the generated operator token, if any
	peer    string // see PeerToken
}

type entry struct {
	hash [sha256.Size]byte
	role Role
}

// New builds an Authorizer from tokens.
func New(tokens []Token) *Authorizer {
	a := &Authorizer{}
	for _, t := range tokens {
		a.entries = append(a.entries, entry{hash: sha256.Sum256([]byte(t.Value)), role: t.Role})
	}
	return a
}

// Load reads the tokens file at path. With path "", it uses the operator
// token in dataDir/operator.token, creating it (mode 0600, 32 random bytes
// in hex) if absent, and logs where it is.
func Load(path, dataDir string, logger *slog.Logger) (*Authorizer, error) {
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
			if a.peer == "" || t.Role == Viewer {
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

// RoleOf returns the role of a token. Every entry is compared, in constant
// time, so timing says nothing about which or how much of a token matched.
func (a *Authorizer) RoleOf(token string) (Role, bool) {
	h := sha256.Sum256([]byte(token))
	var role Role
	for _, e := range a.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			role = e.role
		}
	}
	return role, role != 0
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
			if _, ok := a.RoleOf(tok); !ok {
				return unauthorized(c, "unknown token")
			}
			return next(c)
		}
	}
}

// Operator guards changes: the call needs an operator token.
func (a *Authorizer) Operator() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, present := bearer(c.Request())
			if !present {
				return unauthorized(c, "changes need an operator token: send Authorization: Bearer TOKEN")
			}
			role, ok := a.RoleOf(tok)
			if !ok {
				return unauthorized(c, "unknown token")
			}
			if role < Operator {
				return c.JSON(http.StatusForbidden, map[string]string{"error": "this change needs the operator role; the token has role " + role.String()})
			}
			// The audit trail names the token (never its value) and the
			// client's address for every change the request makes.
			ctx := WithActor(c.Request().Context(), Actor{Who: TokenName(tok, role), From: c.Request().RemoteAddr})
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

// TokenName names a token without giving it away: the start of its SHA-256
// and its role, "token:1a2b3c4d (operator)".
func TokenName(tok string, role Role) string {
	h := sha256.Sum256([]byte(tok))
	return fmt.Sprintf("token:%x (%s)", h[:4], role)
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

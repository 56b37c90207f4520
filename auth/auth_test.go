package auth

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

const (
	viewerTok   = "viewer-token-0123456789"
	operatorTok = "operator-token-0123456789"
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Token
		wantErr string
	}{
		{name: "roles, comments and blank lines", in: "# team tokens\n\n" + viewerTok + " viewer\n  " + operatorTok + "\toperator # ci\n",
			want: []Token{{Value: viewerTok, Role: Viewer}, {Value: operatorTok, Role: Operator}}},
		{name: "admin and namespaced operators", in: viewerTok + " admin\n" + operatorTok + " operator:team-b,operator:team-a,viewer\n",
			want: []Token{{Value: viewerTok, Role: Admin}, {Value: operatorTok, Role: Operator, Namespaces: []string{"team-a", "team-b"}}}},
		{name: "operator of all namespaces includes a scoped one", in: operatorTok + " operator:team-a,operator\n",
			want: []Token{{Value: operatorTok, Role: Operator}}},
		{name: "unknown role names the line", in: viewerTok + " viewer\n" + operatorTok + " root\n", wantErr: "line 2: unknown role \"root\""},
		{name: "viewer is not per namespace", in: viewerTok + " viewer:team-a\n", wantErr: "line 1: \"viewer:team-a\": reads are not per namespace"},
		{name: "admin is cluster-wide", in: viewerTok + " admin:team-a\n", wantErr: "line 1: \"admin:team-a\": admin is cluster-wide; for one namespace use operator:team-a"},
		{name: "namespace missing", in: viewerTok + " operator:\n", wantErr: "line 1: \"operator:\": no namespace after the colon"},
		{name: "namespace not a Kubernetes name", in: viewerTok + " operator:Team_A\n", wantErr: "line 1: \"operator:Team_A\": namespace \"Team_A\" is not a Kubernetes namespace name"},
		{name: "empty role in a list", in: viewerTok + " operator:team-a,,viewer\n", wantErr: "line 1: unknown role \"\""},
		{name: "missing role names the line", in: "\n" + viewerTok + "\n", wantErr: "line 2: want \"TOKEN ROLE\", got 1 fields"},
		{name: "extra field names the line", in: viewerTok + " viewer extra\n", wantErr: "line 1: want \"TOKEN ROLE\", got 3 fields"},
		{name: "short token", in: "abc viewer\n", wantErr: "line 1: token is shorter than 16"},
		{name: "duplicate token", in: viewerTok + " viewer\n" + viewerTok + " operator\n", wantErr: "line 2: token already listed on line 1"},
		{name: "empty file", in: "# nothing\n", wantErr: "no tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokens(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tt.want[i]) {
					t.Errorf("token %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLoadCreatesPrivateOperatorTokenAndReusesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	a, err := Load(Config{DataDir: dir}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Token()) != 64 {
		t.Fatalf("token %q is not 32 bytes of hex", a.Token())
	}
	fi, err := os.Stat(TokenPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if role, ok := a.RoleOf(a.Token()); !ok || role != Operator {
		t.Errorf("generated token role = %v, %v", role, ok)
	}
	b, err := Load(Config{DataDir: dir}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if b.Token() != a.Token() {
		t.Errorf("second Load made a new token")
	}
}

func TestLoadTokensFileErrorsNameFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(viewerTok+" viewer\nshort operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Config{Tokens: path, DataDir: t.TempDir()}, discard())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v, want naming %s line 2", err, path)
	}
	if _, err := os.Stat(TokenPath(t.TempDir())); err == nil {
		t.Error("a tokens file must not create an operator token")
	}
}

func TestRequireForReads(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": false, "[::1]:8080": false, "localhost:8080": false,
		":8080": true, "0.0.0.0:8080": true, "10.1.2.3:80": true, "example.com:80": true,
	} {
		if got := RequireForReads(addr); got != want {
			t.Errorf("RequireForReads(%q) = %v, want %v", addr, got, want)
		}
	}
}

// The full matrix, over real HTTP: reads and writes, with no token, a
// wrong token, a viewer and an operator token, with reads open (loopback)
// and closed.
func TestMiddlewareMatrix(t *testing.T) {
	a := New([]Token{{Value: viewerTok, Role: Viewer}, {Value: operatorTok, Role: Operator}})
	for _, requireReads := range []bool{false, true} {
		e := echo.New()
		g := e.Group("/api/v1", a.Viewer(requireReads))
		ok := func(c echo.Context) error { return c.String(http.StatusOK, "ok") }
		g.GET("/thing", ok)
		g.POST("/thing", ok, a.Operator())
		srv := httptest.NewServer(e)
		tests := []struct {
			method, token string
			want          int
		}{
			{"GET", "", map[bool]int{false: 200, true: 401}[requireReads]},
			{"GET", "wrong-token-0123456789", 401},
			{"GET", viewerTok, 200},
			{"GET", operatorTok, 200},
			{"POST", "", 401},
			{"POST", "wrong-token-0123456789", 401},
			{"POST", viewerTok, 403},
			{"POST", operatorTok, 200},
		}
		for _, tt := range tests {
			req, _ := http.NewRequest(tt.method, srv.URL+"/api/v1/thing", nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("requireReads=%v %s token=%q: status %d, want %d (%s)", requireReads, tt.method, tt.token, resp.StatusCode, tt.want, body)
			}
			if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			if resp.StatusCode >= 400 && !strings.HasPrefix(string(body), `{"error":`) {
				t.Errorf("error body %s is not {\"error\":...}", body)
			}
		}
		srv.Close()
	}
}

func FuzzTokensFile(f *testing.F) {
	f.Add(viewerTok + " viewer\n" + operatorTok + " operator # ci\n")
	f.Add("# comment only\n")
	f.Add("short viewer\n")
	f.Add(viewerTok + " viewer\n" + viewerTok + " viewer\n")
	f.Add("\x00\xff token\tadmin\r\n")
	f.Add(operatorTok + " operator:team-a,operator:team-b\n" + viewerTok + " admin,viewer\n")
	f.Add(operatorTok + " operator:,viewer:x,admin:y\n")
	f.Fuzz(func(t *testing.T, in string) {
		tokens, err := ParseTokens(strings.NewReader(in))
		if err != nil {
			if tokens != nil {
				t.Fatal("tokens returned with an error")
			}
			return
		}
		a := New(tokens)
		for _, tok := range tokens {
			if len(tok.Value) < MinTokenLength || strings.HasPrefix(tok.Value, "#") || len(strings.Fields(tok.Value)) != 1 {
				t.Fatalf("accepted bad token %q", tok.Value)
			}
			if role, ok := a.RoleOf(tok.Value); !ok || role != tok.Role {
				t.Fatalf("token %q: role %v %v, want %v", tok.Value, role, ok, tok.Role)
			}
			// What the file says, read back, is the same grant.
			g := tok.Grant()
			again, err := ParseGrant(g.String())
			if err != nil || !reflect.DeepEqual(again, g) {
				t.Fatalf("grant %#v prints as %q, which parses as %#v, %v", g, g.String(), again, err)
			}
			if g.Scoped() && (g.Role != Operator || !slices.IsSorted(g.Namespaces)) {
				t.Fatalf("scoped grant %#v", g)
			}
		}
	})
}

// Namespaced roles over real HTTP: the :namespace of the route decides, the
// mesh root namespace and cluster-wide calls need an unscoped operator or
// an admin, and the audit actor names the token's grant.
func TestNamespacedOperatorMatrix(t *testing.T) {
	const teamA, admin = "team-a-token-0123456789", "admin-token-0123456789"
	tokens, err := ParseTokens(strings.NewReader(viewerTok + " viewer\n" + operatorTok + " operator\n" + teamA + " operator:team-a\n" + admin + " admin\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := New(tokens)
	e := echo.New()
	g := e.Group("/api/v1", a.Viewer(true))
	g.POST("/things/:namespace", func(c echo.Context) error {
		actor, _ := ActorOf(c.Request().Context())
		return c.String(http.StatusOK, actor.Who)
	}, a.Operator())
	g.POST("/cluster", func(c echo.Context) error { return c.String(http.StatusOK, "ok") }, a.ClusterOperator())
	srv := httptest.NewServer(e)
	defer srv.Close()
	tests := []struct {
		path, token string
		want        int
		body        string
	}{
		{"/things/team-a", teamA, 200, "token:"},
		{"/things/team-b", teamA, 403, "may change namespace team-a only, not team-b"},
		{"/things/istio-system", teamA, 403, "namespace istio-system is the mesh root namespace"},
		{"/cluster", teamA, 403, "this call may change any namespace, so it needs admin or operator (of all namespaces)"},
		{"/things/team-b", viewerTok, 403, "this change needs the operator role"},
		{"/cluster", viewerTok, 403, "this change needs the operator role"},
		{"/things/istio-system", operatorTok, 200, "(operator)"},
		{"/cluster", operatorTok, 200, "ok"},
		{"/things/istio-system", admin, 200, "(admin)"},
		{"/cluster", admin, 200, "ok"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1"+tt.path, nil)
		req.Header.Set("Authorization", "Bearer "+tt.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want || !strings.Contains(string(body), tt.body) {
			t.Errorf("POST %s as %s: %d %s, want %d with %q", tt.path, tt.token[:8], resp.StatusCode, body, tt.want, tt.body)
		}
	}
}

func TestGrantMerge(t *testing.T) {
	a := Grant{Role: Operator, Namespaces: []string{"team-a"}}
	b := Grant{Role: Operator, Namespaces: []string{"team-b"}}
	for _, tt := range []struct{ x, y, want Grant }{
		{a, b, Grant{Role: Operator, Namespaces: []string{"team-a", "team-b"}}},
		{a, Grant{Role: Viewer}, a},
		{Grant{Role: Viewer}, a, a},
		{a, Grant{Role: Operator}, Grant{Role: Operator}},
		{Grant{Role: Admin}, a, Grant{Role: Admin}},
		{Grant{}, a, a},
	} {
		if got := tt.x.Merge(tt.y); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v + %v = %v, want %v", tt.x, tt.y, got, tt.want)
		}
	}
}

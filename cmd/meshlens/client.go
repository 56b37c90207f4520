package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/config"
)

// defaultDataDir is where `meshlens serve` keeps its data unless told
// otherwise; the CLI finds the generated operator token there.
const defaultDataDir = ".run/data"

// clientFlags are the flags every API command takes.
type clientFlags struct {
	server  string
	token   string
	dataDir string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	server := os.Getenv("MESHLENS_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	fs.StringVar(&f.server, "server", server, "meshlens API address (env MESHLENS_SERVER)")
	fs.StringVar(&f.token, "token", os.Getenv("MESHLENS_TOKEN"), "API token (env MESHLENS_TOKEN; default: the operator token in --data-dir)")
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir, "data dir of a local `meshlens serve`, to read its operator.token")
}

// apiClient calls the meshlens REST API.
type apiClient struct {
	base  string // ends in /api/v1
	token string
	http  *http.Client
}

func (f *clientFlags) client() *apiClient {
	tok := f.token
	if tok == "" {
		// A missing file is fine: reads on loopback need no token, and the
		// server's 401 tells the user what to do.
		if b, err := os.ReadFile(auth.TokenPath(f.dataDir)); err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	server := strings.TrimRight(f.server, "/")
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	return &apiClient{base: server + "/api/v1", token: tok, http: &http.Client{Timeout: 60 * time.Second}}
}

// errInvalid means the server refused config; the field errors were printed.
var errInvalid = errors.New("config refused")

// do sends a request and decodes a 2xx JSON answer into out (if not nil).
// Error answers become errors that say what to do next; a 400 with field
// errors prints them to stderr and returns errInvalid.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, out any, stderr io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach meshlens at %s: %w\n(is `meshlens serve` running? point --server or MESHLENS_SERVER at it)", strings.TrimSuffix(c.base, "/api/v1"), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading answer from %s: %w", c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("unexpected answer from %s %s: %w", method, path, err)
		}
		return nil
	}
	var fe config.ErrorsResponse
	if resp.StatusCode == http.StatusBadRequest && json.Unmarshal(data, &fe) == nil && len(fe.Errors) > 0 {
		total := max(fe.ErrorCount, len(fe.Errors))
		printFieldErrors(stderr, fe.Errors, total, nil)
		return fmt.Errorf("%w: %d errors; nothing was applied", errInvalid, total)
	}
	var e config.ErrorResponse
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		hint := "pass --token or set MESHLENS_TOKEN"
		if c.token == "" {
			hint += fmt.Sprintf("; a local server's operator token is in DATA_DIR/%s (use --data-dir)", auth.TokenFile)
		}
		return fmt.Errorf("%s (401): %s", msg, hint)
	case http.StatusForbidden:
		return fmt.Errorf("%s (403): use a token with the operator role", msg)
	case http.StatusNotFound:
		return fmt.Errorf("%s", msg)
	default:
		return fmt.Errorf("%s %s: %s (%d)", method, path, msg, resp.StatusCode)
	}
}

// parseArgs parses flags that may come before, between or after positional
// arguments ("get vs reviews -n bookinfo"), which flag.Parse alone does not.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: meshlens %s\n\nflags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// flagErr turns a flag parsing error into errUsage: the flag package has
// already printed the error and the usage.
func flagErr(error) error { return errUsage }

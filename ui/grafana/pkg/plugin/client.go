package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxBody bounds what the plugin reads of one meshlens answer; the API's own
// caps (5,000 nodes, 20,000 edges, 1,000 log entries) stay well below it.
const maxBody = 64 << 20

// Client calls meshlens' REST API (query/openapi.yaml in the meshlens repository).
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// NewClient checks the URL and builds a client whose every call ends within timeout.
func NewClient(rawURL, token string, timeout time.Duration) (*Client, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("the meshlens URL is not set: enter it in the datasource settings (e.g. http://meshlens.meshlens-system.svc:8080)")
	}
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the meshlens URL %q is not an http(s) URL with a host", rawURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, token: token, http: &http.Client{Timeout: timeout}}, nil
}

// APIError is an answer of meshlens other than 200, or no answer at all.
type APIError struct {
	Status    int    // 0 when meshlens did not answer
	Message   string // what meshlens said, or why there was no answer
	Parameter string // the offending parameter of a 400
	Timeout   bool   // no answer in time
}

func (e *APIError) Error() string { return e.Message }

// Get reads path (under /api/v1) with query q into out.
func (c *Client) Get(ctx context.Context, path string, q url.Values, out any) error {
	u := *c.base
	u.Path += "/api/v1" + path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("meshlens request %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return c.transportError(err)
	}
	if len(body) > maxBody {
		return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("meshlens answered GET %s with more than %d MiB: narrow the query", path, maxBody>>20)}
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		if strings.HasPrefix(strings.TrimSpace(string(body)), "<") {
			return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("meshlens answered GET %s with an HTML page, not the API's JSON: is the URL meshlens' own, without a path?", path)}
		}
		return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("meshlens answered GET %s with something that is not the API's JSON (is the URL meshlens'?): %v", path, err)}
	}
	return nil
}

func (c *Client) transportError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &APIError{Timeout: true, Message: fmt.Sprintf("meshlens at %s did not answer in time (%v): try a shorter time range or raise the timeout in the datasource settings", c.base, c.http.Timeout)}
	case errors.Is(err, context.Canceled):
		return &APIError{Message: "the query was cancelled"}
	default:
		return &APIError{Message: fmt.Sprintf("cannot reach meshlens at %s: %v", c.base, unwrapURLError(err))}
	}
}

// unwrapURLError drops net/url's "Get URL:" prefix, which repeats the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func statusError(path string, status int, body []byte) error {
	var e struct {
		Error     string `json:"error"`
		Parameter string `json:"parameter"`
	}
	_ = json.Unmarshal(body, &e) // a non-JSON body keeps the status text
	msg := e.Error
	if msg == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
	}
	switch status {
	case http.StatusUnauthorized:
		return &APIError{Status: status, Message: "meshlens refused the token (HTTP 401): set a viewer or operator token of meshlens in the datasource settings (" + msg + ")"}
	case http.StatusForbidden:
		return &APIError{Status: status, Message: "meshlens does not allow this token to read (HTTP 403): " + msg}
	case http.StatusNotFound:
		if msg == "" || strings.HasPrefix(msg, "<") || msg == "Not Found" {
			return &APIError{Status: status, Message: fmt.Sprintf("meshlens has no %s (HTTP 404): is the URL meshlens' own, without a path?", path)}
		}
		return &APIError{Status: status, Message: "not found: " + msg}
	case http.StatusBadRequest:
		if e.Parameter != "" {
			return &APIError{Status: status, Parameter: e.Parameter, Message: fmt.Sprintf("meshlens refused parameter %s: %s", e.Parameter, msg)}
		}
		return &APIError{Status: status, Message: "meshlens refused the query: " + msg}
	case http.StatusGatewayTimeout:
		return &APIError{Status: status, Timeout: true, Message: "meshlens' query timed out (HTTP 504): try a shorter time range (" + msg + ")"}
	default:
		return &APIError{Status: status, Message: fmt.Sprintf("meshlens answered GET %s with HTTP %d: %s", path, status, msg)}
	}
}

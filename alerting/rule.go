// Package alerting evaluates AlertRules on the live graph, sends firing and
// resolved notifications to webhooks in Alertmanager's webhook format
// (version 4, HMAC-signed, retried with back-off), receives Alertmanager's
// own webhooks, and rolls rollouts back when an alert names one.
package alerting

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

// APIVersion and Kind of the AlertRule object.
const (
	APIVersion = "meshlens.io/v1alpha1"
	Kind       = "AlertRule"
)

// Metrics a condition can watch.
const (
	MetricErrorRate  = "errorRate"  // errors / requests, 0..1
	MetricLatencyP50 = "latencyP50" // ms
	MetricLatencyP90 = "latencyP90" // ms
	MetricLatencyP99 = "latencyP99" // ms
	MetricRPS        = "rps"        // requests per second
	MetricQPSDrop    = "qpsDrop"    // 1 - rps(window) / rps(previous window), 0..1
)

var metrics = map[string]bool{MetricErrorRate: true, MetricLatencyP50: true, MetricLatencyP90: true,
	MetricLatencyP99: true, MetricRPS: true, MetricQPSDrop: true}

// RuleSpec is an AlertRule's spec.
type RuleSpec struct {
	Condition Condition `json:"condition"`
	// For is how long the condition must hold before the alert fires.
	For         rollout.Duration  `json:"for,omitzero"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Receivers   []Receiver        `json:"receivers,omitempty"`
	Action      *Action           `json:"action,omitempty"`
}

// Condition is a comparison of one metric of some traffic with a threshold.
// The traffic is the inbound traffic of a service (in the rule's namespace),
// optionally of one version, optionally only from one source service (an
// edge).
type Condition struct {
	Metric    string  `json:"metric"`
	Service   string  `json:"service"`
	Version   string  `json:"version,omitempty"`
	Source    string  `json:"source,omitempty"`
	Op        string  `json:"op,omitempty"` // ">" (default) or "<"
	Threshold float64 `json:"threshold"`
	// Window of traffic the metric is computed over. Default 1m.
	Window rollout.Duration `json:"window,omitzero"`
	// MinRequests: with fewer requests in the window the condition is
	// false (no alert on a handful of requests). Default 10; for qpsDrop
	// it applies to the previous window.
	MinRequests *uint64 `json:"minRequests,omitempty"`
}

// Receiver is a webhook that gets notifications.
type Receiver struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Secret signs notifications with HMAC-SHA256 (SignatureHeader). The
	// config API shows it as config.Redacted.
	Secret string `json:"secret,omitempty"`
	// SecretFile instead names a file holding the secret (surrounding
	// white space trimmed), read each time a notification is sent, so the
	// secret stays out of the config and can be rotated in place. At most
	// one of Secret and SecretFile; neither sends unsigned.
	SecretFile string `json:"secretFile,omitempty"`
}

// signingKey is the secret notifications to r are signed with, or nil
// when r is unsigned.
func (r Receiver) signingKey() ([]byte, error) {
	if r.SecretFile == "" {
		if r.Secret == "" {
			return nil, nil
		}
		return []byte(r.Secret), nil
	}
	b, err := os.ReadFile(r.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("read secretFile: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("secretFile %s is empty", r.SecretFile)
	}
	return b, nil
}

// Action is what meshlens itself does when the alert fires.
type Action struct {
	Rollback *RollbackAction `json:"rollback,omitempty"`
}

// RollbackAction rolls back a rollout of the rule's namespace.
type RollbackAction struct {
	Rollout string `json:"rollout"`
}

func (c Condition) window() time.Duration {
	if c.Window.Duration > 0 {
		return c.Window.Duration
	}
	return time.Minute
}

func (c Condition) minRequests() uint64 {
	if c.MinRequests != nil {
		return *c.MinRequests
	}
	return 10
}

// KindSpec plugs AlertRule into the config registry.
func KindSpec() config.KindSpec {
	return config.KindSpec{
		APIVersions: []string{APIVersion},
		Kind:        Kind,
		ShortNames:  []string{"ar"},
		Decode: func(js []byte) (any, error) {
			var s RuleSpec
			if err := config.DecodeJSON(js, &s); err != nil {
				return nil, err
			}
			return &s, nil
		},
		Validate: validateRule,
		Analyze:  analyzeRule,
		Redact:   redactRule,
		Unredact: unredactRule,
	}
}

// redactRule hides the receivers' inline secrets. SecretFile paths are not
// secret and stay visible.
func redactRule(spec any) any {
	s := spec.(*RuleSpec)
	cp := *s
	cp.Receivers = slices.Clone(s.Receivers)
	for i := range cp.Receivers {
		if cp.Receivers[i].Secret != "" {
			cp.Receivers[i].Secret = config.Redacted
		}
	}
	return &cp
}

// unredactRule gives a receiver applied with a Redacted secret the secret
// stored for the receiver of the same name and URL: changing where
// notifications go needs the secret given again, so a redacted rule cannot
// be pointed at another URL and keep signing with the old secret.
func unredactRule(spec, stored any) (any, []config.FieldError) {
	s := spec.(*RuleSpec)
	var prev []Receiver
	if st, ok := stored.(*RuleSpec); ok {
		prev = st.Receivers
	}
	var cp *RuleSpec
	var errs []config.FieldError
	for i, r := range s.Receivers {
		if r.Secret != config.Redacted {
			continue
		}
		j := storedReceiver(prev, i, r)
		if j < 0 || prev[j].Secret == "" {
			errs = append(errs, config.FieldError{Field: fmt.Sprintf("receivers[%d].secret", i), Message: fmt.Sprintf(
				"%q stands for a secret the API does not show, and no stored receiver %q with URL %q has one to keep: give the secret again (or secretFile)",
				config.Redacted, r.Name, r.URL)})
			continue
		}
		if cp == nil {
			c := *s
			c.Receivers = slices.Clone(s.Receivers)
			cp = &c
		}
		cp.Receivers[i].Secret = prev[j].Secret
	}
	if len(errs) > 0 || cp == nil {
		return spec, errs
	}
	return cp, nil
}

// storedReceiver finds the stored receiver that applied receiver r, at
// index i, stands for: the one at the same index if its name and URL match,
// else the only one with that name and URL. -1 if none, or if several with
// different secrets leave it ambiguous.
func storedReceiver(prev []Receiver, i int, r Receiver) int {
	same := func(p Receiver) bool { return p.Name == r.Name && p.URL == r.URL }
	if i < len(prev) && same(prev[i]) {
		return i
	}
	j := -1
	for k, p := range prev {
		if !same(p) {
			continue
		}
		if j >= 0 && prev[j].Secret != p.Secret {
			return -1
		}
		if j < 0 {
			j = k
		}
	}
	return j
}

// analyzeRule reports a rollback action naming a Rollout that does not
// exist: a warning, since the Rollout may be applied later; until it is,
// the alert fires and its rollback reports the rollout as not found.
func analyzeRule(o *config.Object, sn *config.Snapshot) []config.Warning {
	s, ok := o.Spec.(*RuleSpec)
	if !ok || s.Action == nil || s.Action.Rollback == nil || s.Action.Rollback.Rollout == "" {
		return nil
	}
	name := s.Action.Rollback.Rollout
	if sn.Get(rollout.Kind, o.Meta.Namespace, name) != nil {
		return nil
	}
	return []config.Warning{{Code: config.CodeReferencedResourceNotFound, Object: o.Key(), Field: "action.rollback.rollout",
		Message: fmt.Sprintf("Referenced Rollout not found: %q", o.Meta.Namespace+"/"+name)}}
}

func validateRule(o *config.Object) []config.FieldError {
	s := o.Spec.(*RuleSpec)
	var errs []config.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, config.FieldError{Object: o.Key(), Field: field, Message: fmt.Sprintf(format, args...)})
	}
	c := s.Condition
	if !metrics[c.Metric] {
		add("condition.metric", "unknown metric %q: want errorRate, latencyP50, latencyP90, latencyP99, rps or qpsDrop", c.Metric)
	}
	if c.Service == "" {
		add("condition.service", "required")
	}
	if c.Op != "" && c.Op != ">" && c.Op != "<" {
		add("condition.op", "want \">\" or \"<\", got %q", c.Op)
	}
	if c.Threshold < 0 {
		add("condition.threshold", "must not be negative")
	}
	if (c.Metric == MetricErrorRate || c.Metric == MetricQPSDrop) && c.Threshold > 1 {
		add("condition.threshold", "%s is a fraction within 0..1", c.Metric)
	}
	if c.Window.Duration < 0 || s.For.Duration < 0 {
		add("condition.window", "durations must not be negative")
	}
	for i, r := range s.Receivers {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(fmt.Sprintf("receivers[%d].url", i), "want an http(s) URL, got %q", r.URL)
		}
		if r.Name == "" {
			add(fmt.Sprintf("receivers[%d].name", i), "required")
		}
		switch {
		case r.Secret != "" && r.SecretFile != "":
			add(fmt.Sprintf("receivers[%d].secretFile", i), "give secret or secretFile, not both")
		case r.Secret == config.Redacted:
			// Only reached where nothing restores it (meshlens validate).
			add(fmt.Sprintf("receivers[%d].secret", i), "%q stands for a secret the API does not show: give the secret", config.Redacted)
		case r.SecretFile != "":
			if _, err := r.signingKey(); err != nil {
				add(fmt.Sprintf("receivers[%d].secretFile", i), "%v", err)
			}
		}
	}
	if a := s.Action; a != nil {
		if a.Rollback == nil || a.Rollback.Rollout == "" {
			add("action.rollback.rollout", "required: the rollout to roll back")
		}
	}
	for k := range s.Labels {
		if k == "alertname" {
			add("labels.alertname", "set by meshlens to the rule's name")
		}
	}
	return errs
}

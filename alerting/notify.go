package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Notifier posts messages to webhook receivers, signed, retrying failures
// (network errors, 5xx, 429) with exponential back-off. Each delivery runs
// on its own goroutine so one slow receiver never delays another.
type Notifier struct {
	client   *http.Client
	attempts int
	backoff  time.Duration
	now      func() time.Time
	logger   *slog.Logger
	wg       sync.WaitGroup
	sent     *prometheus.CounterVec
}

// NotifierOptions tune delivery. Zero values take the defaults.
type NotifierOptions struct {
	Client   *http.Client  // default: 10 s timeout
	Attempts int           // default 6
	Backoff  time.Duration // first retry delay, doubled each time; default 500ms
	Now      func() time.Time
}

// NewNotifier builds a notifier; reg may be nil.
func NewNotifier(opts NotifierOptions, logger *slog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 6
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n := &Notifier{client: opts.Client, attempts: opts.Attempts, backoff: opts.Backoff, now: opts.Now, logger: logger,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_alert_notifications_total",
			Help: "Webhook notifications by receiver and result (sent, failed)."}, []string{"receiver", "result"})}
	if reg != nil {
		if err := reg.Register(n.sent); err != nil {
			return nil, fmt.Errorf("notifier: register metrics: %w", err)
		}
	}
	return n, nil
}

// Notify delivers msg to r in the background until it succeeds, attempts
// run out or ctx ends.
func (n *Notifier) Notify(ctx context.Context, r Receiver, msg Message) {
	body, err := json.Marshal(msg)
	if err != nil {
		n.logger.Error("notification not encoded", "receiver", r.Name, "err", err)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// Read now, not when the rule was applied, so a rotated secretFile
		// takes effect; never send unsigned when the secret is unreadable.
		key, err := r.signingKey()
		if err != nil {
			n.sent.WithLabelValues(r.Name, "failed").Inc()
			n.logger.Error("notification not sent: receiver secret unreadable", "receiver", r.Name, "url", r.URL, "err", err)
			return
		}
		if err := n.deliver(ctx, r.URL, key, body); err != nil {
			n.sent.WithLabelValues(r.Name, "failed").Inc()
			n.logger.Error("notification not delivered", "receiver", r.Name, "url", r.URL, "err", err)
			return
		}
		n.sent.WithLabelValues(r.Name, "sent").Inc()
	}()
}

// Wait waits for deliveries in flight.
func (n *Notifier) Wait() { n.wg.Wait() }

func (n *Notifier) deliver(ctx context.Context, url string, key, body []byte) error {
	delay := n.backoff
	var last error
	for attempt := 1; attempt <= n.attempts; attempt++ {
		retry, err := n.post(ctx, url, key, body)
		if err == nil {
			return nil
		}
		last = fmt.Errorf("attempt %d: %w", attempt, err)
		if !retry || attempt == n.attempts {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (then: %v)", last, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
	return last
}

func (n *Notifier) post(ctx context.Context, url string, key, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "meshlens-alerting")
	if key != nil {
		sig, ts := Sign(key, body, n.now())
		req.Header.Set(SignatureHeader, sig)
		req.Header.Set(TimestampHeader, ts)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("%s answered %s", url, resp.Status)
	default:
		return false, fmt.Errorf("%s answered %s", url, resp.Status)
	}
}

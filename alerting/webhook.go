package alerting

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Message is Alertmanager's webhook payload, version 4: what Alertmanager
// posts to webhook receivers and what meshlens posts to its own.
type Message struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"` // "firing" or "resolved"
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Alert is one alert of a Message.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Signature headers. The signature is HMAC-SHA256 over "TIMESTAMP.BODY"
// with the receiver's secret, hex, prefixed "sha256="; the timestamp is
// Unix seconds. Binding the time in stops a captured request from being
// replayed later.
const (
	SignatureHeader = "X-Meshlens-Signature"
	TimestampHeader = "X-Meshlens-Timestamp"
	// MaxSkew is how old (or how far in the future) a signed request may be.
	MaxSkew = 5 * time.Minute
)

// Sign returns the two header values for body.
func Sign(secret []byte, body []byte, at time.Time) (signature, timestamp string) {
	timestamp = strconv.FormatInt(at.Unix(), 10)
	return "sha256=" + hex.EncodeToString(mac(secret, timestamp, body)), timestamp
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrUnsigned = errors.New("request is not signed")
	ErrForged   = errors.New("signature does not match")
	ErrStale    = errors.New("signature timestamp is too old or in the future")
)

// Verify checks a signed request's headers against body.
func Verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	sig, ts := h.Get(SignatureHeader), h.Get(TimestampHeader)
	if sig == "" || ts == "" {
		return fmt.Errorf("%w: want %s and %s headers", ErrUnsigned, SignatureHeader, TimestampHeader)
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return fmt.Errorf("%w: want %s: sha256=HEX", ErrForged, SignatureHeader)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return fmt.Errorf("%w: signature is not hex", ErrForged)
	}
	if !hmac.Equal(got, mac(secret, ts, body)) {
		return ErrForged
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrForged, ts)
	}
	if math.Abs(float64(now.Unix()-sec)) > MaxSkew.Seconds() {
		return ErrStale
	}
	return nil
}

package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// TestOTLPHTTPWriteTimeoutIsCounted: an OTLP/HTTP sender on loopback that
// sends its request header, then its body only after --http-write-timeout
// (but within --http-read-timeout) gets no answer: the receiver's answer
// comes after the write deadline and the connection is closed. That bite is
// counted as meshlens_limit_exceeded_total{listener="otlp_http",
// limit="write_timeout"}, and not as a read timeout; a prompt sender is
// answered and counts nothing.
func TestOTLPHTTPWriteTimeoutIsCounted(t *testing.T) {
	otlpHTTP := freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", "clickhouse://127.0.0.1:1/none", "--clickhouse-wait", "0s", "--data-dir", t.TempDir(),
		"--otlp-http", otlpHTTP, "--http-read-timeout", "10s", "--http-write-timeout", "3s")
	body, err := ptraceotlp.NewExportRequestFromTraces(bigSpans(1)).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	header := fmt.Sprintf("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", len(body))
	send := func(pause time.Duration) string {
		c, err := net.Dial("tcp", otlpHTTP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(header)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(pause)
		if _, err := c.Write(body); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		b := make([]byte, 12)
		n, err := io.ReadFull(c, b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "still open, unanswered" // the test's own deadline: not a cut
		}
		if err != nil && n == 0 {
			return "closed: " + err.Error()
		}
		return string(b[:n])
	}
	waitFor(t, "the OTLP/HTTP receiver answers", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", otlpHTTP)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	if got := send(0); got != "HTTP/1.1 200" {
		t.Fatalf("prompt OTLP/HTTP sender: %q, want HTTP/1.1 200", got)
	}
	if n := limitBites(t, ml, "otlp_http", "write_timeout"); n != 0 {
		t.Fatalf("write_timeout counted %v times for a prompt sender", n)
	}
	// The prompt sender above had 3 s to be answered (1 s was too short for
	// a loaded machine); this one's body comes 1.5 s after that.
	got := send(4500 * time.Millisecond)
	if got[:min(len(got), 6)] != "closed" {
		t.Fatalf("OTLP/HTTP sender whose answer comes after the write timeout got %q, want the connection closed unanswered", got)
	}
	waitFor(t, "otlp_http write_timeout counted", 30*time.Second, func() bool { return limitBites(t, ml, "otlp_http", "write_timeout") == 1 })
	if n := limitBites(t, ml, "otlp_http", "read_timeout"); n != 0 {
		t.Errorf("otlp_http read_timeout = %v for a body sent within the read timeout", n)
	}
}

// TestOTLPHTTPHeaderTimeoutIsCounted: an OTLP/HTTP sender on loopback that
// sends half a request header and stalls is cut by --http-read-timeout
// (the connection closes unanswered) and counted once in
// meshlens_limit_exceeded_total{listener="otlp_http",limit="read_timeout"},
// as the API's slow headers are; prompt senders, before and after, are
// answered and count nothing.
func TestOTLPHTTPHeaderTimeoutIsCounted(t *testing.T) {
	otlpHTTP := freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", "clickhouse://127.0.0.1:1/none", "--clickhouse-wait", "0s", "--data-dir", t.TempDir(),
		"--otlp-http", otlpHTTP, "--http-read-timeout", "1s")
	body, err := ptraceotlp.NewExportRequestFromTraces(bigSpans(1)).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	header := fmt.Sprintf("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", len(body))
	// send writes data and returns the start of the answer or how the
	// connection ended, and when.
	// The clock starts before the dial: the server's read deadline starts
	// after it accepts, so a cut is never less than the timeout after start.
	send := func(data string) (string, time.Duration) {
		start := time.Now()
		c, err := net.Dial("tcp", otlpHTTP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		b := make([]byte, 12)
		n, err := io.ReadFull(c, b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "still open, unanswered", time.Since(start) // the test's own deadline: not a cut
		}
		if err != nil && n == 0 {
			return "closed: " + err.Error(), time.Since(start)
		}
		return string(b[:n]), time.Since(start)
	}
	waitFor(t, "the OTLP/HTTP receiver answers", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", otlpHTTP)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if got, _ := send(header + string(body)); got != "HTTP/1.1 200" {
		t.Fatalf("prompt OTLP/HTTP sender: %q, want HTTP/1.1 200", got)
	}
	if n := limitBites(t, ml, "otlp_http", "read_timeout"); n != 0 {
		t.Fatalf("read_timeout counted %v times for prompt senders", n)
	}

	// Half a header, then nothing until well after the read timeout.
	half := len(header) / 2
	got, took := send(header[:half])
	if got[:min(len(got), 6)] != "closed" {
		t.Fatalf("OTLP/HTTP sender that stalls after half a header got %q, want the connection closed unanswered", got)
	}
	// Not cut early; the upper bound only catches a cut that never comes
	// (the read above would have given up after 2 minutes).
	if took < 900*time.Millisecond || took > time.Minute {
		t.Errorf("stalled header cut after %s, want about --http-read-timeout (1s)", took)
	}
	t.Logf("stalled header cut after %s (--http-read-timeout 1s)", took.Round(time.Millisecond))
	waitFor(t, "otlp_http read_timeout counted", 30*time.Second, func() bool { return limitBites(t, ml, "otlp_http", "read_timeout") == 1 })

	if got, _ := send(header + string(body)); got != "HTTP/1.1 200" {
		t.Fatalf("prompt OTLP/HTTP sender after the slow one: %q, want HTTP/1.1 200", got)
	}
	time.Sleep(300 * time.Millisecond)
	if n := limitBites(t, ml, "otlp_http", "read_timeout"); n != 1 {
		t.Errorf("otlp_http read_timeout = %v after one stalled header and prompt senders, want 1", n)
	}
	if n := limitBites(t, ml, "otlp_http", "write_timeout"); n != 0 {
		t.Errorf("otlp_http write_timeout = %v, want 0", n)
	}
}

// TestOTLPHTTPCompressedBodies: meshlens' --otlp-http server decompresses
// as the receiver's did: a gzip body is taken (200), and one that is not
// gzip is refused 400 with a google.rpc.Status INVALID_ARGUMENT, in
// protobuf or JSON as the request's Content-Type.
func TestOTLPHTTPCompressedBodies(t *testing.T) {
	otlpHTTP := freeAddr(t)
	startMeshlens(t, "--clickhouse", "clickhouse://127.0.0.1:1/none", "--clickhouse-wait", "0s", "--data-dir", t.TempDir(),
		"--otlp-http", otlpHTTP)
	waitFor(t, "the OTLP/HTTP receiver answers", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", otlpHTTP)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	body, err := ptraceotlp.NewExportRequestFromTraces(bigSpans(1)).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(body)
	_ = zw.Close()
	post := func(contentType string, b []byte) (int, string, []byte) {
		req, err := http.NewRequest(http.MethodPost, "http://"+otlpHTTP+"/v1/traces", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), out
	}
	if code, _, out := post("application/x-protobuf", gz.Bytes()); code != http.StatusOK {
		t.Fatalf("gzip OTLP/HTTP body: %d %q, want 200", code, out)
	}
	code, ct, out := post("application/x-protobuf", []byte("not gzip at all"))
	var st spb.Status
	if code != http.StatusBadRequest || ct != "application/x-protobuf" || proto.Unmarshal(out, &st) != nil || codes.Code(st.GetCode()) != codes.InvalidArgument {
		t.Errorf("protobuf body that is not gzip: %d %s %q, want 400 with a protobuf Status INVALID_ARGUMENT", code, ct, out)
	}
	code, ct, out = post("application/json", []byte("not gzip at all"))
	st.Reset()
	if code != http.StatusBadRequest || ct != "application/json" || protojson.Unmarshal(out, &st) != nil || codes.Code(st.GetCode()) != codes.InvalidArgument || !strings.Contains(st.GetMessage(), "gzip") {
		t.Errorf("JSON body that is not gzip: %d %s %q, want 400 with a JSON Status INVALID_ARGUMENT naming gzip", code, ct, out)
	}
}

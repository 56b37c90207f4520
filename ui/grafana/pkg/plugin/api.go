package plugin

import "time"

// The shapes of meshlens' answers that the plugin reads (query/openapi.yaml).
// The end-to-end tests read the same answers to check the frames' numbers.

type apiNode struct {
	ID        string  `json:"id"`
	Namespace string  `json:"namespace"`
	Service   string  `json:"service"`
	Version   string  `json:"version"`
	Workload  string  `json:"workload"`
	Unknown   bool    `json:"unknown"`
	Requests  uint64  `json:"requests"`
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"errorRate"`
	Health    string  `json:"health"`
	InCycle   bool    `json:"inCycle"`
}

type apiEdge struct {
	Source    string  `json:"source"`
	Target    string  `json:"target"`
	Protocol  string  `json:"protocol"`
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"errorRate"`
	P50Ms     float64 `json:"p50Ms"`
	P90Ms     float64 `json:"p90Ms"`
	P99Ms     float64 `json:"p99Ms"`
	MTLS      float64 `json:"mtls"`
}

type apiGraph struct {
	View      string    `json:"view"`
	Source    string    `json:"source"`
	Window    string    `json:"window"`
	End       time.Time `json:"end"`
	Nodes     []apiNode `json:"nodes"`
	Edges     []apiEdge `json:"edges"`
	Truncated bool      `json:"truncated"`
	Partial   bool      `json:"partial"`
}

type apiPoint struct {
	T         time.Time `json:"t"`
	Requests  uint64    `json:"requests"`
	RPS       float64   `json:"rps"`
	ErrorRate float64   `json:"errorRate"`
	P50Ms     float64   `json:"p50Ms"`
	P90Ms     float64   `json:"p90Ms"`
	P99Ms     float64   `json:"p99Ms"`
}

type apiSeries struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Source    string `json:"source"`
	Step      string `json:"step"`
	Versions  []struct {
		Version string     `json:"version"`
		Points  []apiPoint `json:"points"`
	} `json:"versions"`
}

type apiService struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Versions  []string `json:"versions"`
}

type apiServices struct {
	Services  []apiService `json:"services"`
	Truncated bool         `json:"truncated"`
}

type apiPeer struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Workload  string `json:"workload"`
	Version   string `json:"version"`
}

type apiLogEntry struct {
	Time        time.Time `json:"time"`
	Source      apiPeer   `json:"source"`
	Destination apiPeer   `json:"destination"`
	Protocol    string    `json:"protocol"`
	Method      string    `json:"method"`
	Path        string    `json:"path"`
	Authority   string    `json:"authority"`
	Code        int       `json:"code"`
	GRPCStatus  *int      `json:"grpcStatus"`
	Flags       string    `json:"flags"`
	DurationMs  float64   `json:"durationMs"`
	BytesIn     uint64    `json:"bytesIn"`
	BytesOut    uint64    `json:"bytesOut"`
	MTLS        bool      `json:"mtls"`
	TraceID     string    `json:"traceId"`
	SpanID      string    `json:"spanId"`
	Origin      string    `json:"origin"`
}

type apiLogs struct {
	Entries []apiLogEntry `json:"entries"`
	Cursor  string        `json:"cursor"`
}

type apiSpan struct {
	SpanID        string            `json:"spanId"`
	ParentSpanID  string            `json:"parentSpanId"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Peer          apiPeer           `json:"peer"`
	Start         time.Time         `json:"start"`
	DurationMs    float64           `json:"durationMs"`
	StatusCode    string            `json:"statusCode"`
	StatusMessage string            `json:"statusMessage"`
	Attributes    map[string]string `json:"attributes"`
	Children      []*apiSpan        `json:"children"`
}

type apiTrace struct {
	TraceID   string     `json:"traceId"`
	Spans     int        `json:"spans"`
	Truncated bool       `json:"truncated"`
	Roots     []*apiSpan `json:"roots"`
}

type apiTraceSummary struct {
	TraceID    string    `json:"traceId"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	Spans      uint64    `json:"spans"`
	Services   []string  `json:"services"`
	RootName   string    `json:"rootName"`
	Errors     uint64    `json:"errors"`
}

type apiRolloutRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type apiRolloutEvent struct {
	At            time.Time      `json:"at"`
	Type          string         `json:"type"`
	Event         string         `json:"event"`
	From          string         `json:"from"`
	To            string         `json:"to"`
	Source        string         `json:"source"`
	Weights       map[string]any `json:"weights"`
	ConfigVersion int64          `json:"configVersion"`
	Revision      string         `json:"revision"`
	Error         string         `json:"error"`
	Step          *int           `json:"step"`
	Message       string         `json:"message"`
	Verdict       *struct {
		Result  string   `json:"result"`
		Reasons []string `json:"reasons"`
	} `json:"verdict"`
}

type apiRollout struct {
	Namespace        string            `json:"namespace"`
	Name             string            `json:"name"`
	Service          string            `json:"service"`
	Strategy         string            `json:"strategy"`
	StableVersion    string            `json:"stableVersion"`
	CandidateVersion string            `json:"candidateVersion"`
	State            string            `json:"state"`
	History          []apiRolloutEvent `json:"history"`
}

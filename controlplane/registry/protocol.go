package registry

import "strings"

// Protocol reads a Kubernetes Service port's protocol the way Istio does:
// UDP is UDP; appProtocol wins (with Kubernetes' own "kubernetes.io/h2c"
// and "kubernetes.io/ws"); else the port name's prefix before the first '-'
// ("http-web", "grpc", "tcp-db"). Unknown names give "", which Istio
// auto-detects and meshlens routes as HTTP.
func Protocol(portName, k8sProtocol, appProtocol string) string {
	if strings.EqualFold(k8sProtocol, "UDP") {
		return "UDP"
	}
	if appProtocol != "" {
		switch strings.ToLower(appProtocol) {
		case "kubernetes.io/h2c":
			return "HTTP2"
		case "kubernetes.io/ws", "kubernetes.io/wss":
			return "HTTP"
		}
		if p := parseProtocol(appProtocol); p != "" {
			return p
		}
	}
	if strings.HasPrefix(strings.ToLower(portName), "grpc-web") {
		return "GRPC-Web"
	}
	prefix, _, _ := strings.Cut(portName, "-")
	return parseProtocol(prefix)
}

// parseProtocol maps a protocol name to Istio's spelling, "" if unknown.
func parseProtocol(s string) string {
	switch strings.ToLower(s) {
	case "http":
		return "HTTP"
	case "http2":
		return "HTTP2"
	case "https":
		return "HTTPS"
	case "grpc":
		return "GRPC"
	case "grpc-web":
		return "GRPC-Web"
	case "http_proxy":
		return "HTTP_PROXY"
	case "tcp":
		return "TCP"
	case "tls":
		return "TLS"
	case "udp":
		return "UDP"
	case "mongo":
		return "Mongo"
	case "redis":
		return "Redis"
	case "mysql":
		return "MySQL"
	}
	return ""
}

package app

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// proxyReceivers are where Envoy proxies reach meshlens' own receivers:
// the clusters of Telemetry's built-in providers meshlens-als and
// meshlens-otel.
type proxyReceivers struct {
	ALS, OTLP string
}

func (c *proxyReceivers) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ALS, "proxy-als-address", c.ALS,
		"host:port at which Envoy proxies reach the --als receiver (the meshlens_als cluster of Telemetry's meshlens-als provider); default: --als, an unspecified host (0.0.0.0, ::) replaced by --advertise's")
	fs.StringVar(&c.OTLP, "proxy-otlp-address", c.OTLP,
		"host:port at which Envoy proxies reach the --otlp-grpc receiver (the meshlens_otlp cluster of Telemetry's meshlens-otel provider); default: --otlp-grpc, an unspecified host replaced by --advertise's")
}

// resolve fills the addresses left empty from the listen addresses als and
// otlp ("" when the receiver is off: the provider is left out) and the
// host of advertise (the replica's address as others reach it) when they
// listen on every address; when that is unspecified too, they stay empty.
func (c *proxyReceivers) resolve(als, otlp, advertise string) error {
	var err error
	if c.ALS, err = proxyAddress("--proxy-als-address", "--als", c.ALS, als, advertise); err != nil {
		return err
	}
	c.OTLP, err = proxyAddress("--proxy-otlp-address", "--otlp-grpc", c.OTLP, otlp, advertise)
	return err
}

// proxyAddress is the address flagName says, else the one made from the
// listen address of listenFlag.
func proxyAddress(flagName, listenFlag, set, listen, advertise string) (string, error) {
	if set != "" {
		if _, _, err := net.SplitHostPort(set); err != nil {
			return "", fmt.Errorf("%s %q: want host:port", flagName, set)
		}
		return set, nil
	}
	if listen == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%s %q: want host:port (%s is made from it unless given)", listenFlag, listen, flagName)
	}
	if unspecified(host) {
		ahost, _, err := net.SplitHostPort(advertise)
		if err != nil || unspecified(ahost) {
			return "", nil // no address proxies can use: warnUnset says so
		}
		host = ahost
	}
	return net.JoinHostPort(host, port), nil
}

func unspecified(host string) bool {
	ip, err := netip.ParseAddr(host)
	return host == "" || (err == nil && ip.IsUnspecified())
}

// warnUnset logs the receivers that listen but that proxies have no
// address for: Telemetry's provider for them is left out of the xDS.
func (c *proxyReceivers) warnUnset(logger *slog.Logger, als, otlp string) {
	if als != "" && c.ALS == "" {
		logger.Warn("--als listens on every address and --advertise names no host: Telemetry's meshlens-als provider is left out until --proxy-als-address says where proxies reach it", "als", als)
	}
	if otlp != "" && c.OTLP == "" {
		logger.Warn("--otlp-grpc listens on every address and --advertise names no host: Telemetry's meshlens-otel provider is left out until --proxy-otlp-address says where proxies reach it", "otlp-grpc", otlp)
	}
}

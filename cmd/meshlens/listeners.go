package main

import (
	"flag"
	"fmt"
)

// registerLimitFlags adds the flags of the listeners' limits (one set for
// every listener; see package listeners).
func (c *serveConfig) registerLimitFlags(fs *flag.FlagSet) {
	l := &c.Collector.Limits
	fs.Int64Var(&l.MaxBodyBytes, "http-max-body-bytes", l.MaxBodyBytes, "largest HTTP API request body; larger ones get 413")
	fs.IntVar(&l.MaxHeaderBytes, "http-max-header-bytes", l.MaxHeaderBytes, "largest HTTP API request header; larger ones get 431 (OTLP/HTTP: Go's 1 MiB)")
	fs.DurationVar(&l.ReadTimeout, "http-read-timeout", l.ReadTimeout, "time to read one HTTP request, header and body (API and OTLP/HTTP): slow clients are cut")
	fs.DurationVar(&l.WriteTimeout, "http-write-timeout", l.WriteTimeout, "time to write one HTTP response (API and OTLP/HTTP)")
	fs.DurationVar(&l.IdleTimeout, "http-idle-timeout", l.IdleTimeout, "idle kept-alive HTTP connections are closed after this long")
	fs.IntVar(&l.MaxMessageBytes, "grpc-max-message-bytes", l.MaxMessageBytes, "largest gRPC message (OTLP, ALS, xDS) and OTLP/HTTP request body")
	fs.Func("grpc-max-concurrent-streams", "most concurrent gRPC streams and calls per connection (OTLP, ALS, xDS) (default 1000)", func(v string) error {
		var n uint32
		if _, err := fmt.Sscan(v, &n); err != nil {
			return err
		}
		l.MaxConcurrentStreams = n
		return nil
	})
}

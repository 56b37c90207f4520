package alsreceiver

import (
	"fmt"
	"net"
)

// Config configures the Envoy gRPC Access Log Service receiver.
type Config struct {
	// Endpoint is the host:port the gRPC server listens on.
	Endpoint string `mapstructure:"endpoint"`
	// MaxRecvMsgSizeMiB bounds one ALS message.
	MaxRecvMsgSizeMiB int `mapstructure:"max_recv_msg_size_mib"`
	// MaxEntriesPerSecond bounds the entries one stream may send per
	// second (with a burst of as many); past it the receiver reads the
	// stream more slowly, and gRPC flow control holds the proxy back. 0:
	// no bound.
	MaxEntriesPerSecond int `mapstructure:"max_entries_per_second"`
}

// Validate checks the endpoint is a host:port.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Endpoint); err != nil {
		return fmt.Errorf("endpoint %q: want host:port: %w", c.Endpoint, err)
	}
	if c.MaxEntriesPerSecond < 0 {
		return fmt.Errorf("max_entries_per_second must not be negative, got %d", c.MaxEntriesPerSecond)
	}
	if c.MaxRecvMsgSizeMiB <= 0 {
		return fmt.Errorf("max_recv_msg_size_mib must be positive, got %d", c.MaxRecvMsgSizeMiB)
	}
	return nil
}

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
}

// Validate checks the endpoint is a host:port.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Endpoint); err != nil {
		return fmt.Errorf("endpoint %q: want host:port: %w", c.Endpoint, err)
	}
	if c.MaxRecvMsgSizeMiB <= 0 {
		return fmt.Errorf("max_recv_msg_size_mib must be positive, got %d", c.MaxRecvMsgSizeMiB)
	}
	return nil
}

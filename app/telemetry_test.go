package app

import (
	"strings"
	"testing"
)

// Where proxies are told to send Telemetry's access logs and traces.
func TestProxyReceiverAddressesFollowTheListenersAndAdvertise(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		set                  proxyReceivers
		als, otlp, advertise string
		wantALS, wantOTLP    string
		wantErr              string
	}{
		{name: "a specific listen address is the proxies' address", als: "127.0.0.1:19001", otlp: "10.0.0.5:4317", advertise: "127.0.0.1:8080",
			wantALS: "127.0.0.1:19001", wantOTLP: "10.0.0.5:4317"},
		{name: "every address: the host of --advertise", als: "0.0.0.0:19001", otlp: "[::]:4317", advertise: "10.1.2.3:8080",
			wantALS: "10.1.2.3:19001", wantOTLP: "10.1.2.3:4317"},
		{name: "every address and no host to advertise: none", als: "0.0.0.0:19001", otlp: ":4317", advertise: "0.0.0.0:8080"},
		{name: "a receiver turned off: none", als: "", otlp: "127.0.0.1:4317", advertise: "127.0.0.1:8080", wantOTLP: "127.0.0.1:4317"},
		{name: "the flags win", set: proxyReceivers{ALS: "meshlens.ns.svc:19001", OTLP: "meshlens.ns.svc:4317"}, als: "0.0.0.0:19001", otlp: "0.0.0.0:4317", advertise: "0.0.0.0:8080",
			wantALS: "meshlens.ns.svc:19001", wantOTLP: "meshlens.ns.svc:4317"},
		{name: "a flag without a port is refused", set: proxyReceivers{OTLP: "meshlens.ns.svc"}, otlp: "0.0.0.0:4317", advertise: "10.1.2.3:8080",
			wantErr: `--proxy-otlp-address "meshlens.ns.svc": want host:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.set
			err := r.resolve(tc.als, tc.otlp, tc.advertise)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.ALS != tc.wantALS || r.OTLP != tc.wantOTLP {
				t.Errorf("ALS %q OTLP %q, want %q %q", r.ALS, r.OTLP, tc.wantALS, tc.wantOTLP)
			}
		})
	}
}

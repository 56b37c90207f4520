package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/meshlens/meshlens/demo"
)

// faultFlags collects repeatable --fail / --slow values into one table.
type faultFlags struct {
	m    map[demo.VersionKey]demo.Fault
	slow bool
}

func (f *faultFlags) String() string { return "" }

func (f *faultFlags) Set(s string) error {
	k, v, err := demo.ParseFaultFlag(s, f.slow)
	if err != nil {
		return err
	}
	cur := f.m[k]
	if f.slow {
		cur.Delay = v.Delay
	} else {
		cur.ErrorRate = v.ErrorRate
	}
	f.m[k] = cur
	return nil
}

// splitFlag is --split v1=50,v2=30,v3=20.
type splitFlag map[string]uint32

func (s splitFlag) String() string { return "" }

func (s splitFlag) Set(v string) error {
	clear(s)
	for part := range strings.SplitSeq(v, ",") {
		ver, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(w, 10, 32)
		if !ok || ver == "" || err != nil {
			return fmt.Errorf("%q: want VERSION=PERCENT[,VERSION=PERCENT...]", v)
		}
		s[ver] = uint32(n)
	}
	return nil
}

// runDemo runs the demo mesh until ctx ends (Ctrl-C).
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := demo.DefaultConfig()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: meshlens demo [flags]

Runs a bookinfo-shaped mesh of proxyless gRPC services on 127.0.0.1:
productpage v1 calls details v1 and reviews v1/v2/v3; reviews v2 and v3 call
ratings v1. Every call is routed by meshlens' xDS server, every workload sends
OTLP traces to meshlens' collector, and a load generator calls productpage.
The demo applies its Istio config (ServiceEntry, WorkloadEntry,
DestinationRule, VirtualService) through meshlens' API when it starts.

Control at runtime (--control):
  curl -X PUT 'http://127.0.0.1:8090/rate?rps=50'
  curl -X PUT 'http://127.0.0.1:8090/fault?service=reviews&version=v3&errorRate=0.5&delay=300ms'
  curl http://127.0.0.1:8090/

flags:`)
		fs.PrintDefaults()
	}
	server := os.Getenv("MESHLENS_SERVER")
	if server == "" {
		server = cfg.Server
	}
	fs.StringVar(&cfg.Server, "server", server, "meshlens API address, to apply the demo's config (env MESHLENS_SERVER)")
	fs.StringVar(&cfg.Token, "token", os.Getenv("MESHLENS_TOKEN"), "operator token (env MESHLENS_TOKEN; default: read from --token-file)")
	fs.StringVar(&cfg.TokenFile, "token-file", cfg.TokenFile, "file holding the operator token, as `meshlens serve` writes it (DATA_DIR/operator.token)")
	apply := fs.Bool("apply", true, "apply the demo's Istio config through the API at start (false: apply examples/bookinfo-demo.yaml yourself)")
	printConfig := fs.Bool("print-config", false, "print the demo's Istio config (for the ports these flags give) and exit")
	fs.StringVar(&cfg.XDS, "xds", cfg.XDS, "meshlens xDS (ADS) server address")
	fs.StringVar(&cfg.Collector, "otlp", cfg.Collector, "OTLP/gRPC collector address for traces (empty: no traces)")
	fs.StringVar(&cfg.Namespace, "namespace", cfg.Namespace, "namespace of the demo's services")
	fs.IntVar(&cfg.ServicePort, "service-port", cfg.ServicePort, "mesh port of every service (xds:///SERVICE.NAMESPACE.svc.cluster.local:PORT)")
	fs.IntVar(&cfg.BasePort, "base-port", cfg.BasePort, "first workload port; the 6 workloads listen on BASE..BASE+5 (0: any free ports)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "requests per second sent to productpage (change at runtime: PUT /rate)")
	fs.StringVar(&cfg.Control, "control", cfg.Control, "control HTTP endpoint address (empty: off)")
	fs.DurationVar(&cfg.StatusEvery, "status-every", cfg.StatusEvery, "period of the status line (0: none)")
	fs.DurationVar(&cfg.RequestTimeout, "timeout", cfg.RequestTimeout, "timeout of each load generator request")
	fs.BoolVar(&cfg.XDSServers, "xds-servers", cfg.XDSServers, "make the workloads xDS-managed gRPC servers, so AuthorizationPolicy (RBAC) applies to their inbound calls")
	faults := map[demo.VersionKey]demo.Fault{}
	fs.Var(&faultFlags{m: faults}, "fail", "make a version fail a share of requests, SERVICE:VERSION=RATE (e.g. reviews:v3=0.5); repeatable")
	fs.Var(&faultFlags{m: faults, slow: true}, "slow", "make a version slow, SERVICE:VERSION=DELAY (e.g. reviews:v2=300ms); repeatable")
	split := splitFlag{}
	for k, v := range cfg.ReviewsSplit {
		split[k] = v
	}
	fs.Var(split, "split", "the reviews VirtualService's traffic split (default v1=50,v2=30,v3=20)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshlens demo: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	cfg.Faults = faults
	cfg.ReviewsSplit = split
	if !*apply {
		cfg.Server = ""
	}

	if *printConfig {
		if cfg.BasePort == 0 {
			return errors.New("--print-config needs a fixed --base-port")
		}
		var eps []demo.Endpoint
		for i, in := range demo.Bookinfo() {
			eps = append(eps, demo.Endpoint{Instance: in, Port: cfg.BasePort + i})
		}
		y, err := demo.IstioConfig(cfg.Namespace, cfg.ServicePort, eps, cfg.ReviewsSplit)
		if err != nil {
			return err
		}
		_, err = stdout.Write(y)
		return err
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	// The OTel SDK reports export failures through one process-wide handler;
	// while the collector is away that is one error per workload per batch,
	// so say it once in a while.
	otel.SetErrorHandler(throttledOTelErrors(logger, 30*time.Second))
	cfg.Status = stdout

	d, err := demo.Start(ctx, cfg, logger)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting for meshlens
		}
		return err
	}
	<-ctx.Done()
	logger.Info("stopping demo")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(sctx); err != nil {
		return err
	}
	logger.Info("demo stopped")
	return nil
}

func throttledOTelErrors(logger *slog.Logger, every time.Duration) otel.ErrorHandlerFunc {
	var mu sync.Mutex
	var last time.Time
	suppressed := 0
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < every {
			suppressed++
			return
		}
		logger.Warn("OTLP trace export failing (is meshlens' collector up?)", "err", err, "suppressed", suppressed)
		last, suppressed = time.Now(), 0
	}
}

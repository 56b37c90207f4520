// Command meshlens is the one meshlens binary: the server (`serve`), the demo
// mesh (`demo`), and a CLI client for the REST API (`apply`, `get`, ...).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/meshlens/meshlens/app"
)

// command is one subcommand: a function of its arguments and output streams.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"serve":    {"run meshlens: collector, graph, API, control plane, UI", runServe},
		"demo":     {"run a demo mesh (bookinfo) of proxyless gRPC services steered by meshlens", runDemo},
		"apply":    {"apply configuration: meshlens apply -f FILE|DIR|-", runApply},
		"get":      {"list or show configuration: meshlens get KIND [NAME] [-n NS] [-o yaml|json]", runGet},
		"delete":   {"delete configuration: meshlens delete KIND NAME [-n NS]", runDelete},
		"validate": {"validate configuration offline, for CI: meshlens validate -f FILE [--strict]", runValidate},
		"analyze":  {"list analysis findings (IST codes) of files or the running config: meshlens analyze [-f FILE]", runAnalyze},
		"rollout":  {"follow and steer rollouts: meshlens rollout status|promote|abort|pause|resume NAME [-n NS]", runRollout},
		"audit":    {"the audit trail of changes: meshlens audit [KIND [NAME]] [-n NS] [--since 1h] [--diff]", runAudit},
	}
}

// errUsage marks an error already explained to the user (app.LoadConfig
// returns it for serve's flags too).
var errUsage = app.ErrUsage

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		return 2
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "meshlens: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintf(stderr, "meshlens %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: meshlens COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun `meshlens COMMAND -h` for a command's flags.")
}

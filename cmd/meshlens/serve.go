package main

import (
	"context"
	"io"

	"github.com/meshlens/meshlens/app"
)

// runServe is `meshlens serve`: the configuration from --config and the
// flags, every component built from it (package app), all run together
// until the context ends.
func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := app.LoadConfig(args, stderr)
	if err != nil {
		return err
	}
	logger, err := app.NewLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

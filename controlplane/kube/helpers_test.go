package kube

import (
	"context"
	"log/slog"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// newTeeLogger logs to the test's logger and, as text, to w.
func newTeeLogger(l *slog.Logger, w *meshtest.LogBuffer) *slog.Logger {
	return slog.New(teeHandler{l.Handler(), slog.NewTextHandler(w, nil)})
}

type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	_ = t.a.Handle(ctx, r.Clone())
	return t.b.Handle(ctx, r)
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{t.a.WithGroup(g), t.b.WithGroup(g)}
}

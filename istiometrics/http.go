package istiometrics

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where meshlens serves Istio's metrics.
const Path = "/metrics/istio"

// Handler serves the Istio metrics in Prometheus' exposition formats.
func (x *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(x.reg, promhttp.HandlerOpts{})
}

// RegisterRoutes mounts GET /metrics/istio on e, behind mw (meshlens guards
// it as it guards API reads). A nil exporter (turned off) answers 404.
func RegisterRoutes(e *echo.Echo, x *Exporter, mw ...echo.MiddlewareFunc) {
	if x == nil {
		e.GET(Path, func(c echo.Context) error {
			return c.String(http.StatusNotFound, "Istio metrics are off (--istio-metrics-max-series 0)\n")
		}, mw...)
		return
	}
	e.GET(Path, echo.WrapHandler(x.Handler()), mw...)
}

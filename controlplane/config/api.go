package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
)

// ObjectRef names one object in API responses.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ApplyResponse is the body of a successful POST /api/v1/config.
type ApplyResponse struct {
	Version uint64      `json:"version"`
	Applied []ObjectRef `json:"applied"`
	// DryRun is set when ?dryRun=true only checked the objects; Version
	// is then the unchanged current one.
	DryRun bool `json:"dryRun,omitempty"`
	// Warnings are the batch's analysis findings, the first
	// MaxReportedErrors of WarningCount. They did not stop the batch.
	Warnings     Warnings `json:"warnings"`
	WarningCount int      `json:"warningCount"`
	// Skipped are the objects of unsupported kinds that
	// ?skipUnsupported=true left out.
	Skipped []ObjectRef `json:"skipped,omitempty"`
}

// NewApplyResponse is the answer to applying (or checking) objs.
func NewApplyResponse(version uint64, objs []*Object, ws Warnings) ApplyResponse {
	resp := ApplyResponse{Version: version, Applied: make([]ObjectRef, 0, len(objs))}
	for _, o := range objs {
		resp.Applied = append(resp.Applied, ObjectRef{o.Kind, o.Meta.Namespace, o.Meta.Name})
	}
	resp.Warnings, resp.WarningCount = firstWarnings(ws)
	return resp
}

// firstWarnings bounds a list of warnings for an answer, as errors are.
func firstWarnings(ws Warnings) (Warnings, int) {
	if ws == nil {
		ws = Warnings{} // [] rather than null, for clients
	}
	return ws[:min(len(ws), MaxReportedErrors)], len(ws)
}

// AnalysisResponse is the body of GET /api/v1/analysis: every finding on
// the running config.
type AnalysisResponse struct {
	Version  uint64   `json:"version"`
	Warnings Warnings `json:"warnings"`
}

// ListResponse is the body of GET /api/v1/config.
type ListResponse struct {
	Version uint64    `json:"version"`
	Items   []*Object `json:"items"`
	// Sources maps each item's key ("Kind/namespace/name") to where it
	// came from: "api", "dir:FILE" (--config-dir) or
	// "kube:Kind/namespace/name" (the cluster's custom resource).
	Sources map[string]string `json:"sources"`
}

// DeleteResponse is the body of a successful DELETE.
type DeleteResponse struct {
	Version uint64    `json:"version"`
	Deleted ObjectRef `json:"deleted"`
	// Warnings are the findings the deletion causes on other objects
	// (a route to a subset it defined); see ApplyResponse.
	Warnings     Warnings `json:"warnings"`
	WarningCount int      `json:"warningCount"`
}

// ErrorsResponse is the body of a 400 for invalid config: the first
// MaxReportedErrors errors, and how many there are in all.
type ErrorsResponse struct {
	Errors     FieldErrors `json:"errors"`
	ErrorCount int         `json:"errorCount"`
}

// NewErrorsResponse is the 400 body for err, if err is a validation
// error (FieldErrors or *TooManyErrors).
func NewErrorsResponse(err error) (ErrorsResponse, bool) {
	var fe FieldErrors
	if !errors.As(err, &fe) {
		return ErrorsResponse{}, false
	}
	return ErrorsResponse{Errors: fe, ErrorCount: ErrorCount(err)}, true
}

// ErrorResponse is the body of any other error.
type ErrorResponse struct {
	Error string `json:"error"`
}

// RegisterRoutes serves config under api (the /api/v1 group, which already
// carries the read-auth middleware); operator guards the mutating routes
// (auth.Authorizer.Operator: it checks the path's namespace; apply checks
// each object's, so an operator of team-a changes team-a's objects only).
//
//	POST   /config[?dryRun=true][&skipUnsupported=true]  apply (or only check) multi-document YAML or JSON
//	GET    /config[?kind=K]               list
//	GET    /config/{kind}/{ns}/{name}     one object
//	DELETE /config/{kind}/{ns}/{name}     delete
//	GET    /analysis                      analysis findings on the running config
//
// Invalid config is refused (400, ErrorsResponse); analysis findings are
// warnings in the 200 answer and never refuse, as in Istio.
// Kinds are matched case-insensitively and by plural or short name. Reads
// show secret values as Redacted (KindSpec.Redact), to viewers and operators
// alike; applying such an object back keeps the stored secrets.
func RegisterRoutes(api *echo.Group, store *Store, operator echo.MiddlewareFunc) {
	h := &handlers{store: store}
	api.POST("/config", h.apply, operator)
	api.GET("/config", h.list)
	api.GET("/config/:kind/:namespace/:name", h.get)
	api.DELETE("/config/:kind/:namespace/:name", h.delete, operator)
	api.GET("/analysis", h.analysis)
}

type handlers struct{ store *Store }

func (h *handlers) apply(c echo.Context) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxDocumentBytes))
	if err != nil {
		return c.JSON(http.StatusRequestEntityTooLarge, ErrorResponse{fmt.Sprintf("reading body: %v (limit %d bytes)", err, MaxDocumentBytes)})
	}
	var objs []*Object
	var skipped []ObjectRef
	if skip, _ := strconv.ParseBool(c.QueryParam("skipUnsupported")); skip {
		objs, skipped, err = h.store.Kinds().ParseSkippingUnsupported(body)
	} else {
		objs, err = h.store.Kinds().Parse(body)
	}
	if err != nil {
		return writeErr(c, err)
	}
	dry, _ := strconv.ParseBool(c.QueryParam("dryRun"))
	switch {
	case len(objs) == 0 && len(skipped) > 0:
		// Nothing meshlens serves: nothing to apply, but the caller
		// asked to skip exactly this.
		resp := NewApplyResponse(h.store.Snapshot().Version, nil, nil)
		resp.DryRun, resp.Skipped = dry, skipped
		return c.JSON(http.StatusOK, resp)
	case len(objs) == 0:
		return c.JSON(http.StatusBadRequest, ErrorResponse{"the body holds no objects; send YAML or JSON config"})
	}
	if err := MayChange(c.Request().Context(), objs); err != nil {
		return c.JSON(http.StatusForbidden, ErrorResponse{err.Error()})
	}
	if dry {
		ws, err := h.store.Check(objs)
		if err != nil {
			return writeErr(c, err)
		}
		resp := NewApplyResponse(h.store.Snapshot().Version, objs, ws)
		resp.DryRun, resp.Skipped = true, skipped
		return c.JSON(http.StatusOK, resp)
	}
	sn, ws, err := h.store.Apply(c.Request().Context(), objs)
	if err != nil {
		return writeErr(c, err)
	}
	resp := NewApplyResponse(sn.Version, objs, ws)
	resp.Skipped = skipped
	return c.JSON(http.StatusOK, resp)
}

func (h *handlers) analysis(c echo.Context) error {
	version, ws := h.store.Analysis()
	if ws == nil {
		ws = Warnings{}
	}
	return c.JSON(http.StatusOK, AnalysisResponse{Version: version, Warnings: ws})
}

func (h *handlers) list(c echo.Context) error {
	sn := h.store.Snapshot()
	items := sn.Objects
	if kind := c.QueryParam("kind"); kind != "" {
		spec, ok := h.store.Kinds().Lookup(kind)
		if !ok {
			return c.JSON(http.StatusBadRequest, ErrorResponse{fmt.Sprintf("unknown kind %q; known kinds: %v", kind, h.store.Kinds().Names())})
		}
		items = sn.OfKind(spec.Kind)
	}
	out := make([]*Object, len(items))
	sources := make(map[string]string, len(items))
	for i, o := range items {
		out[i] = h.store.Kinds().Redact(o)
		sources[o.Key()] = h.store.Origin(o.Kind, o.Meta.Namespace, o.Meta.Name)
	}
	return c.JSON(http.StatusOK, ListResponse{Version: sn.Version, Items: out, Sources: sources})
}

func (h *handlers) get(c echo.Context) error {
	kind, ns, name := c.Param("kind"), c.Param("namespace"), c.Param("name")
	spec, ok := h.store.Kinds().Lookup(kind)
	if !ok {
		return c.JSON(http.StatusNotFound, ErrorResponse{fmt.Sprintf("unknown kind %q; known kinds: %v", kind, h.store.Kinds().Names())})
	}
	o := h.store.Snapshot().Get(spec.Kind, ns, name)
	if o == nil {
		return c.JSON(http.StatusNotFound, ErrorResponse{fmt.Sprintf("%s/%s/%s not found", spec.Kind, ns, name)})
	}
	return c.JSON(http.StatusOK, h.store.Kinds().Redact(o))
}

func (h *handlers) delete(c echo.Context) error {
	kind, ns, name := c.Param("kind"), c.Param("namespace"), c.Param("name")
	spec, ok := h.store.Kinds().Lookup(kind)
	if !ok {
		return c.JSON(http.StatusNotFound, ErrorResponse{fmt.Sprintf("unknown kind %q; known kinds: %v", kind, h.store.Kinds().Names())})
	}
	sn, ws, err := h.store.Delete(c.Request().Context(), spec.Kind, ns, name)
	if err != nil {
		return writeErr(c, err)
	}
	resp := DeleteResponse{Version: sn.Version, Deleted: ObjectRef{spec.Kind, ns, name}}
	resp.Warnings, resp.WarningCount = firstWarnings(ws)
	return c.JSON(http.StatusOK, resp)
}

// MayChange says why the API caller of ctx may not change every one of
// objs (an operator of some namespaces only, auth.Grant), naming the first
// object out of reach, or nil.
func MayChange(ctx context.Context, objs []*Object) error {
	for _, o := range objs {
		if err := auth.MayChange(ctx, o.Meta.Namespace); err != nil {
			return fmt.Errorf("%s: %w", o.Key(), err)
		}
	}
	return nil
}

func writeErr(c echo.Context, err error) error {
	if body, ok := NewErrorsResponse(err); ok {
		return c.JSON(http.StatusBadRequest, body)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return c.JSON(http.StatusNotFound, ErrorResponse{err.Error()})
	case errors.Is(err, ErrOwned):
		return c.JSON(http.StatusConflict, ErrorResponse{err.Error()})
	default:
		return c.JSON(http.StatusInternalServerError, ErrorResponse{err.Error()})
	}
}

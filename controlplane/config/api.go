package config

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
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
}

// ListResponse is the body of GET /api/v1/config.
type ListResponse struct {
	Version uint64    `json:"version"`
	Items   []*Object `json:"items"`
}

// DeleteResponse is the body of a successful DELETE.
type DeleteResponse struct {
	Version uint64    `json:"version"`
	Deleted ObjectRef `json:"deleted"`
}

// ErrorsResponse is the body of a 400 for invalid config.
type ErrorsResponse struct {
	Errors FieldErrors `json:"errors"`
}

// ErrorResponse is the body of any other error.
type ErrorResponse struct {
	Error string `json:"error"`
}

// RegisterRoutes serves config under api (the /api/v1 group, which already
// carries the read-auth middleware); operator guards the mutating routes.
//
//	POST   /config[?dryRun=true]          apply (or only check) multi-document YAML or JSON
//	GET    /config[?kind=K]               list
//	GET    /config/{kind}/{ns}/{name}     one object
//	DELETE /config/{kind}/{ns}/{name}     delete
//
// Kinds are matched case-insensitively and by plural or short name. Reads
// show secret values as Redacted (KindSpec.Redact), to viewers and operators
// alike; applying such an object back keeps the stored secrets.
func RegisterRoutes(api *echo.Group, store *Store, operator echo.MiddlewareFunc) {
	h := &handlers{store: store}
	api.POST("/config", h.apply, operator)
	api.GET("/config", h.list)
	api.GET("/config/:kind/:namespace/:name", h.get)
	api.DELETE("/config/:kind/:namespace/:name", h.delete, operator)
}

type handlers struct{ store *Store }

func (h *handlers) apply(c echo.Context) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxDocumentBytes))
	if err != nil {
		return c.JSON(http.StatusRequestEntityTooLarge, ErrorResponse{fmt.Sprintf("reading body: %v (limit %d bytes)", err, MaxDocumentBytes)})
	}
	objs, err := h.store.Kinds().Parse(body)
	if err != nil {
		return writeErr(c, err)
	}
	if len(objs) == 0 {
		return c.JSON(http.StatusBadRequest, ErrorResponse{"the body holds no objects; send YAML or JSON config"})
	}
	if dry, _ := strconv.ParseBool(c.QueryParam("dryRun")); dry {
		if err := h.store.Check(objs); err != nil {
			return writeErr(c, err)
		}
		resp := ApplyResponse{Version: h.store.Snapshot().Version, DryRun: true}
		for _, o := range objs {
			resp.Applied = append(resp.Applied, ObjectRef{o.Kind, o.Meta.Namespace, o.Meta.Name})
		}
		return c.JSON(http.StatusOK, resp)
	}
	sn, err := h.store.Apply(c.Request().Context(), objs)
	if err != nil {
		return writeErr(c, err)
	}
	resp := ApplyResponse{Version: sn.Version}
	for _, o := range objs {
		resp.Applied = append(resp.Applied, ObjectRef{o.Kind, o.Meta.Namespace, o.Meta.Name})
	}
	return c.JSON(http.StatusOK, resp)
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
	for i, o := range items {
		out[i] = h.store.Kinds().Redact(o)
	}
	return c.JSON(http.StatusOK, ListResponse{Version: sn.Version, Items: out})
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
	sn, err := h.store.Delete(c.Request().Context(), spec.Kind, ns, name)
	if err != nil {
		return writeErr(c, err)
	}
	return c.JSON(http.StatusOK, DeleteResponse{Version: sn.Version, Deleted: ObjectRef{spec.Kind, ns, name}})
}

func writeErr(c echo.Context, err error) error {
	var fe FieldErrors
	switch {
	case errors.As(err, &fe):
		return c.JSON(http.StatusBadRequest, ErrorsResponse{Errors: fe})
	case errors.Is(err, ErrNotFound):
		return c.JSON(http.StatusNotFound, ErrorResponse{err.Error()})
	case errors.Is(err, ErrOwned):
		return c.JSON(http.StatusConflict, ErrorResponse{err.Error()})
	default:
		return c.JSON(http.StatusInternalServerError, ErrorResponse{err.Error()})
	}
}

package views

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/store"
)

// MaxViews bounds the list.
const MaxViews = 1000

// Views serves saved views from ClickHouse.
type Views struct {
	st     *store.Store
	logger *slog.Logger
	now    func() time.Time
}

// New serves the views in st; st may be nil (no ClickHouse), and every route
// then answers 503.
func New(st *store.Store, logger *slog.Logger) *Views {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Views{st: st, logger: logger, now: time.Now}
}

// RegisterRoutes serves views under api (the /api/v1 group, which already
// carries the read-auth middleware); operator guards the changes.
//
//	GET    /views          list
//	POST   /views          create (409 if the name exists)
//	GET    /views/{name}   one view
//	PUT    /views/{name}   create or replace
//	DELETE /views/{name}   delete
func (v *Views) RegisterRoutes(api *echo.Group, operator echo.MiddlewareFunc) {
	api.GET("/views", v.list)
	api.POST("/views", v.create, operator)
	api.GET("/views/:name", v.get)
	api.PUT("/views/:name", v.put, operator)
	api.DELETE("/views/:name", v.delete, operator)
}

// ErrorResponse is the body of an error; Field names the part of the view
// (or the path's name) at fault.
type ErrorResponse struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

var errNotFound = errors.New("not found")

func (v *Views) fail(c echo.Context, err error) error {
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		status := http.StatusBadRequest
		if fe.Field == "body" && fe.Message == fmt.Sprintf("larger than %d bytes", MaxBodyBytes) {
			status = http.StatusRequestEntityTooLarge
		}
		return c.JSON(status, ErrorResponse{Error: fe.Error(), Field: fe.Field})
	case errors.Is(err, errNotFound):
		return c.JSON(http.StatusNotFound, ErrorResponse{Error: err.Error()})
	case errors.Is(err, errExists):
		return c.JSON(http.StatusConflict, ErrorResponse{Error: err.Error(), Field: "name"})
	case errors.Is(err, context.DeadlineExceeded):
		return c.JSON(http.StatusGatewayTimeout, ErrorResponse{Error: err.Error()})
	default:
		v.logger.Warn("saved views: ClickHouse failed", "path", c.Request().URL.Path, "err", err)
		return c.JSON(http.StatusServiceUnavailable, ErrorResponse{Error: err.Error()})
	}
}

var errExists = errors.New("exists")

func (v *Views) store(c echo.Context) (*store.Store, context.Context, context.CancelFunc, error) {
	if v.st == nil {
		return nil, nil, nil, errors.New("saved views live in ClickHouse, and no ClickHouse is configured (--clickhouse)")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 10*time.Second)
	// The schema may still be on its way when ClickHouse came up late.
	if err := v.st.EnsureSchema(ctx); err != nil {
		cancel()
		return nil, nil, nil, fmt.Errorf("saved views: %w", err)
	}
	return v.st, ctx, cancel, nil
}

// ListResponse is GET /views.
type ListResponse struct {
	Views     []*View `json:"views"`
	Truncated bool    `json:"truncated"`
}

func (v *Views) list(c echo.Context) error {
	st, ctx, cancel, err := v.store(c)
	if err != nil {
		return v.fail(c, err)
	}
	defer cancel()
	rows, err := st.SavedViews(ctx, "", MaxViews+1)
	if err != nil {
		return v.fail(c, err)
	}
	out := ListResponse{Views: []*View{}, Truncated: len(rows) > MaxViews}
	for _, r := range rows[:min(len(rows), MaxViews)] {
		out.Views = append(out.Views, v.fromRow(r))
	}
	return c.JSON(http.StatusOK, out)
}

// fromRow decodes a stored view. A row that no longer decodes (it cannot
// happen through this API) is shown by name with the server's complaint
// in the log, rather than failing the list.
func (v *Views) fromRow(r store.ViewRow) *View {
	var view View
	if err := json.Unmarshal([]byte(r.Body), &view); err != nil {
		v.logger.Warn("saved view does not decode", "view", r.Name, "err", err)
	}
	view.Name, view.Owner, view.Updated = r.Name, r.Owner, r.Updated
	return &view
}

func pathName(c echo.Context) (string, error) {
	name := c.Param("name")
	if u, err := url.PathUnescape(name); err == nil {
		name = u
	}
	return name, ValidName(name)
}

func (v *Views) find(ctx context.Context, st *store.Store, name string) (*View, error) {
	rows, err := st.SavedViews(ctx, name, 1)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("view %q: %w", name, errNotFound)
	}
	return v.fromRow(rows[0]), nil
}

func (v *Views) get(c echo.Context) error {
	name, err := pathName(c)
	if err != nil {
		return v.fail(c, err)
	}
	st, ctx, cancel, err := v.store(c)
	if err != nil {
		return v.fail(c, err)
	}
	defer cancel()
	view, err := v.find(ctx, st, name)
	if err != nil {
		return v.fail(c, err)
	}
	return c.JSON(http.StatusOK, view)
}

func (v *Views) create(c echo.Context) error {
	return v.save(c, "", false)
}

func (v *Views) put(c echo.Context) error {
	name, err := pathName(c)
	if err != nil {
		return v.fail(c, err)
	}
	return v.save(c, name, true)
}

// save stores the view in the body; under PUT the path names it (the body's
// name, if given, must agree), and replacing is allowed.
func (v *Views) save(c echo.Context, name string, replace bool) error {
	view, err := Decode(c.Request().Body)
	if err != nil {
		return v.fail(c, err)
	}
	if name != "" {
		if view.Name != "" && view.Name != name {
			return v.fail(c, fieldErr("name", "%q differs from the name in the path, %q", truncate(view.Name), name))
		}
		view.Name = name
	}
	if err := view.Validate(); err != nil {
		return v.fail(c, err)
	}
	st, ctx, cancel, err := v.store(c)
	if err != nil {
		return v.fail(c, err)
	}
	defer cancel()
	status := http.StatusOK
	if _, err := v.find(ctx, st, view.Name); errors.Is(err, errNotFound) {
		status = http.StatusCreated
	} else if err != nil {
		return v.fail(c, err)
	} else if !replace {
		return v.fail(c, fmt.Errorf("view %q already exists: PUT /api/v1/views/%s replaces it: %w", view.Name, url.PathEscape(view.Name), errExists))
	}
	view.Owner, view.Updated = owner(ctx), v.now().UTC()
	body, err := json.Marshal(view)
	if err != nil {
		return v.fail(c, fmt.Errorf("encode view %q: %w", view.Name, err))
	}
	if err := st.SaveView(ctx, store.ViewRow{Name: view.Name, Owner: view.Owner, Updated: view.Updated, Body: string(body)}); err != nil {
		return v.fail(c, err)
	}
	return c.JSON(status, view)
}

func (v *Views) delete(c echo.Context) error {
	name, err := pathName(c)
	if err != nil {
		return v.fail(c, err)
	}
	st, ctx, cancel, err := v.store(c)
	if err != nil {
		return v.fail(c, err)
	}
	defer cancel()
	if _, err := v.find(ctx, st, name); err != nil {
		return v.fail(c, err)
	}
	if err := st.DeleteView(ctx, name, owner(ctx), v.now().UTC()); err != nil {
		return v.fail(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// owner names the token that saves (never its value).
func owner(ctx context.Context) string {
	if a, ok := auth.ActorOf(ctx); ok {
		return a.Who
	}
	return ""
}

package rollout

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/controlplane/config"
)

// ListResponse is the body of GET /api/v1/rollouts.
type ListResponse struct {
	Items []Status `json:"items"`
}

// RegisterRoutes serves rollouts under api (the /api/v1 group, which
// already carries the read-auth middleware); operator guards the mutating
// routes (auth.Authorizer.Operator checks the path's namespace; apply checks
// each Rollout's).
//
//	GET  /rollouts                              list (without history)
//	POST /rollouts                              apply Rollout YAML or JSON (through the config store)
//	GET  /rollouts/{ns}/{name}                  state, step, weights, history of verdicts and pushes
//	POST /rollouts/{ns}/{name}/{pause|resume|promote|abort}
func (e *Engine) RegisterRoutes(api *echo.Group, operator echo.MiddlewareFunc) {
	api.GET("/rollouts", e.handleList)
	api.POST("/rollouts", e.handleApply, operator)
	api.GET("/rollouts/:namespace/:name", e.handleGet)
	api.POST("/rollouts/:namespace/:name/:action", e.handleAction, operator)
}

func (e *Engine) handleList(c echo.Context) error {
	return c.JSON(http.StatusOK, ListResponse{Items: e.List()})
}

func (e *Engine) handleGet(c echo.Context) error {
	ns, name := c.Param("namespace"), c.Param("name")
	st, ok := e.Get(ns, name)
	if !ok {
		return c.JSON(http.StatusNotFound, config.ErrorResponse{Error: fmt.Sprintf("rollout %s/%s not found", ns, name)})
	}
	return c.JSON(http.StatusOK, st)
}

func (e *Engine) handleApply(c echo.Context) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, config.MaxDocumentBytes))
	if err != nil {
		return c.JSON(http.StatusRequestEntityTooLarge, config.ErrorResponse{Error: fmt.Sprintf("reading body: %v", err)})
	}
	objs, err := e.store.Kinds().Parse(body)
	if resp, ok := config.NewErrorsResponse(err); ok {
		return c.JSON(http.StatusBadRequest, resp)
	}
	if err != nil {
		return c.JSON(http.StatusBadRequest, config.ErrorResponse{Error: err.Error()})
	}
	if len(objs) == 0 {
		return c.JSON(http.StatusBadRequest, config.ErrorResponse{Error: "the body holds no Rollout"})
	}
	for _, o := range objs {
		if o.Kind != Kind {
			return c.JSON(http.StatusBadRequest, config.ErrorResponse{Error: fmt.Sprintf("%s is not a Rollout; apply other kinds with POST /api/v1/config", o.Key())})
		}
	}
	if err := config.MayChange(c.Request().Context(), objs); err != nil {
		return c.JSON(http.StatusForbidden, config.ErrorResponse{Error: err.Error()})
	}
	sn, ws, err := e.store.Apply(c.Request().Context(), objs)
	if resp, ok := config.NewErrorsResponse(err); ok {
		return c.JSON(http.StatusBadRequest, resp)
	}
	if err != nil {
		return c.JSON(http.StatusInternalServerError, config.ErrorResponse{Error: err.Error()})
	}
	return c.JSON(http.StatusOK, config.NewApplyResponse(sn.Version, objs, ws))
}

// LeaderHeader names, on a refusal by a replica that does not run the
// rollouts, the HTTP address of the one that does.
const LeaderHeader = "Meshlens-Leader"

var actions = map[string]Event{"pause": EvPause, "resume": EvResume, "promote": EvPromote, "abort": EvAbort}

func (e *Engine) handleAction(c echo.Context) error {
	ns, name, action := c.Param("namespace"), c.Param("name"), c.Param("action")
	ev, ok := actions[action]
	if !ok {
		return c.JSON(http.StatusNotFound, config.ErrorResponse{Error: fmt.Sprintf("unknown action %q: want pause, resume, promote or abort", action)})
	}
	res, err := e.Do(c.Request().Context(), ns, name, ev, "operator", "operator: "+action)
	switch {
	case errors.Is(err, ErrNotFound):
		return c.JSON(http.StatusNotFound, config.ErrorResponse{Error: err.Error()})
	case errors.Is(err, ErrTransition):
		return c.JSON(http.StatusConflict, config.ErrorResponse{Error: err.Error()})
	case errors.Is(err, ErrNotLeader):
		// Another replica runs the rollouts: ask it (its address is named).
		if l := e.Leader(); l != "" {
			c.Response().Header().Set(LeaderHeader, l)
		}
		return c.JSON(http.StatusServiceUnavailable, config.ErrorResponse{Error: err.Error()})
	case err != nil:
		return c.JSON(http.StatusInternalServerError, config.ErrorResponse{Error: err.Error()})
	}
	return c.JSON(http.StatusOK, res)
}

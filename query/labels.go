package query

import (
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/internal/jsonappend"
)

// labeledGraph is a graph with the Kubernetes labels of its nodes, for the
// UI's grouping by any label: the labels every Pod of a node shares (and
// their locality), by node id, for the nodes the registry knows.
type labeledGraph struct {
	*graph.Graph
	NodeLabels map[string]map[string]string `json:"nodeLabels,omitempty"`
}

// labeled adds the registry's labels to g; g itself is left alone, as other
// readers of the same live snapshot share it.
func (a *handlers) labeled(g *graph.Graph) any {
	if labels := a.nodeLabels(g); labels != nil {
		return labeledGraph{Graph: g, NodeLabels: labels}
	}
	return g
}

// nodeLabels are the registry's labels of g's nodes, by node id; nil
// without a registry or when it knows none of them.
func (a *handlers) nodeLabels(g *graph.Graph) map[string]map[string]string {
	if a.Registry == nil {
		return nil
	}
	reg := a.Registry()
	if reg == nil {
		return nil
	}
	var out map[string]map[string]string
	for _, n := range g.Nodes {
		if n.Unknown {
			continue
		}
		if l := reg.NodeLabels(n.Namespace, n.Service, n.Version, n.Workload); len(l) > 0 {
			if out == nil {
				out = map[string]map[string]string{}
			}
			out[n.ID] = l
		}
	}
	return out
}

// writeGraph answers g as c.JSON(200, a.labeled(g)) would, byte for byte,
// from the graph's own encoder (graph.Graph.JSON: no reflection, written
// once per shared live graph); the labels, which change with the registry,
// are appended as the last field. ?pretty (and echo's debug mode) indent,
// through c.JSON.
//
// A shared graph is encoded once (graph.Graph.JSON) and kept with it; a
// graph of this request alone (merged across replicas, or from history) is
// encoded into a recycled buffer instead, given back once written: a
// 10,000-edge graph is 3.5 MB of JSON, garbage after every query otherwise.
func (a *handlers) writeGraph(c echo.Context, g *graph.Graph, shared bool) error {
	if _, pretty := c.QueryParams()["pretty"]; pretty || c.Echo().Debug {
		return c.JSON(http.StatusOK, a.labeled(g))
	}
	var body []byte
	var err error
	if shared {
		body, err = g.JSON()
	} else {
		buf := a.jsonBuf()
		defer a.putJSONBuf(buf)
		*buf, err = g.AppendJSON((*buf)[:0])
		body = *buf
	}
	if err != nil {
		return c.JSON(http.StatusInternalServerError, apiError{Error: err.Error()})
	}
	var tail []byte
	if labels := a.nodeLabels(g); labels != nil {
		tail = append(tail, `,"nodeLabels":{`...)
		keys := slices.Sorted(maps.Keys(labels))
		for i, id := range keys {
			if i > 0 {
				tail = append(tail, ',')
			}
			tail = jsonappend.StringMap(jsonappend.Key(tail, id), labels[id])
		}
		tail = append(tail, "}}"...) // the labels', then the graph's own
		body = body[:len(body)-1]    // without the graph's closing brace
	}
	tail = append(tail, '\n') // as json.Encoder ends every value
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(body)+len(tail)))
	c.Response().WriteHeader(http.StatusOK)
	if _, err := c.Response().Write(body); err != nil {
		return err
	}
	_, err = c.Response().Write(tail)
	return err
}

// maxPooledJSON bounds the buffers writeGraph keeps for the next answer.
const maxPooledJSON = 64 << 20

func (a *handlers) jsonBuf() *[]byte {
	if b, ok := a.jsonBufs.Get(); ok {
		return b
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

func (a *handlers) putJSONBuf(b *[]byte) {
	if cap(*b) <= maxPooledJSON {
		a.jsonBufs.Put(b)
	}
}

// RegistrySnapshot returns the service registry's current snapshot, nil
// without a Kubernetes cluster.
type RegistrySnapshot func() *registry.Snapshot

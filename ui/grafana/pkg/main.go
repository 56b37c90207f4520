// Command gpx_meshlens is the backend of the meshlens Grafana datasource
// plugin; Grafana starts it and talks to it over the plugin protocol.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/meshlens/meshlens/ui/grafana/pkg/plugin"
)

func main() {
	if err := datasource.Manage(plugin.ID, plugin.NewDatasource, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("meshlens datasource stopped", "error", err.Error())
		os.Exit(1)
	}
}

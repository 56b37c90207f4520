package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/controlplane/config"
)

func pathEscape(s string) string { return url.PathEscape(s) }

// runGet is `meshlens get KIND [NAME] [-n NS] [-o table|yaml|json]`. KIND
// "all" lists every kind. Without NAME it lists all namespaces unless -n
// is given.
func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("get", "get KIND|all [NAME] [-n NAMESPACE] [-o table|yaml|json]", stderr)
	ns := fs.String("n", "", "namespace (default: \"default\" with NAME, all namespaces without)")
	output := fs.String("o", "table", "output format: table, yaml or json")
	var cf clientFlags
	cf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return errUsage
	}
	switch *output {
	case "table", "yaml", "json":
	default:
		return fmt.Errorf("unknown output format %q; use table, yaml or json", *output)
	}
	c := cf.client()
	var objs []json.RawMessage
	var list struct {
		Items   []json.RawMessage `json:"items"`
		Sources map[string]string `json:"sources"`
	}
	if len(pos) == 2 {
		namespace := *ns
		if namespace == "" {
			namespace = config.DefaultNamespace
		}
		var one json.RawMessage
		if err := c.do(ctx, "GET", "/config/"+pathEscape(pos[0])+"/"+pathEscape(namespace)+"/"+pathEscape(pos[1]), nil, &one, stderr); err != nil {
			return err
		}
		objs = append(objs, one)
		if *output == "table" { // the table's SOURCE column comes with the list
			if err := c.do(ctx, "GET", "/config?kind="+url.QueryEscape(pos[0]), nil, &list, stderr); err != nil {
				return err
			}
		}
	} else {
		path := "/config"
		if pos[0] != "all" {
			path += "?kind=" + url.QueryEscape(pos[0])
		}
		if err := c.do(ctx, "GET", path, nil, &list, stderr); err != nil {
			return err
		}
		for _, it := range list.Items {
			if *ns == "" || namespaceOf(it) == *ns {
				objs = append(objs, it)
			}
		}
	}
	return printObjects(stdout, objs, list.Sources, *output)
}

type objectHead struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func namespaceOf(raw json.RawMessage) string {
	var h objectHead
	_ = json.Unmarshal(raw, &h)
	return h.Metadata.Namespace
}

// printObjects writes objects as a table (with each one's source, from
// sources by key, when known), YAML or JSON.
func printObjects(w io.Writer, objs []json.RawMessage, sources map[string]string, format string) error {
	switch format {
	case "json":
		var out any = objs
		if len(objs) == 1 {
			out = objs[0]
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		for i, o := range objs {
			y, err := yaml.JSONToYAML(o)
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			if _, err := w.Write(y); err != nil {
				return err
			}
		}
		return nil
	}
	if len(objs) == 0 {
		fmt.Fprintln(w, "No objects found.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tSOURCE")
	for _, o := range objs {
		var h objectHead
		if err := json.Unmarshal(o, &h); err != nil {
			return err
		}
		source := sources[h.Kind+"/"+h.Metadata.Namespace+"/"+h.Metadata.Name]
		if source == "" {
			source = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Kind, h.Metadata.Namespace, h.Metadata.Name, source)
	}
	return tw.Flush()
}

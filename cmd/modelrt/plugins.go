package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

const protocolVersion = sdk.ProtocolVersion

func newPluginsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List the backend plugins found, with name, version, protocol and tasks",
		Long: `Lists every modelrt-* executable in the plugin directories (--plugin-dir, then
$MODELRT_PLUGIN_DIR, then the directory of modelrt itself). Each one is started, asked to
describe itself and stopped. A plugin that cannot start is listed with its error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dirs := plugin.SearchDirs(g.pluginDir)
			infos := plugin.Probe(cmd.Context(), plugin.Discover(dirs), plugin.Config{LogLevel: g.logLevel})
			if asJSON {
				type row struct {
					Name     string   `json:"name"`
					Path     string   `json:"path"`
					Version  string   `json:"version,omitempty"`
					Protocol int      `json:"protocol,omitempty"`
					Tasks    []string `json:"tasks,omitempty"`
					Formats  []string `json:"formats,omitempty"`
					Error    string   `json:"error,omitempty"`
				}
				rows := []row{}
				for _, in := range infos {
					r := row{Name: in.Name, Path: in.Path}
					if in.Err != nil {
						r.Error = in.Err.Error()
					} else {
						r.Version, r.Protocol, r.Tasks, r.Formats = in.Desc.Version, in.Desc.ProtocolVersion, in.Desc.Tasks, in.Desc.Formats
					}
					rows = append(rows, r)
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			out := cmd.OutOrStdout()
			if len(infos) == 0 {
				fmt.Fprintf(out, "no plugins found in %s\n", strings.Join(dirs, ", "))
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tPROTOCOL\tTASKS\tPATH")
			var broken []plugin.Info
			for _, in := range infos {
				if in.Err != nil {
					fmt.Fprintf(tw, "%s\t-\t-\tERROR (below)\t%s\n", in.Name, in.Path)
					broken = append(broken, in)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\tv%d\t%s\t%s\n", in.Name, in.Desc.Version, in.Desc.ProtocolVersion, strings.Join(in.Desc.Tasks, ","), in.Path)
			}
			tw.Flush()
			for _, in := range broken {
				fmt.Fprintf(out, "\n%s: %v\n", in.Name, in.Err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

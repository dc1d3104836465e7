package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

// SchemaOptions say how Schemas finds and starts plugins.
type SchemaOptions struct {
	// Dir is the configuration directory: a plugin written as a relative path resolves
	// against it, as pipelines.Load resolves it.
	Dir string
	// PluginDirs are searched for plugins named by name.
	PluginDirs []string
	LogLevel   string
}

// Schemas returns a pipelines.LoadOptions.BackendSchemas function that asks each plugin for its
// config schema: the plugin is started, described and stopped, once per distinct plugin however
// many backend blocks use it. An error (a plugin that cannot be found or started) becomes the
// loader's diagnostic on the backend's plugin attribute.
func Schemas(ctx context.Context, o SchemaOptions) func(ref string) (*sdk.ConfigSchema, error) {
	var mu sync.Mutex
	type result struct {
		s   *sdk.ConfigSchema
		err error
	}
	cache := map[string]result{}
	return func(ref string) (*sdk.ConfigSchema, error) {
		mu.Lock()
		defer mu.Unlock()
		if r, ok := cache[ref]; ok {
			return r.s, r.err
		}
		s, err := describe(ctx, ref, o)
		cache[ref] = result{s, err}
		return s, err
	}
}

func describe(ctx context.Context, ref string, o SchemaOptions) (*sdk.ConfigSchema, error) {
	path := ref
	if strings.Contains(ref, "/") {
		if !filepath.IsAbs(path) {
			path = filepath.Join(o.Dir, path)
		}
	} else {
		var err error
		if path, err = plugin.Resolve(ref, o.PluginDirs); err != nil {
			return nil, err
		}
	}
	infos := plugin.Probe(ctx, []plugin.Found{{Name: ref, Path: path}}, plugin.Config{LogLevel: o.LogLevel})
	if infos[0].Err != nil {
		return nil, infos[0].Err
	}
	if infos[0].Desc == nil {
		return nil, fmt.Errorf("plugin %s did not describe itself", path)
	}
	return &infos[0].Desc.ConfigSchema, nil
}

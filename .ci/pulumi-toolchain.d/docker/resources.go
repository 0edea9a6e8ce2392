// Package docker maps the upstream Terraform Docker provider onto the Pulumi
// package "docker", with the tokens and property names that the published
// @pulumi/docker 5.x SDK uses (docker:index/<resource>:<Resource>).
//
// The native (non-bridged) docker.Image resource of the published provider is
// not part of this build: use docker.RemoteImage (upstream docker_image), whose
// `build` block builds through the engine's API.
package docker

import (
	"context"
	"runtime"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	tfbridgetokens "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"

	"github.com/terraform-providers/terraform-provider-docker/shim"
)

const (
	pkgName = "docker"
	mainMod = "index"
)

func resource(name string) tokens.Type {
	return tokens.Type(pkgName + ":" + mainMod + "/" + lowerFirst(name) + ":" + name)
}

func dataSource(name string) tokens.ModuleMember {
	return tokens.ModuleMember(pkgName + ":" + mainMod + "/" + name + ":" + name)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	b := []byte(s)
	if b[0] >= 'A' && b[0] <= 'Z' {
		b[0] += 'a' - 'A'
	}
	return string(b)
}

func defaultHost(goos string) string {
	if goos == "windows" {
		return "npipe:////./pipe/docker_engine"
	}
	return "unix:///var/run/docker.sock"
}

// Provider returns the bridge's description of the docker package.
func Provider(version string) tfbridge.ProviderInfo {
	prov := tfbridge.ProviderInfo{
		P:           shimv2.NewProvider(shim.NewProvider()),
		Name:        pkgName,
		Version:     version,
		Description: "A Pulumi package for interacting with Docker in Pulumi programs",
		Keywords:    []string{"pulumi", "docker"},
		License:     "Apache-2.0",
		GitHubOrg:   "kreuzwerker",
		Config: map[string]*tfbridge.SchemaInfo{
			"host": {
				Default: &tfbridge.DefaultInfo{
					EnvVars: []string{"DOCKER_HOST"},
					ComputeDefault: func(context.Context, tfbridge.ComputeDefaultOptions) (interface{}, error) {
						return defaultHost(runtime.GOOS), nil
					},
				},
			},
			"registry_auth": {Name: "registryAuth", MaxItemsOne: tfbridge.False()},
		},
		Resources: map[string]*tfbridge.ResourceInfo{
			"docker_config": {Tok: resource("ServiceConfig")},
			"docker_container": {
				Tok:                 resource("Container"),
				DeleteBeforeReplace: true,
				Fields: map[string]*tfbridge.SchemaInfo{
					// One command (["echo", "1"]), not several.
					"command": {Name: "command"},
					// Several entries, but the SDK keeps the singular name.
					"networks_advanced": {Name: "networksAdvanced"},
				},
			},
			"docker_image": {
				Tok:    resource("RemoteImage"),
				Fields: map[string]*tfbridge.SchemaInfo{"name": {Name: "name"}},
			},
			"docker_network":        {Tok: resource("Network")},
			"docker_secret":         {Tok: resource("Secret")},
			"docker_service":        {Tok: resource("Service")},
			"docker_volume":         {Tok: resource("Volume")},
			"docker_registry_image": {Tok: resource("RegistryImage")},
			"docker_plugin":         {Tok: resource("Plugin")},
			"docker_tag":            {Tok: resource("Tag")},
		},
		DataSources: map[string]*tfbridge.DataSourceInfo{
			"docker_network":        {Tok: dataSource("getNetwork")},
			"docker_registry_image": {Tok: dataSource("getRegistryImage")},
			"docker_plugin":         {Tok: dataSource("getPlugin")},
			"docker_image":          {Tok: dataSource("getRemoteImage")},
			"docker_logs":           {Tok: dataSource("getLogs")},
		},
		MetadataInfo: tfbridge.NewProviderMetadata(nil),
	}
	// Everything the explicit tables above leave out (newer upstream resources)
	// gets the standard docker:index/<name>:<Name> token.
	prov.MustComputeTokens(tfbridgetokens.SingleModule("docker_", mainMod, tfbridgetokens.MakeStandard(pkgName)))
	prov.SetAutonaming(255, "-")
	return prov
}

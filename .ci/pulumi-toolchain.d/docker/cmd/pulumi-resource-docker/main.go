// pulumi-resource-docker serves the bridged docker provider, plus the native
// docker:index/image:Image resource (see image.go).
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"os"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	docker "vllm-nginx.local/pulumi-resource-docker"
)

// Written by pulumi-tfgen-docker when the toolchain is built.
//
//go:embed schema.json
var schema []byte

// Set with -ldflags "-X main.version=...".
var version = "0.0.0"

func main() {
	// `-version` as in tfbridge.Main; other flags are the plugin protocol's.
	flags := flag.NewFlagSet("docker", flag.ContinueOnError)
	flags.SetOutput(os.Stderr)
	showVersion := flags.Bool("version", false, "print the provider version")
	_ = flags.Parse(filterVersionFlag(os.Args[1:]))
	if *showVersion {
		fmt.Println(version)
		return
	}

	info := docker.Provider(version)
	info.P.InitLogging(context.Background())
	err := provider.Main("docker", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		bridged := tfbridge.NewProvider(context.Background(), host, "docker", version, info.P, info, schema)
		return docker.NewHybrid(bridged, host), nil
	})
	if err != nil {
		cmdutil.ExitError(err.Error())
	}
}

// filterVersionFlag keeps only -version/--version for our own flag set.
func filterVersionFlag(args []string) []string {
	for _, a := range args {
		if a == "-version" || a == "--version" {
			return []string{"-version"}
		}
	}
	return nil
}

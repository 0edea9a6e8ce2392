// pulumi-resource-docker serves the bridged docker provider.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"

	docker "vllm-nginx.local/pulumi-resource-docker"
)

// Written by pulumi-tfgen-docker when the toolchain is built.
//
//go:embed schema.json
var schema []byte

// Set with -ldflags "-X main.version=...".
var version = "0.0.0"

func main() {
	tfbridge.Main("docker", version, docker.Provider(version), schema)
}

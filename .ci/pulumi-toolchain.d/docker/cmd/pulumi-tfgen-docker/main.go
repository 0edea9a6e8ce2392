// pulumi-tfgen-docker writes the Pulumi schema of the bridged docker provider.
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen"

	docker "vllm-nginx.local/pulumi-resource-docker"
)

var version = "0.0.0"

func main() {
	tfgen.Main("docker", version, docker.Provider(version))
}

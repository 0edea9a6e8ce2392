// pulumi-resource-command serves command:local:Command.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/pulumi/pulumi-go-provider/infer"

	"vllm-nginx.local/pulumi-resource-command/local"
)

// Set with -ldflags "-X main.version=...".
var version = "0.0.0"

func main() {
	prov, err := infer.NewProviderBuilder().
		WithResources(infer.Resource(&local.Command{})).
		WithDisplayName("Command").
		WithDescription("Runs commands as part of the Pulumi resource model (local commands only).").
		Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := prov.Run(context.Background(), "command", version); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Package shim is added to the upstream Terraform provider when the toolchain
// is built: Go's internal/ rule keeps internal/provider out of reach of other
// modules, so this package re-exports its constructor.
package shim

import (
	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"
	"github.com/terraform-providers/terraform-provider-docker/internal/provider"
)

// NewProvider returns the upstream SDKv2 provider.
func NewProvider() *schema.Provider {
	return provider.New("dev")()
}

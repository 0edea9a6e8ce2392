# Environment for running the Pulumi CLI offline with the toolchain that
# .ci/pulumi-toolchain built. Source it from bash: `source .ci/env.sh`.
# Runs nothing expensive. Honours PULUMI_TOOLCHAIN_DIR, and leaves
# PULUMI_CONFIG_PASSPHRASE / PULUMI_BACKEND_URL alone when they are set.
#
# `source .ci/env.sh --if-built` (what the user commands in scripts/ use): when
# the toolchain is not complete, change nothing and say nothing; a user without
# the CLI then gets the script's own message, never CI's.

_vn_ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_vn_repo=$(cd "$_vn_ci_dir/.." && pwd)
# shellcheck source=.ci/versions.sh
. "$_vn_ci_dir/versions.sh"

if [ ! -f "${PULUMI_TOOLCHAIN_DIR:-$VLLM_NGINX_TOOLCHAIN_DIR_DEFAULT}/.complete" ]; then
  if [ "${1:-}" = --if-built ]; then
    unset _vn_ci_dir _vn_repo
    return 0
  fi
  echo "env.sh: no complete toolchain in ${PULUMI_TOOLCHAIN_DIR:-$VLLM_NGINX_TOOLCHAIN_DIR_DEFAULT} (run .ci/pulumi-toolchain)" >&2
fi
export PULUMI_TOOLCHAIN_DIR="${PULUMI_TOOLCHAIN_DIR:-$VLLM_NGINX_TOOLCHAIN_DIR_DEFAULT}"
case ":$PATH:" in
  *":$PULUMI_TOOLCHAIN_DIR/bin:"*) ;;
  *) export PATH="$PULUMI_TOOLCHAIN_DIR/bin:$PATH" ;;
esac
export PULUMI_HOME="$PULUMI_TOOLCHAIN_DIR/home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# Use the plugins installed in PULUMI_HOME at the exact versions the npm packages
# ask for, not the same binaries found on PATH (which only adds warnings).
export PULUMI_IGNORE_AMBIENT_PLUGINS=true
# The stack files carry the salt of the empty passphrase (see README).
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-}"
if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  mkdir -p "$_vn_repo/.pulumi-state"
  export PULUMI_BACKEND_URL="file://$_vn_repo/.pulumi-state"
fi
unset _vn_ci_dir _vn_repo

# Checks that a host's Docker engine answers, on every up before its provider is configured, so that an engine that
# cannot be reached fails the deploy with the host's name and what was tried.
# Environment: HOST (its name), ENGINE (its address), and common.sh's.
if version=$(on_engine "$ENGINE" version --format '{{.Server.Version}}' 2>&1); then
    echo "host $HOST: Docker engine $version answers at ${ENGINE:-the default address}"
else
    echo "host $HOST: its Docker engine does not answer at ${ENGINE:-the default address} (tried: docker version, with DOCKER_HOST=${ENGINE:-unset}):" >&2
    echo "$version" | sed 's/^/    /' >&2
    exit 1
fi

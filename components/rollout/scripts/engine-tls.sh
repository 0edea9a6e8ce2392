# tls_dir ADDRESS: when ENGINE_TLS (JSON: address -> {ca, cert, key}, PEM text) holds ADDRESS, writes its
# material into a private folder (ca.pem, cert.pem, key.pem, as DOCKER_CERT_PATH wants them) and prints
# the folder; prints nothing otherwise. The caller removes the folder (with_engine does, after each call).
tls_dir() {
    [ -n "${ENGINE_TLS:-}" ] || return 0
    node -e '
        const [address] = process.argv.slice(1);
        const material = JSON.parse(process.env.ENGINE_TLS)[address];
        if (!material) process.exit(0);
        const fs = require("fs"), os = require("os"), path = require("path");
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-tls-"));
        for (const [file, key] of [["ca.pem", "ca"], ["cert.pem", "cert"], ["key.pem", "key"]]) {
            fs.writeFileSync(path.join(dir, file), material[key], { mode: 0o600 });
        }
        console.log(dir);
    ' "$1"
}

# with_engine ADDRESS command...: runs the command with DOCKER_HOST (and TLS, when the engine needs it) for
# the engine at ADDRESS ("" or "-": the default engine).
# (POSIX sh has no local variables: these names are its own, so that a caller's `engine` survives.)
with_engine() {
    with_engine_address=$1
    shift
    if [ -z "$with_engine_address" ] || [ "$with_engine_address" = "-" ]; then
        "$@"
        return
    fi
    certs=$(tls_dir "$with_engine_address")
    if [ -z "$certs" ]; then
        DOCKER_HOST=$with_engine_address "$@"
        return
    fi
    # The client key is root on that engine: it lives only as long as the one call that needs it (also
    # when the call fails, or the script is interrupted during it).
    trap 'rm -rf "$certs"' EXIT
    trap 'rm -rf "$certs"; exit 130' INT
    trap 'rm -rf "$certs"; exit 143' TERM
    with_engine_status=0
    DOCKER_HOST=$with_engine_address DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$certs "$@" || with_engine_status=$?
    rm -rf "$certs"
    trap - EXIT INT TERM
    return $with_engine_status
}

# tls_dir ADDRESS: when ENGINE_TLS (JSON: address -> {ca, cert, key}, PEM text) holds ADDRESS, writes its
# material into a private folder (ca.pem, cert.pem, key.pem, as DOCKER_CERT_PATH wants them) and prints
# the folder; prints nothing otherwise. The folder is removed when the script exits.
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
with_engine() {
    engine=$1
    shift
    if [ -z "$engine" ] || [ "$engine" = "-" ]; then
        "$@"
        return
    fi
    certs=$(tls_dir "$engine")
    if [ -n "$certs" ]; then
        trap 'rm -rf "$certs"' EXIT
        DOCKER_HOST=$engine DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$certs "$@"
    else
        DOCKER_HOST=$engine "$@"
    fi
}

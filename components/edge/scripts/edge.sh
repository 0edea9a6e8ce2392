# Runs inside the balancer's container (POSIX sh): installs the front door's secret files and reloads nginx.
#
#   edge.sh install MODE [NAMES]  the bundle on stdin (renderEdgeSecrets: client keys, the replicas' key,
#                                 a provided TLS pair). MODE is the TLS mode: off, provided (the pair comes
#                                 in the bundle) or self-signed (a pair made here with openssl for NAMES,
#                                 e.g. "DNS:localhost,IP:127.0.0.1"; kept while NAMES stay the same and it
#                                 is valid for 30 more days, so that clients that trust it keep trusting it)
#   edge.sh renew NAMES           a self-signed pair for NAMES with under 30 days left is made again, and
#                                 nginx reloaded (every `pulumi up` runs it: nothing else changes with time);
#                                 a provided certificate with under 30 days left gets a warning
#   edge.sh certificate           prints the certificate nginx serves (public), for clients to trust
#
# The files go to EDGE_DIR, readable by root only (nginx reads its config as root). nginx checks the
# config with them (`nginx -t`) and reloads: a key or a certificate changes without a restart, and
# streams in flight finish on the old workers. When nginx refuses, the previous files stay and its
# messages about them are withheld, since they may quote a key. Shares rotation.sh's lock: one change
# of nginx's config at a time.
set -eu
dir=${EDGE_DIR:-/etc/nginx/vllm-nginx/edge}
nginx_bin=${EDGE_NGINX:-nginx}
lock=${EDGE_LOCK:-/etc/nginx/vllm-nginx/.lock}
files="client-keys.map replica-authorization.map tls.crt tls.key tls.source"
umask 077
mkdir -p "$dir" "$(dirname "$lock")"
chmod 700 "$dir"
exec 9>"$lock"
flock 9

# describe: what is installed, without a secret: how many keys, whether replicas get a key, the certificate.
describe() {
    keys=$(grep -c . "$dir/client-keys.map" 2>/dev/null || true)
    if grep -q Bearer "$dir/replica-authorization.map" 2>/dev/null; then replica="sent"; else replica="none"; fi
    printf 'edge: %s client key(s); replicas get their own key: %s\n' "${keys:-0}" "$replica"
    if [ "$1" = off ]; then
        echo "tls: off"
    else
        fingerprint=$(openssl x509 -in "$dir/tls.crt" -noout -fingerprint -sha256 2>/dev/null | sed 's/^[^=]*=//')
        until=$(openssl x509 -in "$dir/tls.crt" -noout -enddate 2>/dev/null | sed 's/^notAfter=//')
        echo "tls: $1 certificate, sha256 fingerprint $fingerprint, valid until $until"
    fi
}

# lasting: whether the installed certificate is valid for 30 more days.
lasting() { openssl x509 -checkend 2592000 -noout -in "$dir/tls.crt" >/dev/null 2>&1; }

# self_signed FOLDER NAMES: a new self-signed pair for NAMES, valid for 365 days, as FOLDER/tls.crt and tls.key.
self_signed() {
    command -v openssl >/dev/null || { echo "edge.sh: openssl is needed for a self-signed certificate (apt-get install openssl)" >&2; exit 1; }
    if ! err=$(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=vllm-nginx" \
        -addext "subjectAltName=$2" -keyout "$1/tls.key" -out "$1/tls.crt" 2>&1); then
        echo "edge.sh: openssl could not make the certificate: $err" >&2
        exit 1
    fi
}

op=${1:?usage: edge.sh install MODE [NAMES] | renew NAMES | certificate}
case $op in
install)
    mode=${2:?the TLS mode: off, provided or self-signed}
    names=${3:-}
    stage=$(mktemp -d "$dir/.stage.XXXXXX")
    backup=$(mktemp -d "$dir/.backup.XXXXXX")
    trap 'rm -rf "$stage" "$backup"' EXIT
    if ! awk -v stage="$stage" '
        NR == 1 { if ($0 != "#vllm-nginx-edge 1") { bad = "not an edge bundle"; exit } next }
        /^#file / {
            name = substr($0, 7)
            if (name !~ /^(client-keys\.map|replica-authorization\.map|tls\.crt|tls\.key)$/) { bad = "unknown file " name; exit }
            out = stage "/" name; printf "" > out; next
        }
        /^#end$/ { done = 1; exit }
        { if (out == "") { bad = "content before the first file"; exit } print > out }
        END {
            if (bad == "" && !done) bad = "the bundle was cut short (no #end line)"
            if (bad != "") { print "edge.sh: " bad > "/dev/stderr"; exit 1 }
        }'; then
        exit 1
    fi
    [ -f "$stage/client-keys.map" ] || : >"$stage/client-keys.map"
    [ -f "$stage/replica-authorization.map" ] || echo 'default "";' >"$stage/replica-authorization.map"
    case $mode in
    off)
        # A previous pair is removed below, once nginx's config no longer uses it.
        rm -f "$stage/tls.crt" "$stage/tls.key"
        ;;
    provided)
        [ -s "$stage/tls.crt" ] && [ -s "$stage/tls.key" ] || { echo "edge.sh: mode provided needs tls.crt and tls.key in the bundle" >&2; exit 1; }
        echo provided >"$stage/tls.source"
        ;;
    self-signed)
        rm -f "$stage/tls.crt" "$stage/tls.key"
        [ -n "$names" ] || { echo "edge.sh: mode self-signed needs the certificate's names, e.g. DNS:localhost,IP:127.0.0.1" >&2; exit 1; }
        if [ "$(cat "$dir/tls.source" 2>/dev/null || true)" != "self-signed $names" ] || ! lasting; then
            self_signed "$stage" "$names"
            echo "self-signed $names" >"$stage/tls.source"
        fi
        ;;
    *)
        echo "edge.sh: unknown TLS mode $mode (off, provided or self-signed)" >&2
        exit 2
        ;;
    esac

    installed=""
    for f in $files; do
        [ -f "$stage/$f" ] || continue
        [ -f "$dir/$f" ] && cp -p "$dir/$f" "$backup/$f"
        mv "$stage/$f" "$dir/$f"
        installed="$installed $f"
    done
    if ! out=$("$nginx_bin" -t 2>&1); then
        for f in $installed; do
            if [ -f "$backup/$f" ]; then mv "$backup/$f" "$dir/$f"; else rm -f "$dir/$f"; fi
        done
        # nginx quotes what it refuses (a key's regex, say) and may name the file that includes it rather
        # than the secret file: only lines that quote nothing and name no secret file are shown.
        echo "nginx rejected the front door's files; the previous ones stay. Its messages, but those that quote a" >&2
        echo "value or name a file in $dir (withheld: they may quote a secret; run nginx -t in the container to read them):" >&2
        echo "$out" | grep -v -e '"' -e "'" -e "$dir" | sed 's/^/  /' >&2 || true
        exit 1
    fi
    if [ "$mode" = off ]; then
        # A private key left behind outlives the TLS it was for: it goes (with the backup folder, at exit)
        # as soon as nginx's config does without it. A config that still listens with it keeps it, until
        # the next install after the config without TLS.
        retired=""
        for f in tls.crt tls.key tls.source; do
            [ -f "$dir/$f" ] || continue
            mv "$dir/$f" "$backup/$f"
            retired="$retired $f"
        done
        if [ -n "$retired" ] && ! "$nginx_bin" -t >/dev/null 2>&1; then
            for f in $retired; do mv "$backup/$f" "$dir/$f"; done
            echo "edge: the previous TLS pair stays while nginx's config still uses it"
        fi
    fi
    "$nginx_bin" -s reload 2>/dev/null || { echo "nginx -s reload failed" >&2; exit 1; }
    describe "$mode"
    ;;
renew)
    names=${2:-}
    source=$(cat "$dir/tls.source" 2>/dev/null || true)
    [ -f "$dir/tls.crt" ] && ! lasting || exit 0
    until=$(openssl x509 -in "$dir/tls.crt" -noout -enddate 2>/dev/null | sed 's/^notAfter=//')
    if [ "$source" = provided ]; then
        echo "warning: the provided TLS certificate expires on $until: set a new tlsCertificate and tlsKey, then run \`pulumi up\`"
        exit 0
    fi
    [ "$source" = "self-signed $names" ] || exit 0
    stage=$(mktemp -d "$dir/.stage.XXXXXX")
    backup=$(mktemp -d "$dir/.backup.XXXXXX")
    trap 'rm -rf "$stage" "$backup"' EXIT
    self_signed "$stage" "$names"
    for f in tls.crt tls.key; do
        cp -p "$dir/$f" "$backup/$f"
        mv "$stage/$f" "$dir/$f"
    done
    if ! "$nginx_bin" -t >/dev/null 2>&1; then
        for f in tls.crt tls.key; do mv "$backup/$f" "$dir/$f"; done
        echo "warning: nginx refused the renewed self-signed certificate; the one that expires on $until stays"
        exit 0
    fi
    "$nginx_bin" -s reload 2>/dev/null || { echo "nginx -s reload failed" >&2; exit 1; }
    echo "the self-signed certificate, which expired on $until or would within 30 days, is renewed: clients that trust it need the new one (edge.sh certificate)"
    describe self-signed | grep '^tls:'
    ;;
certificate)
    cat "$dir/tls.crt"
    ;;
*)
    echo "edge.sh: unknown operation $op" >&2
    exit 2
    ;;
esac

# Runs inside the balancer's container (POSIX sh): which replicas are in nginx's rotation, and the config
# nginx serves, derived from the template the program rendered and that list.
#
#   rotation.sh install      template on stdin; on a fresh container, replicas that answer /health join.
#                            A replica in rotation that the new template leaves out stays in, on its
#                            server line of the installed template, until it is retired: a replacement
#                            or a scale-down drains it when its turn comes, not when the config changes
#   rotation.sh admit NAME   NAME joins the rotation
#   rotation.sh retire NAME  NAME leaves it (nginx sends it nothing new; what it serves finishes)
#   rotation.sh show         prints "in=a,b out=c"
#
# Every change renders the live config, checks it with `nginx -t` (the previous one stays if it fails)
# and reloads: new workers take the new config, old ones finish their requests. One change at a time.
set -eu
dir=${ROTATION_DIR:-/etc/nginx/vllm-nginx}
live=${ROTATION_LIVE:-/etc/nginx/conf.d/vllm-nginx.conf}
nginx_bin=${ROTATION_NGINX:-nginx}
template=$dir/template.conf
members=$dir/in
leaving=$dir/leaving
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

op=${1:?usage: rotation.sh install|admit|retire|show [NAME]}
name=${2:-}

# Replicas of the template, one "NAME ADDRESS" per line.
replicas() { sed -n 's/^# vllm-nginx:replica \([^ ]*\) \([^ ]*\)$/\1 \2/p' "$1"; }

# healthy ADDRESS [SECONDS]: /health answers 2xx within SECONDS (2 unless given).
healthy() { curl -fsS --noproxy '*' -m "${2:-2}" -o /dev/null "http://$1/health" 2>/dev/null; }

# Writes the live config for the current members and the template, then checks and reloads nginx.
render() {
    in_list="" out_list="" script=""
    for entry in $(replicas "$template" | tr ' ' '='); do
        replica=${entry%%=*}
        if grep -qx "$replica" "$members"; then
            in_list="$in_list${in_list:+,}$replica"
            script="$script s/{{down:$replica}}//; s/{{note:$replica}}//; s/{{in:$replica}}/1/;"
        else
            out_list="$out_list${out_list:+,}$replica"
            script="$script s/{{down:$replica}}/ down/; s/{{note:$replica}}/ (out of rotation)/; s/{{in:$replica}}/0/;"
        fi
    done
    sed -e "$script s/{{in}}/$in_list/; s/{{out}}/$out_list/" "$template" >"$live.next"
    [ -f "$live" ] && cp "$live" "$live.prev"
    mv "$live.next" "$live"
    if ! out=$("$nginx_bin" -t 2>&1); then
        [ -f "$live.prev" ] && mv "$live.prev" "$live"
        echo "nginx rejected the rendered config; the previous one stays:" >&2
        echo "$out" >&2
        exit 1
    fi
    "$nginx_bin" -s reload 2>/dev/null || { echo "nginx -s reload failed" >&2; exit 1; }
    echo "in=$in_list out=$out_list"
}

# carry OLD NEW: adds to template NEW the replicas of template OLD that are in rotation and that NEW leaves
# out, and lists them in $leaving: each of their lines in OLD (the comment, and every line with their
# {{down:NAME}}: the upstream's server line, the Lua balancer's peer) goes after NEW's last line of the
# same kind (the same first word), so that it lands in the same block.
carry() {
    : >"$leaving.next"
    : >"$dir/carried"
    if [ -f "$1" ] && [ -f "$members" ]; then
        replicas "$1" | while read -r replica address; do
            if grep -qx "$replica" "$members" && ! replicas "$2" | grep -q "^$replica " && healthy "$address"; then
                echo "$replica" >>"$leaving.next"
                grep -e "^# vllm-nginx:replica $replica " -e "{{down:$replica}}" "$1" >>"$dir/carried"
            fi
        done
    fi
    if [ -s "$dir/carried" ]; then
        awk '
            function kind(line,  words) { split(line, words, " "); return line ~ /^# vllm-nginx:replica / ? "comment" : words[1] }
            NR == FNR { k = kind($0); carried[k, ++n[k]] = $0; next }
            { lines[++count] = $0; if ($0 ~ /^# vllm-nginx:replica / || index($0, "{{down:") > 0) last[kind($0)] = count }
            END {
                for (i = 1; i <= count; i++) {
                    print lines[i]
                    for (k in last) if (last[k] == i) for (j = 1; j <= n[k]; j++) print carried[k, j]
                }
            }' "$dir/carried" "$2" >"$2.carry" && mv "$2.carry" "$2"
    fi
    mv "$leaving.next" "$leaving"
}

# drop NAME: takes a leaving replica's lines out of the installed template.
drop() {
    grep -F -v -e "{{down:$1}}" "$template" | grep -v "^# vllm-nginx:replica $1 " >"$template.drop" || true
    mv "$template.drop" "$template"
    grep -vx "$1" "$leaving" >"$leaving.next" || true
    mv "$leaving.next" "$leaving"
}

case $op in
install)
    cat >"$template.next"
    cp "$leaving" "$leaving.prev" 2>/dev/null || rm -f "$leaving.prev"
    carry "$template" "$template.next"
    if [ ! -f "$members" ]; then
        # A new container: replicas already serving join at once; the others when their deploy admits them.
        # All are asked at once, each given 5 s: a replica whose event loop is busy for a few seconds (a long
        # prompt's tokenizing, a loaded host) still joins, and one that hangs delays the install by 5 s, not
        # 5 s per replica. Each answer is one short line appended, so the writes do not interleave.
        : >"$members.next"
        replicas "$template.next" | {
            while read -r replica address; do
                { if healthy "$address" 5; then echo "$replica" >>"$members.next"; fi; } &
            done
            wait
        }
        mv "$members.next" "$members"
    fi
    cp "$template" "$template.prev" 2>/dev/null || true
    mv "$template.next" "$template"
    if ! render; then
        [ -f "$template.prev" ] && mv "$template.prev" "$template"
        [ -f "$leaving.prev" ] && mv "$leaving.prev" "$leaving"
        exit 1
    fi
    ;;
admit)
    [ -f "$template" ] || { echo "no config installed yet" >&2; exit 1; }
    grep -qx "$name" "$members" || echo "$name" >>"$members"
    render
    ;;
retire)
    [ -f "$template" ] || { echo "no config installed yet"; exit 0; }
    grep -vx "$name" "$members" >"$members.next" || true
    mv "$members.next" "$members"
    if [ -f "$leaving" ] && grep -qx "$name" "$leaving"; then drop "$name"; fi
    render
    ;;
show)
    [ -f "$members" ] || { echo "in= out="; exit 0; }
    echo "in=$(paste -sd, "$members") out="
    ;;
*)
    echo "rotation.sh: unknown operation $op" >&2
    exit 2
    ;;
esac

#!/bin/bash
# Proves the module also builds statically into nginx (--add-module).
#
# nginx-dev ships headers and configure only, so this fetches Debian's
# nginx source (apt-get source with an apt configuration of its own under
# build/static/apt: the machine's deb entries as deb-src, its own lists
# and cache; nothing under /etc or /var/lib/apt changes), builds nginx
# with the module compiled in under build/static/, and runs the result:
# nginx -V, and nginx -t on a configuration using ocdz directives
# without load_module.
#
#   .ci/static-build.sh            (as root on Debian 12)
#   NGINX_SRC_DIR=/path/to/nginx-1.x .ci/static-build.sh   (own source)
#   STATIC_REUSE=1 .ci/static-build.sh    (skip the build if already made)

set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=$REPO/build/static
JOBS=${JOBS:-2}
APT_DIR=$OUT/apt

t0=$(date +%s)
stage() { echo "== $* ($(( $(date +%s) - t0 )) s)"; }

mkdir -p "$OUT"

# what building nginx needs (installs missing packages only, as make deps)
.ci/install-deps dpkg-dev gcc make libpcre2-dev zlib1g-dev libssl-dev \
    libcurl4-openssl-dev libyajl-dev libpq-dev pkg-config curl

# --- the nginx source ------------------------------------------------------

# apt with private sources, lists and cache: the host's own are read,
# never written
apt_private() {
    local cmd=$1
    shift
    "$cmd" -o Dir::Etc::SourceList="$APT_DIR/sources.list" \
           -o Dir::Etc::SourceParts="$APT_DIR/sources.list.d" \
           -o Dir::State::Lists="$APT_DIR/lists" \
           -o Dir::Cache="$APT_DIR/cache" \
           -o APT::Sandbox::User=root \
           "$@"
}

# deb-src entries for every deb entry of the machine (one-line and deb822)
private_sources() {
    local f
    rm -rf "$APT_DIR"
    mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/lists/partial" \
             "$APT_DIR/cache/archives/partial"
    if [ -f /etc/apt/sources.list ]; then
        sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' \
            /etc/apt/sources.list >"$APT_DIR/sources.list"
    else
        : >"$APT_DIR/sources.list"
    fi
    for f in /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" \
            >"$APT_DIR/sources.list.d/$(basename "$f")"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        sed 's/^Types:.*/Types: deb-src/' "$f" \
            >"$APT_DIR/sources.list.d/$(basename "$f")"
    done
}

fetch_source() {
    local v
    private_sources
    # a third-party repository without sources fails alone
    apt_private apt-get update -qq || true

    cd "$OUT/src"
    # the newest first; a mirror may lack the newest .dsc (security
    # updates): then try the older versions apt knows
    if ! apt_private apt-get source -qq nginx >apt-source.log 2>&1; then
        for v in $(apt_private apt-cache showsrc nginx \
                   | sed -n 's/^Version: //p' | sort -rV); do
            echo "apt-get source nginx failed, trying nginx=$v"
            if apt_private apt-get source -qq "nginx=$v" \
                   >>apt-source.log 2>&1; then
                break
            fi
        done
    fi
    cd "$REPO"
}

newest_source() {
    ls -d "$OUT"/src/nginx-[0-9]*/ 2>/dev/null | sort -V | tail -1 || true
}

if [ -n "${NGINX_SRC_DIR:-}" ]; then
    SRC=$NGINX_SRC_DIR
else
    SRC=$(newest_source)
    if [ -z "$SRC" ]; then
        stage "fetching the nginx source (apt-get source nginx)"
        mkdir -p "$OUT/src"
        fetch_source
        SRC=$(newest_source)
    fi
    if [ -z "$SRC" ]; then
        echo "static-build: no nginx source (see $OUT/src/apt-source.log)" >&2
        exit 1
    fi
fi
SRC=${SRC%/}
stage "nginx source: $SRC"

# --- configure and build ---------------------------------------------------

NGX=$OUT/objs/nginx

if [ "${STATIC_REUSE:-0}" = 1 ] && [ -x "$NGX" ]; then
    stage "reusing $NGX (STATIC_REUSE=1)"
else

cd "$SRC"
./configure \
    --builddir="$OUT/objs" \
    --prefix="$OUT/run" \
    --with-compat \
    --with-debug \
    --with-http_ssl_module \
    --with-http_v2_module \
    --with-http_auth_request_module \
    --with-http_realip_module \
    --with-pcre \
    --with-cc-opt="-g -O2" \
    --add-module="$REPO" \
    >"$OUT/configure.log" 2>&1 \
    || { tail -30 "$OUT/configure.log"; exit 1; }
stage "configured"

make -s -f "$OUT/objs/Makefile" -j"$JOBS" >"$OUT/make.log" 2>&1 \
    || { tail -40 "$OUT/make.log"; exit 1; }
cd "$REPO"
stage "built $NGX"

fi

# --- run it ----------------------------------------------------------------

"$NGX" -V 2>&1 | tee "$OUT/nginx-V.txt"
grep -q -- "--add-module=$REPO" "$OUT/nginx-V.txt"

RUN=$OUT/run
PORT=$(( 20000 + RANDOM % 20000 ))
rm -rf "$RUN"
mkdir -p "$RUN/logs" "$RUN/conf" "$RUN/tmp"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/conf/k1.key"
chmod 600 "$RUN/conf/k1.key"

cat >"$RUN/conf/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
error_log $RUN/logs/error.log info;
pid $RUN/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $RUN/tmp/body;
    proxy_temp_path $RUN/tmp/proxy;
    fastcgi_temp_path $RUN/tmp/fastcgi;
    uwsgi_temp_path $RUN/tmp/uwsgi;
    scgi_temp_path $RUN/tmp/scgi;

    ocdz_db "host=127.0.0.1 port=5432 dbname=postgres user=ocdz_module";
    ocdz_db_pool_size 2;
    ocdz_card_key k1 $RUN/conf/k1.key;
    ocdz_poller off;

    server {
        listen 127.0.0.1:$PORT;
        location ~ "^/card/([0-9a-f]{24})\$" {
            ocdz_card \$1;
        }
    }
}
EOF

"$NGX" -t -p "$RUN/" -c "$RUN/conf/nginx.conf" -e "$RUN/logs/error.log"

# and the directives are really the module's: unknown ones are refused
sed 's/ocdz_poller off;/ocdz_no_such_directive on;/' "$RUN/conf/nginx.conf" \
    >"$RUN/conf/bad.conf"
if "$NGX" -t -p "$RUN/" -c "$RUN/conf/bad.conf" -e "$RUN/logs/bad.log" \
       2>"$RUN/bad.out"; then
    echo "static-build: an unknown ocdz directive was accepted" >&2
    exit 1
fi
grep -q 'unknown directive "ocdz_no_such_directive"' "$RUN/bad.out"

# and it runs: workers start with the module's process hooks, answer,
# and exit on QUIT without an alert
"$NGX" -p "$RUN/" -c "$RUN/conf/nginx.conf" -e "$RUN/logs/error.log" &
NGX_PID=$!
trap 'kill -TERM $NGX_PID 2>/dev/null || true' EXIT
code=000
for _ in $(seq 1 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' \
           "http://127.0.0.1:$PORT/nothing" || true)
    [ "$code" != 000 ] && break
    sleep 0.1
done
kill -QUIT "$NGX_PID"
wait "$NGX_PID"
trap - EXIT
if [ "$code" != 404 ]; then
    echo "static-build: expected 404 from the static nginx, got $code" >&2
    exit 1
fi
if grep -E '\[(alert|crit|emerg)\]' "$RUN/logs/error.log"; then
    echo "static-build: alerts in $RUN/logs/error.log" >&2
    exit 1
fi

stage "static build OK"

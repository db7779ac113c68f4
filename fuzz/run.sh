#!/bin/bash
#
# Builds every fuzz/fuzz_*.c with libFuzzer, ASan and UBSan against the
# pure C cores and runs each for the given number of seconds on a copy
# of its seed corpus (fuzz/corpus/<name> -> build/fuzz/corpus-<name>),
# so the repository's corpus stays as committed.
#
#   fuzz/run.sh [SECONDS]        default 60
#
# Prints one line per target, then "fuzz: N passed, M failed"; exits 1
# when a target does not build or finds a crash, leak, timeout or OOM.
# Crash inputs land in build/fuzz/<name>-crash-*, logs in
# build/fuzz/fuzz_<name>.log.

set -u

secs=${1:-60}
case $secs in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

top=$(cd "$(dirname "$0")/.." && pwd)
out=${BUILD:-$top/build}/fuzz
cc=${FUZZ_CC:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
    cc=clang-14
fi

cflags="-g -O1 -fsanitize=fuzzer,address,undefined"
cflags="$cflags -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cflags="$cflags -Wall -Wextra -Wno-unused-parameter -I$top/src/core"
cflags="$cflags -I$top/t/unit"
cflags="$cflags $(pkg-config --cflags yajl libcrypto)"
libs="$(pkg-config --libs yajl libcrypto)"

mkdir -p "$out/obj"

# the cores once, as objects every target links (whichever exist yet)
objs=()
cores_ok=1

for src in ocdz_crypto ocdz_upstream ocdz_jwt ocdz_instructions \
           ocdz_session ocdz_text ocdz_transition ocdz_buf \
           ocdz_template ocdz_mail ocdz_sms ocdz_webhook \
           ocdz_metrics ocdz_alarm; do
    [ -f "$top/src/core/$src.c" ] || continue

    # -fsanitize=fuzzer-no-link: coverage without a second main()
    if "$cc" ${cflags/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,} \
            -c "$top/src/core/$src.c" -o "$out/obj/$src.o" \
            2>"$out/obj/$src.log"
    then
        objs+=("$out/obj/$src.o")
    else
        echo "core $src: does not build (see $out/obj/$src.log)"
        cores_ok=0
    fi
done

# JSON and field-name tokens: they get a fuzzer past the shallow refusals
write_dict() {
    local name=$1 dict=$2

    {
        printf '%s\n' '"{"' '"}"' '"["' '"]"' '":"' '","' '"\""' \
            '"null"' '"true"' '"false"' '"-1"' '"0"' '"1e999"' '"0.5"' \
            '"\\u0000"' '"\\u0041"' '"\\ud83d\\udcb3"' '"\\\""'

        case $name in
            upstream|transition)
                printf '"\\"%s\\""\n' success data error message \
                    statusCode _id ref status type number topup_amount \
                    card_code num_trans date_traitement created_at \
                    refund_message code details meta requestId \
                    FULFILLED PENDING HANDLING QUEUED UNKNOWN_ERROR \
                    REFUNDED NOT_FOUND not-found RATE_LIMIT_EXCEEDED \
                    690161a3e9e88196b4eb6545 690161A3E9E88196B4EB6545
                ;;
            jwt)
                printf '"%s"\n' '\x0A' '.' '0' '1' '2' 'eyJ' \
                    'eyJhbGciOiJIUzI1NiJ9'
                printf '"\\"%s\\""\n' alg typ crit kid HS256 none \
                    exp nbf iat sub uid JWT
                printf '"%s"\n' 1761703600 1761690000 9999999999
                ;;
            instructions)
                printf '"\\"%s\\""\n' ADSL 4G 4GLTE en fr ar title \
                    steps support
                printf '"%s"\n' ';q=' 'q=0' 'q=1' 'fr-DZ' '*' 'ar' 'en'
                ;;
            template|mail)
                printf '"{%s}"\n' type number value card_code num_trans \
                    date topup_id shop notice instructions_title \
                    instructions_steps support to message sender \
                    idempotency_key unicode
                printf '"%s"\n' '{{' '}}' '\x00' '\x0D\x0A' '<' '&' \
                    '\xC3\xA9' '\xD8\xA8' '\xF0\x9F\x98\x80' '=?' \
                    '@' 'a@b.example' '.' 'From ' '=_ocdz_'
                ;;
            sms)
                printf '"%s"\n' '\xE2\x82\xAC' '^' '{' '[' '\x0C' '`' \
                    '\xC3\xA7' '\xC3\xA9' '\xD8\xA8' \
                    '\xF0\x9F\x98\x80' '\xCE\x94' 'id' 'data' \
                    'messages' 'message-id'
                ;;
            webhook)
                printf '"%s"\n' 't=' 'v1=' ',' 't=1761700000' \
                    'email' 'sms' '690161a3e9e88196b4eb6545'
                ;;
            session)
                printf '"%s"\n' 'ocdz_session=' 'Bearer ' 'bearer ' '; ' \
                    '\x09' '\x0A' '=' ';q=' 'fr' 'ar' 'en' \
                    'eyJhbGciOiJIUzI1NiJ9.' 'AAAAAAAAAAAAAAAA' \
                    '0123456789abcdef01234567'
                ;;
        esac
    } >"$dict"
}

passed=0
failed=0

for target in "$top"/fuzz/fuzz_*.c; do
    [ -f "$target" ] || continue

    base=$(basename "$target" .c)
    name=${base#fuzz_}
    bin=$out/$base
    log=$out/$base.log
    corpus=$out/corpus-$name

    if [ $cores_ok = 0 ] \
       || ! "$cc" $cflags "$target" "${objs[@]}" -o "$bin" $libs \
            >"$log" 2>&1
    then
        echo "$base: FAILED to build (see $log)"
        failed=$((failed + 1))
        continue
    fi

    rm -rf "$corpus"
    mkdir -p "$corpus"

    if [ -d "$top/fuzz/corpus/$name" ]; then
        cp -R "$top/fuzz/corpus/$name/." "$corpus/"
    fi

    case $name in
        upstream|transition) max_len=16384 ;;
        jwt)            max_len=6000 ;;
        *)              max_len=8192 ;;
    esac

    rm -f "$out/$name"-crash-* "$out/$name"-leak-* "$out/$name"-timeout-* \
          "$out/$name"-oom-*

    write_dict "$name" "$out/$name.dict"

    "$bin" "$corpus" -dict="$out/$name.dict" \
        -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 \
        -artifact_prefix="$out/$name-" >"$log" 2>&1
    rc=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)

    if [ $rc = 0 ]; then
        n=$(ls "$corpus" | wc -l)
        echo "$base: ok (${runs:-?} runs in ${secs}s, corpus $n inputs)"
        passed=$((passed + 1))
    else
        artifact=$(ls "$out/$name"-crash-* "$out/$name"-leak-* \
                      "$out/$name"-timeout-* "$out/$name"-oom-* \
                      2>/dev/null | head -1)
        reason=$(grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' \
                 "$log" | cut -c1-120)
        echo "$base: FAILED rc=$rc ${reason:+($reason)}" \
             "${artifact:+input $artifact} log $log"
        failed=$((failed + 1))
    fi
done

echo "fuzz: $passed passed, $failed failed"

[ $failed = 0 ]

package Ocdz::Card;

# Helpers for the card endpoint tests (t/10-19): an nginx configuration
# with card locations, orders with stored cards (through ocdz-card or
# the OneClickDz guide's recipes, made by a small C program compiled
# here), requests to the endpoint, and the secret hygiene checks every
# test file ends with.
#
#   use Ocdz::Card qw(:all);
#   my $env = card_env();                # pg, dir, key k1, tool conninfo
#   my $ngx = card_nginx($env, loc => 'ocdz_session db;');
#   my ($id, $code) = new_card($env, user => 'u1');
#   my $tok = $env->{pg}->add_session(random_token(), 'u1');
#   my ($s, $h, $j, $raw) = card_get($ngx, $id, token => $tok);
#   hygiene($env, $ngx);                 # codes never leaked anywhere

use v5.36;
use Carp qw(croak);
use Exporter qw(import);
use Test::More ();
use Test2::API ();
use Time::HiRes qw(time);
use Ocdz::Test qw(:all);
use Ocdz::Test::Env qw(PG_BIN);
use Ocdz::Test::HTTP qw(parse_response);

our @EXPORT_OK = qw(
    card_env card_nginx card_conf card_get card_path tool tool_store
    tool_encrypt new_order new_card fulfil legacy_record legacy_helper
    db_dump hygiene audit_events header_without_date card_reload add_key
    audit_test_hook raw_answer slow_location
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# A PostgreSQL cluster (options passed to Ocdz::Test::Pg->start), a
# directory and a key "k1". Returns a hash: pg, dir, keys {id => file},
# hex {id => hex}, codes [every card code handed out, for hygiene],
# db (the tool's conninfo: superuser).
sub card_env (%o) {
    my $pg = Ocdz::Test::Pg->start(%{ $o{pg} // {} });
    my $dir = tmpdir();
    my $env = { pg => $pg, dir => $dir, keys => {}, hex => {}, codes => [],
                db => $pg->conninfo(user => 'postgres') };
    add_key($env, 'k1');
    return $env;
}

sub add_key ($env, $id, $file = undef) {
    $file //= "$env->{dir}/$id.key";
    $env->{hex}{$id} = write_key_file($file);
    $env->{keys}{$id} = $file;
    return $file;
}

# The http block. Options:
#   keys => 'ocdz_card_key ...;' lines (default: k1 current)
#   http => more http-level directives
#   server => more server-level directives (locations)
#   loc => directives of the main card location (default ocdz_session db;)
#   db => the conninfo (default %%PGCONNINFO%%)
#   db_conf => the ocdz_db_*timeout lines (default: 5s, 10s, 9s)
# The main card location is /api/internet-orders/<id>/card.
sub card_conf (%o) {
    my $keys = $o{keys} // 'ocdz_card_key k1 %%DIR%%/k1.key current;';
    my $db = $o{db} // '%%PGCONNINFO%%';
    my $loc = $o{loc} // 'ocdz_session db;';
    $o{$_} //= '' for qw(http server);
    # generous: the machine is shared
    $o{db_conf} //= 'ocdz_db_connect_timeout 5s; ocdz_db_query_timeout 10s;'
                  . ' ocdz_db_statement_timeout 9s;';
    return <<"EOF";
http {
    ocdz_db "$db";
    $keys
    $o{db_conf}
    $o{http}
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ "^/api/internet-orders/([0-9a-f]{24})/card\$" {
            ocdz_card \$1;
            $loc
        }
        $o{server}
        location / { return 404; }
    }
}
EOF
}

# A started nginx for the env; options of card_conf plus nginx => {...}
# (options of Ocdz::Test::Nginx->new) and start => 0.
sub card_nginx ($env, %o) {
    my %n = %{ delete $o{nginx} // {} };
    my $start = delete $o{start} // 1;
    my $ngx = Ocdz::Test::Nginx->new(pg => $env->{pg},
        vars => { DIR => $env->{dir}, %{ delete $n{vars} // {} } },
        conf => card_conf(%o), %n);
    $ngx->start if $start;
    push @{ $env->{nginx} }, $ngx;
    return $ngx;
}

# A new configuration: a reload (HUP) with a master process; under
# valgrind (one process, no master) a stop and a start. Options of
# card_conf, or conf => TEXT. Returns true when the new configuration
# runs.
sub card_reload ($ngx, %o) {
    my $conf = delete $o{conf} // card_conf(%o);
    return $ngx->reload(conf => $conf, timeout => 20) unless single_process();
    $ngx->quit;
    $ngx->write_conf($conf);
    return $ngx->start(may_fail => 1);
}

# A card location at /slow/<id>/card (for card_conf's server) whose
# session statement first sleeps $secs seconds in the database: a slow
# or hanging statement on demand, found in pg_stat_activity by its
# "pg_sleep($secs)".
sub slow_location ($secs) {
    return <<"EOF";
        location ~ "^/slow/([0-9a-f]{24})/card\$" {
            ocdz_card \$1;
            ocdz_session_query "SELECT user_id FROM ocdz.sessions, pg_sleep($secs)
                WHERE token_hash = sha256(\$1::bytea)";
        }
EOF
}

sub card_path ($id, $prefix = '/api/internet-orders') {
    return "$prefix/$id/card";
}

# GET (or method => ...) the card of $id. Options: token (Bearer),
# cookie (a Cookie header value), prefix (location), query ('lang=fr'),
# headers {..}, plus any option of Ocdz::Test::Nginx's http.
# Returns (status, headers, json or undef, raw body).
sub card_get ($ngx, $id, %o) {
    my $method = delete $o{method} // 'GET';
    my %h = %{ delete $o{headers} // {} };
    my $tok = delete $o{token};
    my $cookie = delete $o{cookie};
    $h{Authorization} = "Bearer $tok" if defined $tok;
    $h{Cookie} = $cookie if defined $cookie;
    my $path = card_path($id, delete $o{prefix} // '/api/internet-orders');
    my $q = delete $o{query};
    $path .= "?$q" if defined $q;
    my @answer = $ngx->http_json($method, $path, headers => \%h,
                                 timeout => 20 * slow_factor(), %o);
    _contract_check($method, @answer);
    return @answer;
}

# --- the API contract -----------------------------------------------------

# Every answer card_get receives from the module is checked against
# doc/openapi.json; one assertion per test file, when its tests are
# done, says how many were checked and lists what did not match.
# Answers that are not the module's (nginx's own HTML errors, methods
# the document cannot describe) are not checked.
my %CONTRACT = (checked => 0, problems => []);

sub _contract_check ($method, $status, $h, $json, $raw) {
    return if $ENV{OCDZ_NO_CONTRACT} || !$status;
    return unless ($h->{'content-type'} // '') =~ m{^application/json}
               || $method eq 'OPTIONS' && $status == 204;
    return unless $method =~ /^(?:GET|HEAD|OPTIONS|POST|PUT|PATCH|DELETE)$/;
    require Ocdz::OpenAPI;
    my $api = Ocdz::OpenAPI->shared or return;
    return if $api->{owner} != $$;    # a forked load client
    my @p = $api->problems($method,
        { template => '/api/internet-orders/{topupId}/card' },
        $status, $h, $raw);
    $CONTRACT{checked}++;
    push @{ $CONTRACT{problems} }, map { "$method $status: $_" } @p;
}

Test2::API::test2_add_callback_testing_done(sub {
    return unless $CONTRACT{checked};
    my @p = @{ $CONTRACT{problems} };
    my $ctx = Test2::API::context();
    $ctx->ok(!@p, "every card answer ($CONTRACT{checked}) is as "
                  . 'doc/openapi.json says', [ @p > 20 ? @p[0 .. 19] : @p ]);
    $ctx->release;
});

# --- the card tool --------------------------------------------------------

# Runs ocdz-card; returns (exit code, stdout, stderr).
sub tool ($args, %o) {
    return run_cmd([tool_path(), @$args], timeout => 60, %o);
}

sub _key_args ($env, $keys) {
    $keys //= ['k1:current'];
    my @a;
    for my $k (@$keys) {
        my ($id, $cur) = split /:/, $k;
        croak "no key $id" unless $env->{keys}{$id};
        push @a, '-k', "$id:$env->{keys}{$id}" . ($cur ? ':current' : '');
    }
    return @a;
}

# ocdz-card store; keys => ['k1:current', 'k0'], force => 1.
sub tool_store ($env, $id, $code, %o) {
    return tool(['store', _key_args($env, $o{keys}), '--db', $env->{db},
                 '--topup-id', $id, $o{force} ? '--force' : ()],
                stdin => "$code\n");
}

# ocdz-card encrypt: the record (dies on failure).
sub tool_encrypt ($env, $id, $code, %o) {
    my ($rc, $out, $err) = tool(['encrypt', _key_args($env, $o{keys}),
                                 '--topup-id', $id], stdin => "$code\n");
    croak "ocdz-card encrypt failed ($rc): $err" if $rc;
    chomp $out;
    return $out;
}

# --- orders -----------------------------------------------------------------

# An order (Ocdz::Test::Pg::insert_order fields); returns its id.
sub new_order ($env, %f) {
    return $env->{pg}->insert_order(%f);
}

# Marks an order FULFILLED with num_trans and date_traitement.
sub fulfil ($env, $id, %f) {
    my $trans = $f{num_trans} // 'AT-' . random_hex(4);
    my $date = $f{date} // '2025-10-29T01:05:30.000Z';
    $env->{pg}->psql(sprintf "UPDATE ocdz.orders SET status = 'FULFILLED', "
        . "num_trans = %s, date_traitement = %s, fulfilled_at = now() "
        . "WHERE topup_id = %s", sql_quote($trans), sql_quote($date),
        sql_quote($id));
    return $trans;
}

# A fulfilled order with a card stored by the tool (or with record =>
# CODE_TO_RECORD sub, or store => 0 for none). Options: user, type,
# number, value, keys (tool keys), code. Returns (id, code, num_trans).
sub new_card ($env, %o) {
    my $code = $o{code} // random_card_code();
    push @{ $env->{codes} }, $code;
    my $id = new_order($env, user_id => $o{user} // 'u1',
                       type => $o{type} // 'ADSL',
                       number => $o{number} // '036362608',
                       value => $o{value} // 1000);
    my $trans = fulfil($env, $id);
    if ($o{record}) {
        my $rec = $o{record}->($id, $code);
        $env->{pg}->psql('UPDATE ocdz.orders SET card_enc = '
            . sql_quote($rec) . ' WHERE topup_id = ' . sql_quote($id));
    } elsif ($o{store} // 1) {
        my ($rc, $out, $err) = tool_store($env, $id, $code,
                                          keys => $o{keys});
        croak "ocdz-card store failed ($rc): $err$out" if $rc;
    }
    return ($id, $code, $trans);
}

# --- the guide's recipes ------------------------------------------------------

# A C program doing exactly what the OneClickDz guide's recipes do, with
# OpenSSL EVP:
#   node   random 16-byte IV; {"iv":hex,"encryptedData":hex,"authTag":hex}
#          (JSON.stringify: no spaces)
#   python random 12-byte nonce; {"nonce": b64, "encryptedData": b64(ct||tag)}
#          (json.dumps: ", " and ": ")
#   php    openssl_cipher_iv_length("aes-256-gcm") = 12-byte IV, hex
#          fields as Node, json_encode order iv, encryptedData, authTag
# argv: MODE KEYHEX [TAGLEN]; the code on standard input.
my $HELPER_C = <<'EOF';
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static void hex(const unsigned char *p, size_t n, char *out) {
    size_t i;
    for (i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = '\0';
}

int main(int argc, char **argv) {
    unsigned char key[32], iv[16], in[1024], ct[1100], tag[16], both[1200];
    char h1[64], h2[2300], h3[64], b1[64], b2[1700];
    size_t ivlen, n, i;
    int len, fin, taglen;
    unsigned int b;
    EVP_CIPHER_CTX *ctx;

    if (argc < 3 || strlen(argv[2]) != 64) return 2;
    for (i = 0; i < 32; i++) { sscanf(argv[2] + 2 * i, "%2x", &b); key[i] = b; }
    taglen = argc > 3 ? atoi(argv[3]) : 16;
    n = fread(in, 1, sizeof(in), stdin);
    while (n && (in[n - 1] == '\n' || in[n - 1] == '\r')) n--;
    ivlen = strcmp(argv[1], "node") == 0 ? 16 : 12;
    if (RAND_bytes(iv, (int) ivlen) != 1) return 1;
    ctx = EVP_CIPHER_CTX_new();
    if (!EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL)
        || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int) ivlen, NULL)
        || !EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv)
        || !EVP_EncryptUpdate(ctx, ct, &len, in, (int) n)
        || !EVP_EncryptFinal_ex(ctx, ct + len, &fin)
        || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, taglen, tag))
        return 1;
    len += fin;
    EVP_CIPHER_CTX_free(ctx);
    memset(in, 0, sizeof(in));
    if (strcmp(argv[1], "python") == 0) {
        memcpy(both, ct, len);
        memcpy(both + len, tag, taglen);
        EVP_EncodeBlock((unsigned char *) b1, iv, (int) ivlen);
        EVP_EncodeBlock((unsigned char *) b2, both, len + taglen);
        printf("{\"nonce\": \"%s\", \"encryptedData\": \"%s\"}", b1, b2);
        return 0;
    }
    hex(iv, ivlen, h1);
    hex(ct, len, h2);
    hex(tag, taglen, h3);
    printf("{\"iv\":\"%s\",\"encryptedData\":\"%s\",\"authTag\":\"%s\"}",
           h1, h2, h3);
    return 0;
}
EOF

sub legacy_helper {
    state $bin;
    return $bin if $bin;
    my $d = tmpdir();
    write_file("$d/recipe.c", $HELPER_C);
    my ($rc, $out, $err) = run_cmd(['cc', '-O1', '-Wall', '-o',
        "$d/recipe", "$d/recipe.c", '-lcrypto']);
    croak "cannot compile the recipe helper: $err$out" if $rc;
    $bin = "$d/recipe";
    return $bin;
}

# A record made by a guide recipe ('node', 'python', 'php') under a key
# given as hex; taglen => 4 for a shortened tag.
sub legacy_record ($mode, $keyhex, $code, %o) {
    my ($rc, $out, $err) = run_cmd([legacy_helper(), $mode, $keyhex,
                                    $o{taglen} // 16], stdin => "$code\n");
    croak "recipe helper failed ($rc): $err" if $rc;
    return $out;
}

# Audit rows a test steers by User-Agent (a trigger): "poison" is
# refused, so the statement that writes it fails; "slow-S..." makes that
# statement sleep S seconds first.
sub audit_test_hook ($pg) {
    $pg->psql(<<'EOF');
CREATE FUNCTION ocdz.test_hook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_agent = 'poison' THEN
        RAISE EXCEPTION 'refused by the test';
    END IF;
    IF NEW.user_agent LIKE 'slow-%' THEN
        PERFORM pg_sleep(substring(NEW.user_agent
                                   FROM '^slow-([0-9.]+)')::numeric);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_hook BEFORE INSERT ON ocdz.audit
    FOR EACH ROW EXECUTE FUNCTION ocdz.test_hook();
EOF
}

# Reads a raw socket's whole answer (the request said Connection: close),
# waiting at most $secs (times the slow factor); closes it. Returns
# the parsed response (Ocdz::Test::HTTP::parse_response).
sub raw_answer ($s, $method, $secs) {
    my ($resp, $buf) = ('');
    local $SIG{ALRM} = sub { die "no answer within $secs s\n" };
    alarm $secs * slow_factor();
    $resp .= $buf while sysread $s, $buf, 65536;
    alarm 0;
    close $s;
    return parse_response($resp, $method);
}

# --- checks -------------------------------------------------------------------

# Every row of every table of the database, as text (pg_dump, data only).
sub db_dump ($pg) {
    my ($rc, $out, $err) = run_cmd([PG_BIN . '/pg_dump',
        '-h', $pg->socket_dir, '-p', $pg->port, '-U', 'postgres',
        '--data-only', '--no-owner', 'postgres'], timeout => 60);
    croak "pg_dump failed: $err" if $rc;
    return $out;
}

# Events of the audit rows of an order, in order.
sub audit_events ($env, $id) {
    return map { $_->{event} } $env->{pg}->audit($id);
}

# The raw response's header block without the Date line, and the body:
# what two answers must share to be "byte-identical".
sub header_without_date ($raw) {
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    $head = join "\r\n", grep { !/^Date:/i } split /\r\n/, $head;
    return "$head\r\n\r\n" . ($body // '');
}

# The codes handed out never appear (raw, hex, base64) in the error logs
# (debug level), access logs, PostgreSQL's log, or any table. Extra
# codes may be given.
sub hygiene ($env, @extra) {
    my @codes = (@{ $env->{codes} }, @extra);
    my $i = 0;
    for my $ngx (@{ $env->{nginx} // [] }) {
        $i++;
        assert_no_secret("error log of nginx $i",
                         $ngx->error_log . $ngx->stderr_log, @codes);
        my $acc = '';
        opendir my $dh, $ngx->prefix . '/logs';
        for my $f (grep { /\.log$/ && !/^error|^stderr/ } readdir $dh) {
            $acc .= slurp($ngx->prefix . "/logs/$f");
        }
        assert_no_secret("access logs of nginx $i", $acc, @codes);
    }
    assert_no_secret('PostgreSQL log', $env->{pg}->log_content, @codes);
    assert_no_secret('database tables', db_dump($env->{pg}), @codes);
}

1;

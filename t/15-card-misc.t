# The card endpoint's edges: ocdz_https_only and trusted proxies (and a
# real TLS listener), top-up ids that are not 24 hex digits (400, no
# query), limit_req, pipelined and abandoned requests, odd requests, and
# reloads (a refused one included) that keep the statements right.

use v5.36;
use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();

my $env = card_env();
my $pg = $env->{pg};
my $pki = pki();
my $tok = $pg->add_session(random_token(), 'u1');
my ($id, $code) = new_card($env);

my %conf = (
    http => <<'EOF',
    limit_req_zone $binary_remote_addr zone=cards:1m rate=1r/m;
    ssl_certificate %%CERT%%;
    ssl_certificate_key %%KEY%%;
EOF
    server => <<'EOF' . slow_location(1),
        listen 127.0.0.1:%%PORT2%% ssl;
        location ~ "^/secure/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_https_only on;
            ocdz_trusted_proxies 127.0.0.1/32;
        }
        location ~ "^/secure2/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_https_only on;
            ocdz_trusted_proxies 10.0.0.0/8 ::1;
        }
        location ~ "^/secure3/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_https_only on;
        }
        location ~ "^/x/(.*)/card$" {
            ocdz_card $1;
        }
        location /q/ {
            ocdz_card $arg_id;
        }
        location ~ "^/limited/([0-9a-f]{24})/card$" {
            limit_req zone=cards burst=2 nodelay;
            limit_req_status 429;
            ocdz_card $1;
        }
        location ~ "^/guarded/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session_cookie guarded;
            limit_except GET { deny all; }
            if ($http_x_flag) {
                set $flagged 1;
            }
            if ($http_x_teapot) {
                return 418;
            }
        }
EOF
);
my $ngx = card_nginx($env, %conf, nginx => { ports => 2,
    vars => { CERT => $pki->{server_cert}, KEY => $pki->{server_key} } });

sub audit_count () { $pg->value('SELECT count(*) FROM ocdz.audit') }

sub get ($prefix, $id, %o) {
    my ($s, $h, $j, $raw) = card_get($ngx, $id, prefix => $prefix,
                                     token => $tok, %o);
    return ($s, $h, $j, $raw);
}

# --- HTTPS only --------------------------------------------------------------

{
    my $before = audit_count();
    for my $p ('/secure', '/secure2', '/secure3') {
        my ($s, $h, $j) = get($p, $id);
        is($s, 403, "$p over plain HTTP: 403");
        is($j && $j->{error}, 'HTTPS_REQUIRED', "$p: HTTPS_REQUIRED");
        is($h->{'cache-control'}, 'no-store', "$p 403: no-store");
        like($h->{vary} // '', qr/Accept-Language/, "$p 403: Vary");
        ok(!exists $j->{cardCode}, "$p 403: no card");
        ($s) = get($p, $id, token => undef);
        is($s, 403, "$p over plain HTTP without a session: 403 first");
    }
    is(audit_count(), $before, '403s are not audited');

    my ($s, $h, $j) = get('/secure', $id,
                          headers => { 'X-Forwarded-Proto' => 'https' });
    is($s, 200, 'X-Forwarded-Proto: https from a trusted proxy: 200');
    is($j && $j->{cardCode}, $code, 'trusted proxy: the card');
    ($s) = get('/secure', $id, headers => { 'X-Forwarded-Proto' => 'HTTPS' });
    is($s, 200, 'X-Forwarded-Proto: HTTPS (any case): 200');
    for my $v ('http', 'https, http', 'httpsx', '') {
        ($s) = get('/secure', $id, headers => { 'X-Forwarded-Proto' => $v });
        is($s, 403, "X-Forwarded-Proto: '$v' from a trusted proxy: 403");
    }
    ($s) = get('/secure2', $id, headers => { 'X-Forwarded-Proto' => 'https' });
    is($s, 403, 'X-Forwarded-Proto: https from an untrusted client: 403');
    ($s) = get('/secure3', $id, headers => { 'X-Forwarded-Proto' => 'https' });
    is($s, 403, 'X-Forwarded-Proto: https without trusted proxies: 403');

    for my $p ('/secure', '/secure2', '/secure3') {
        ($s, $h, $j) = get($p, $id, tls => 1, port => $ngx->port(2));
        is($s, 200, "$p over TLS: 200");
        is($j && $j->{cardCode}, $code, "$p over TLS: the card");
        is($h->{'cache-control'}, 'no-store', "$p over TLS: no-store");
    }
    my ($cs, $ch, $cb) = curl_https('https://127.0.0.1:' . $ngx->port(2)
        . card_path($id, '/secure3'),
        headers => { Authorization => "Bearer $tok" });
    is($cs, 200, 'curl over verified TLS: 200');
    is(json_decode($cb)->{cardCode}, $code, 'curl over TLS: the card');
    ($s) = get('/api/internet-orders', $id, tls => 1, port => $ngx->port(2));
    is($s, 200, 'a location without https_only over TLS: 200');
}

# --- top-up ids that are not 24 hex digits: 400, no query --------------------

{
    my $before = audit_count();
    my $mark = $pg->log_mark;
    my @bad = (
        ["SQL", "%27%20OR%20%271%27=%271", "' OR '1'='1"],
        ['SQL after an id', "$id%27--", "$id'--"],
        ['SQL with ;', "$id;DROP%20TABLE%20ocdz.orders",
         'DROP TABLE ocdz.orders'],
        ['UNION', "$id%20UNION%20SELECT%20card_enc%20FROM%20ocdz.orders",
         'UNION SELECT'],
        ['25 hex digits', $id . 'a', $id . 'a'],
        ['23 hex digits', substr($id, 1), undef],
        ['4000 hex digits', 'ab' x 2000, 'ab' x 100],
        ['not hex', 'g' x 24, 'g' x 24],
        ['spaces', '%20' x 24, undef],
        ['tab', substr($id, 2) . '%09%09', undef],
        ['UTF-8', substr($id, 2) . '%C3%A9', undef],
        ['slashes', substr($id, 1) . '%2F', undef],
        ['percent', '%25' x 24, undef],
    );
    for my $b (@bad) {
        my ($what, $path, $needle) = @$b;
        my $r = $ngx->http('GET', "/x/$path/card",
                           headers => { Authorization => "Bearer $tok" });
        my $j = json_decode($r->{body});
        is($r->{status}, 400, "$what: 400");
        is($j && $j->{error}, 'INVALID_TOPUP_ID', "$what: INVALID_TOPUP_ID");
        is($r->{headers}{'cache-control'}, 'no-store', "$what: no-store");
    }
    for my $q ("%27%20OR%201=1", 'x' x 3000, "$id%00", "${id}0") {
        my $r = $ngx->http('GET', "/q/?id=$q",
                           headers => { Authorization => "Bearer $tok" });
        is($r->{status}, 400, 'id from $arg_id: ' . substr($q, 0, 20)
                              . ': 400');
    }
    {
        my $r = $ngx->http('GET', '/q/', headers => {
            Authorization => "Bearer $tok" });
        is($r->{status}, 400, 'no id at all: 400');
    }
    is(audit_count(), $before, 'bad ids: no audit row');

    # then one good request: its statement shows in PostgreSQL's log, the
    # bad ones never did
    my ($s, $h, $j) = get('/x', uc $id);
    is($s, 200, 'upper-case id through the loose location: 200');
    is($j && $j->{topupId}, $id, 'answered with the lower-case id');
    ($s, $h, $j) = card_get($ngx, $id, prefix => '/q', token => $tok);
    ($s, $h, $j) = $ngx->http_json('GET', "/q/?id=$id", headers => {
        Authorization => "Bearer $tok" });
    is($s, 200, 'id from $arg_id: 200');
    my $log;
    ok(wait_until(sub { $log = $pg->log_content($mark);
                        () = $log =~ /\Q$id\E/g; }, timeout => 10),
       'the good request reached PostgreSQL');
    for my $b (@bad) {
        next unless defined $b->[2];
        unlike($log, qr/\Q$b->[2]\E/, "$b->[0]: never reached PostgreSQL");
    }
    my @exec = $log =~ /^.*ocdz_module\@postgres LOG:  execute .*$/mg;
    is(scalar @exec, 2, 'exactly the two good statements ran')
        or diag join "\n", @exec;
}

# --- "if" and "limit_except" inside a card location --------------------------

{
    my ($s, $h, $j) = get('/guarded', $id);
    is($s, 200, 'a card location with if and limit_except: 200');
    ($s, $h, $j) = get('/guarded', $id, headers => { 'X-Flag' => 'yes' });
    is($s, 200, 'inside a matching "if": 200');
    is($j && $j->{cardCode}, $code, 'inside a matching "if": the card');
    ($s, $h, $j) = get('/guarded', $id, token => undef,
                       cookie => "guarded=$tok", headers => { 'X-Flag' => 1 });
    is($s, 200, 'inside "if": the location\'s own cookie name');
    ($s, $h, $j) = get('/guarded', $id, token => undef,
                       headers => { 'X-Flag' => 1 });
    is($s, 401, 'inside "if": 401 without a session');
    ($s) = get('/guarded', random_topup_id(), headers => { 'X-Flag' => 1 });
    is($s, 404, 'inside "if": 404');
    ($s) = get('/guarded', $id, headers => { 'X-Teapot' => 1 });
    is($s, 418, '"if" with return: 418');
    ($s) = get('/guarded', $id, method => 'DELETE');
    is($s, 403, 'limit_except denies DELETE');
    ($s) = get('/guarded', $id, method => 'HEAD', headers => {
        'X-Flag' => 1 });
    is($s, 200, 'HEAD inside "if": 200');
    ok($ngx->running, 'no worker crashed');
}

# --- limit_req ---------------------------------------------------------------

{
    my @st;
    for (1 .. 6) {
        my ($s) = get('/limited', $id);
        push @st, $s;
    }
    my $n429 = grep { $_ == 429 } @st;
    ok($n429 >= 1, "a burst is refused by limit_req (@st)");
    is($st[0], 200, 'the first request passes');
    ok(!grep({ $_ != 200 && $_ != 429 } @st), 'only 200 and 429');
}

# --- pipelined, abandoned and odd requests -----------------------------------

{
    my $one = "GET " . card_path($id) . " HTTP/1.1\r\nHost: localhost\r\n"
            . "Authorization: Bearer $tok\r\n";
    my $r = $ngx->http('GET', '/', raw => $one . "\r\n" . $one . "\r\n"
        . "GET " . card_path(random_topup_id()) . " HTTP/1.1\r\n"
        . "Host: localhost\r\nAuthorization: Bearer $tok\r\n"
        . "Connection: close\r\n\r\n", timeout => 20);
    my @status = $r->{raw} =~ m{HTTP/1\.1 (\d{3}) }g;
    is("@status", '200 200 404', 'three pipelined requests on one connection');
    my @codes = $r->{raw} =~ /"cardCode":"(\d+)"/g;
    is_deeply(\@codes, [$code, $code], 'pipelined: both cards');

    # HTTP/1.0, no Host
    $r = $ngx->http('GET', '/', raw => "GET " . card_path($id)
                    . " HTTP/1.0\r\nAuthorization: Bearer $tok\r\n\r\n");
    is($r->{status}, 200, 'HTTP/1.0: 200');

    # a GET with a body
    my ($s) = get('/api/internet-orders', $id, body => 'x' x 10000);
    is($s, 200, 'GET with a body: 200');
    # a large POST
    ($s) = get('/api/internet-orders', $id, method => 'POST',
               body => 'y' x 200000);
    is($s, 405, 'a 200 KB POST: 405');

    # clients that leave while the query runs
    my $before = audit_count();
    for my $n (1 .. 3) {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ngx->port, Proto => 'tcp', Timeout => 5);
        print $sock "GET " . card_path($id, '/slow') . " HTTP/1.1\r\n"
            . "Host: localhost\r\nAuthorization: Bearer $tok\r\n\r\n";
        select(undef, undef, undef, 0.2);
        close $sock;
    }
    # the same while the card is being opened is covered by the quick
    # path; the workers keep answering
    my $t0 = time;
    ($s) = get('/api/internet-orders', $id);
    is($s, 200, 'after abandoned requests: 200');
    ok(wait_until(sub { audit_count() >= $before + 4 }, timeout => 10),
       'abandoned statements still finished in the database');
    ($s) = get('/slow', $id);
    is($s, 200, 'the slow location itself: 200');
    ok($ngx->running, 'nginx still running');
    is(scalar(() = $ngx->error_log =~ /exited on signal/g), 0,
       'no worker crashed');
}

# --- a reload while a query runs: the request still gets its card ------------

if (!single_process()) {
    my @socks;
    for (1 .. 2) {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ngx->port, Proto => 'tcp', Timeout => 10);
        print $sock "GET " . card_path($id, '/slow') . " HTTP/1.1\r\n"
            . "Host: localhost\r\nAuthorization: Bearer $tok\r\n"
            . "Connection: close\r\n\r\n";
        push @socks, $sock;
    }
    ok(wait_until(sub { $pg->value("SELECT count(*) FROM pg_stat_activity "
                        . "WHERE query LIKE '%pg_sleep(1)%' AND usename = "
                        . "'ocdz_module' AND state = 'active'") >= 1 },
                  timeout => 10), 'slow queries running');
    ok($ngx->reload(timeout => 20), 'reload while queries run');
    for my $sock (@socks) {
        my $resp = '';
        my $sel = IO::Select->new($sock);
        my $deadline = time + 15;
        while (time < $deadline && $sel->can_read(1)) {
            my $n = sysread($sock, my $buf, 65536);
            last unless $n;
            $resp .= $buf;
        }
        like($resp, qr{^HTTP/1\.1 200 }, 'the in-flight request: 200');
        like($resp, qr/"cardCode":"\Q$code\E"/, 'the in-flight request: card');
    }
    my ($s) = get('/api/internet-orders', $id);
    is($s, 200, 'after the reload: 200');
}

# --- reloads keep the statements right ---------------------------------------

if (!single_process()) {
    my @workers = $ngx->worker_pids;
    # a configuration refused late (after the http block): the running
    # one stays
    my $bad = card_conf(%conf,
        server => "location ~ \"^/own/([0-9a-f]{24})/card\$\" { ocdz_card \$1;"
                . ' ocdz_session_query "SELECT user_id FROM ocdz.sessions'
                . ' WHERE token_hash = sha256($1::bytea)"; }'
                . $conf{server})
        . "no_such_directive_here on;\n";
    ok(!$ngx->reload(conf => $bad, timeout => 5),
       'a bad configuration is refused');
    $ngx->expect(qr/no_such_directive_here/);
    my ($s, undef, $j) = get('/api/internet-orders', $id);
    is($s, 200, 'after the refused reload: 200');

    # then good configurations, each shaped differently
    for my $n (1 .. 3) {
        my %c = %conf;
        $c{server} = ($n == 2
            ? "location ~ \"^/own/([0-9a-f]{24})/card\$\" { ocdz_card \$1;"
              . ' ocdz_session_query "SELECT user_id FROM ocdz.sessions'
              . ' WHERE token_hash = sha256($1::bytea)"; }'
            : '') . $c{server};
        ok(card_reload($ngx, %c), "reload $n");
        ($s, undef, $j) = get('/api/internet-orders', $id);
        is($s, 200, "reload $n: db session 200");
        is($j && $j->{cardCode}, $code, "reload $n: the card");
        ($s) = get('/api/internet-orders', random_topup_id());
        is($s, 404, "reload $n: 404");
        ($s) = get('/slow', $id);
        is($s, 200, "reload $n: own session query 200");
        if ($n == 2) {
            ($s) = get('/own', $id);
            is($s, 200, "reload $n: the added location 200");
        }
        my ($bid) = new_card($env);
        $pg->psql("UPDATE ocdz.orders SET card_enc = 'x' "
                  . "WHERE topup_id = '$bid'");
        ($s) = get('/api/internet-orders', $bid);
        is($s, 500, "reload $n: a broken card 500");
        is_deeply([audit_events($env, $bid)],
                  ['CARD_REVEALED', 'CARD_REVEAL_FAILED'],
                  "reload $n: the failure statement");
    }
    unlike($ngx->error_log, qr/invalid query|\[alert\]/,
           'no invalid statement after the reloads');
}

hygiene($env);
$ngx->quit;
done_testing;

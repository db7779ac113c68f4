# ocdz_status (issue 14): the counters move as reveals, checks and
# faults happen; they add up across two workers, survive a reload and a
# worker killed with SIGKILL; the Prometheus text passes promtool and a
# strict parser, the JSON parses and agrees; allow/deny, HEAD, 405; no
# card code, token, user id or top-up id in either output.

use v5.36;
use Test::More;
use JSON::PP ();
use Time::HiRes qw(sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Poller qw(poller_directives);
use Ocdz::Test::Secrets qw(assert_no_secret);
use Ocdz::Test::Prom qw(parse_prom);

require_module();

my $env = card_env();
my $pg = $env->{pg};
my $mock = Ocdz::Test::Mock->start(
    secondary_token => 'tok2_' . random_hex(8));

my $poller = poller_directives(
    api_token_file => '%%TOKEN_FILE%% %%SECONDARY_TOKEN_FILE%%',
    poller_pause => '4s', poller_concurrency => 4);

my $conf = <<"EOF";
http {
    ocdz_db "%%PGCONNINFO%%";
    ocdz_card_key k1 %%DIR%%/k1.key current;
    ocdz_db_connect_timeout 5s; ocdz_db_query_timeout 10s;
    ocdz_db_retry_delay 500ms;
$poller
    log_format bypid '\$pid \$status';
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location ~ "^/api/internet-orders/([0-9a-f]{24})/card\$" {
            ocdz_card \$1;
            ocdz_session db;
            access_log %%PREFIX%%/logs/cards.log bypid;
        }
        location = /status {
            ocdz_status;
            allow 127.0.0.1;
            deny all;
        }
        location = /status-closed {
            ocdz_status;
            deny all;
        }
        location / { return 404; }
    }
}
EOF

my $ngx = card_nginx($env, nginx => { conf => $conf, mock => $mock,
                                      workers => 2 }, start => 0);
$ngx->expect(qr/could not connect|database.*down|terminating connection/);
$ngx->start;

my $promtool = $ENV{OCDZ_PROMTOOL}
    // repo_root() . '/build/promtool/usr/bin/promtool';

# --- the two outputs ------------------------------------------------------

my @secrets;            # every code, token, user and top-up id used

my $scrapes = 0;

# One scrape: the text parsed (one ok per scrape is too many: failures
# only), checked by promtool once in a while.
sub scrape (%o) {
    my ($s, $h, $body) = $ngx->http('GET', $o{path} // '/status',
                                    timeout => 10 * slow_factor());
    die "status: $s\n$body" unless $s == 200;
    die "content type: $h->{'content-type'}"
        unless $h->{'content-type'} =~ m{^text/plain; version=0\.0\.4};
    my $m = eval { parse_prom($body) };
    fail("the Prometheus text parses: $@") unless $m;
    $scrapes++;
    return wantarray ? ($m, $body) : $m;
}

sub val ($m, $key) { $m->{$key} // -1 }

sub reveals ($m, $result, $status) {
    val($m, qq{ocdz_reveals_total{result="$result",status="$status"}});
}

my @texts;              # every output, for the secret scan

# --- the first scrape -----------------------------------------------------

my ($m0, $t0) = scrape();
push @texts, $t0;
ok($m0, 'the Prometheus text parses strictly');
like($t0, qr/^ocdz_build_info\{version="[0-9.]+",nginx_version="[0-9.]+",schema_version="\d+"\} 1$/m,
     'build info: module, nginx and schema versions');
is(reveals($m0, 'CARD_REVEALED', 200), 0, 'no reveal yet');

# --- reveals: 200, 404, 401, across both workers --------------------------

my $user = 'user-' . random_hex(8);
my $tok = $pg->add_session(random_token(), $user);
push @secrets, $user, $tok, $mock->token, $mock->secondary_token;

my @cards = map { [ new_card($env, user => $user) ] } 1 .. 3;
push @secrets, map { @$_[0, 1] } @cards;

my ($n200, $n404, $n401) = (0, 0, 0);
for my $i (1 .. 12) {
    my $c = $cards[$i % 3];
    my ($s) = card_get($ngx, $c->[0], token => $tok);
    $n200++ if $s == 200;
}
for my $i (1 .. 5) {
    my $id = random_topup_id();
    push @secrets, $id;
    my ($s) = card_get($ngx, $id, token => $tok);
    $n404++ if $s == 404;
}
for my $i (1 .. 4) {
    my ($s) = card_get($ngx, $cards[0][0]);
    $n401++ if $s == 401;
}
is("$n200/$n404/$n401", '12/5/4', 'reveals answered 200, 404, 401');

my %pids;
for (split /\n/, $ngx->access_log . slurp($ngx->prefix . '/logs/cards.log')) {
    $pids{$1}++ if /^(\d+) \d{3}$/;
}
SKIP: {
    skip 'one process (valgrind): one worker', 1 if single_process();
    cmp_ok(scalar keys %pids, '>=', 2, 'both workers answered reveals')
        or diag explain \%pids;
}

# every scrape, whichever worker answers it, sees the sum
my %seen;
for my $i (1 .. 6) {
    my ($m, $t) = scrape();
    push @texts, $t;
    $seen{ join '/', reveals($m, 'CARD_REVEALED', 200),
                     reveals($m, 'ORDER_NOT_FOUND', 404),
                     reveals($m, 'SESSION_REQUIRED', 401) }++;
}
is_deeply([keys %seen], ['12/5/4'],
          'the counters add up across the workers, in every scrape');

my $m1 = scrape();
is(val($m1, 'ocdz_reveal_duration_seconds_count'), 21,
   'latency histogram: one observation per reveal');
cmp_ok(val($m1, 'ocdz_last_reveal_timestamp_seconds'), '>', time - 120,
       'time of the last reveal');
cmp_ok(val($m1, 'ocdz_db_statements_total'), '>=', 1,
       'statements counted');
cmp_ok(val($m1, 'ocdz_db_batch_size_count'), '==',
       val($m1, 'ocdz_db_statements_total'), 'a batch size per statement');
cmp_ok(val($m1, 'ocdz_db_connects_total'), '>=', 2,
       'connections counted (both workers)');
cmp_ok(val($m1, 'ocdz_db_connections{state="idle"}')
       + val($m1, 'ocdz_db_connections{state="busy"}'), '>=', 1,
       'pool gauges: connections open');

# --- JSON -----------------------------------------------------------------

{
    my ($s, $h, $body) = $ngx->http('GET', '/status?format=json');
    is($s, 200, '?format=json: 200');
    like($h->{'content-type'}, qr{^application/json}, 'JSON content type');
    my $j = eval { JSON::PP->new->decode($body) };
    ok($j, 'the JSON parses') or diag $@;
    is($j && $j->{reveals}{results}{CARD_REVEALED}, 12,
       'JSON agrees: CARD_REVEALED');
    is($j && $j->{reveals}{duration_seconds}{count}, 21,
       'JSON agrees: latency count');
    push @texts, $body;

    ($s, $h, $body) = $ngx->http('GET', '/status',
        headers => { Accept => 'text/html, application/json;q=0.9' });
    like($h->{'content-type'} // '', qr{^application/json},
         'Accept: application/json gets JSON');
    ok(eval { JSON::PP->new->decode($body) }, 'and it parses');
}

# --- methods, allow/deny --------------------------------------------------

{
    my ($s, $h, $body) = $ngx->http('HEAD', '/status');
    is($s, 200, 'HEAD: 200');
    is($body // '', '', 'HEAD: no body');
    ($s) = $ngx->http('POST', '/status', body => 'x');
    is($s, 405, 'POST: 405');
    ($s) = $ngx->http('GET', '/status-closed');
    is($s, 403, 'deny all is honoured');
}

# --- checks: fulfilled, a fault, a pause ---------------------------------

{
    my $id = random_topup_id();
    push @secrets, $id;
    $mock->set_order($id, status => 'FULFILLED');
    $pg->insert_order(topup_id => $id, user_id => $user);
    wait_until(sub { ($pg->order($id)->{status} // '') eq 'FULFILLED' },
               timeout => 15);
    my $code = $mock->order($id)->{card_code};
    push @secrets, $code if defined $code;
    push @{ $env->{codes} }, $code if defined $code;

    my $m = scrape();
    cmp_ok(val($m, 'ocdz_poller_checks_total{outcome="fulfilled",class="2xx"}'),
           '>=', 1, 'a fulfilled check counted, class 2xx');
    cmp_ok(val($m, 'ocdz_upstream_duration_seconds_count'), '>=', 1,
           'upstream latency observed');
    cmp_ok(val($m, 'ocdz_poller_last_success_timestamp_seconds'), '>',
           time - 120, 'time of the last successful check');

    my $f = random_topup_id();
    push @secrets, $f;
    $mock->set_order($f, status => 'HANDLING');
    $mock->fault('status', id => $f, code => 500, count => 1);
    $pg->insert_order(topup_id => $f, user_id => $user);
    ok(wait_until(sub {
        val(scalar(scrape()), 'ocdz_poller_checks_total{outcome="fault",class="5xx"}')
            >= 1 }, timeout => 15),
       'a failed check counted: fault, 5xx');
    $mock->reset_faults;

    # a 429 pauses every check: the pause and its reason
    my $r = random_topup_id();
    push @secrets, $r;
    $mock->set_order($r, status => 'HANDLING');
    $mock->fault('rate_limit', id => $r, retry_after => 3, count => 1);
    $pg->insert_order(topup_id => $r, user_id => $user);
    my $pm;
    ok(wait_until(sub {
        $pm = scrape();
        val($pm, 'ocdz_poller_pauses_total{reason="rate_limited"}') >= 1 },
        timeout => 15), 'the pause counted with its reason');
    my ($pt) = grep { /^ocdz_poller_paused\{/ } keys %$pm;
    ok(defined $pt, 'the pause gauge is there') and diag "$pt $pm->{$pt}";
    $mock->reset_faults;
    $pg->psql('UPDATE ocdz.poller_state SET paused_until = NULL, '
              . 'pause_reason = NULL');
    $pg->psql("DELETE FROM ocdz.orders WHERE topup_id IN ('$f', '$r')");
}

# --- the secondary token --------------------------------------------------

{
    is(val(scalar(scrape()), 'ocdz_poller_secondary_token'), 0,
       'the primary token in use');
    $mock->set_tokens($mock->secondary_token);
    my $id = random_topup_id();
    push @secrets, $id;
    $mock->set_order($id, status => 'FULFILLED');
    $pg->insert_order(topup_id => $id, user_id => $user);
    wait_until(sub { ($pg->order($id)->{status} // '') eq 'FULFILLED' },
               timeout => 15);
    my $code = $mock->order($id)->{card_code};
    push @secrets, $code if defined $code;
    push @{ $env->{codes} }, $code if defined $code;
    ok(wait_until(sub {
        val(scalar(scrape()), 'ocdz_poller_secondary_token') == 1 },
        timeout => 10), 'the primary refused: the secondary token in use');
    $mock->set_tokens($mock->token, $mock->secondary_token);
}

# --- the backlog: refreshed by the workers, not by scrapes ---------------

{
    my @ids = map { random_topup_id() } 1 .. 3;
    push @secrets, @ids;
    $pg->insert_order(topup_id => $_, user_id => $user, status => 'QUEUED',
                      next_check_at => "now() + interval '1 hour'")
        for @ids;
    my $m;
    ok(wait_until(sub {
        $m = scrape();
        val($m, 'ocdz_orders_waiting{status="QUEUED"}') >= 3 },
        timeout => 15 * slow_factor()),
       'orders waiting by status (refreshed every 5 s)');
    ok(exists $m->{ocdz_oldest_due_order_age_seconds},
       'age of the oldest due order');
    is($m->{ocdz_poller_shared_pause}, 0, 'no shared pause');
    $pg->psql("UPDATE ocdz.poller_state SET paused_until = now() + "
              . "interval '1 hour', pause_reason = 'test'");
    ok(wait_until(sub {
        val(scalar(scrape()), 'ocdz_poller_shared_pause') == 1 },
        timeout => 15 * slow_factor()), 'the shared pause shows');
    $pg->psql('UPDATE ocdz.poller_state SET paused_until = NULL, '
              . 'pause_reason = NULL');
}

# --- 503: the database down ----------------------------------------------

{
    my $before = scrape();
    $pg->stop('immediate');
    my $n503 = 0;
    for my $i (1 .. 6) {
        my ($s) = card_get($ngx, $cards[1][0], token => $tok);
        $n503++ if $s == 503;
    }
    is($n503, 6, 'database down: reveals answer 503');
    my $m = scrape();
    is(reveals($m, 'SERVICE_UNAVAILABLE', 503)
       - reveals($before, 'SERVICE_UNAVAILABLE', 503), 6,
       '503s counted');
    cmp_ok(val($m, 'ocdz_db_shed_total'), '>', val($before, 'ocdz_db_shed_total'),
           'queries shed counted');
    cmp_ok(val($m, 'ocdz_db_connect_failures_total'), '>=', 1,
           'connection failures counted');
    $pg->start_server;
    ok(wait_until(sub {
        my ($s) = card_get($ngx, $cards[1][0], token => $tok);
        $s == 200 }, timeout => 20), 'the database is back');
}

# --- a reload (HUP) keeps the counters ------------------------------------

# the counters of what clients and the API did (new workers connect and
# run statements of their own: those only grow)
sub counters ($m) {
    join ' ', map { "$_=$m->{$_}" }
              sort grep { /_total\{|_total$|_count$/ && !/^ocdz_db_/ }
              keys %$m;
}

sub db_grew ($before, $after, $what) {
    my @less = grep { $after->{$_} < $before->{$_} }
               grep { /^ocdz_db_.*(_total|_count)$/ } keys %$before;
    ok(!@less, "$what: the database counters did not go back")
        or diag "@less";
}

SKIP: {
    # valgrind's one process is stopped and started: a new zone
    skip 'one process: a restart, not a reload', 3 if single_process();
    my $before = scrape();
    ok(card_reload($ngx, conf => $conf), 'reloaded');
    my $after = scrape();
    is(counters($after), counters($before),
       'the counters are unchanged by a reload');
    db_grew($before, $after, 'reload');
}

# --- a worker killed with SIGKILL -----------------------------------------

SKIP: {
    skip 'one process: no worker to kill', 4 if single_process();
    my $before = scrape();
    my @w = $ngx->worker_pids;
    $ngx->expect(qr/exited on signal 9/);
    kill 'KILL', $w[0];
    ok(wait_until(sub {
        my @n = $ngx->worker_pids;
        @n == 2 && !grep { $_ == $w[0] } @n }, timeout => 15),
       'the killed worker is replaced');
    my $after = scrape();
    is(counters($after), counters($before),
       'the counters are all there after a worker was killed');
    db_grew($before, $after, 'SIGKILL');
    my $n = 0;
    for (1 .. 4) {
        my ($s) = card_get($ngx, $cards[2][0], token => $tok);
        $n++ if $s == 200;
    }
    is(reveals(scalar(scrape()), 'CARD_REVEALED', 200)
       - reveals($after, 'CARD_REVEALED', 200), $n,
       'and go on counting');
}

# --- promtool and the secret scan -----------------------------------------

{
    my ($m, $t) = scrape();
    push @texts, $t;
    SKIP: {
        skip "no promtool ($promtool): run make promtool (it takes "
             . "promtool out of Debian's prometheus package)", 1
            unless -x $promtool;
        my $f = tmpdir() . '/metrics.txt';
        write_file($f, $t);
        my $out = `'$promtool' check metrics < '$f' 2>&1`;
        is($? >> 8, 0, 'promtool check metrics accepts the text')
            or diag $out;
    }
    my ($s, $h, $j) = $ngx->http('GET', '/status?format=json');
    push @texts, $j;
    assert_no_secret('status outputs (Prometheus and JSON)',
                     join("\n", @texts), @secrets);
}

hygiene($env);

done_testing();

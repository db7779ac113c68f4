# Waiting for the card (issue #16): GET .../card?wait=N holds a request
# for an order that is not final until the card is stored or the order
# becomes final (woken by NOTIFY from the statement that stores it, here
# through another nginx's poller on the same database), or until the
# wait ends (409). Limits, a client leaving, the LISTEN connection
# killed, a missing trigger, reload and quit with waiters, no statement
# per waiting request, and a worker's memory with many waiters
# (OCDZ_WAITERS=1000 for a thousand; 100 by default).

use v5.36;
use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Poller qw(poller_directives);
use Ocdz::Test::HTTP qw(parse_response);

require_module();

my $SF = slow_factor();
my $MANY = $ENV{OCDZ_WAITERS} // 100;

my $env = card_env();
my $pg = $env->{pg};
my $mock = Ocdz::Test::Mock->start;

# A: the card endpoint, one worker, no poller
my %a_conf = (
    http => "ocdz_card_wait_limit 40;\n    ocdz_card_wait_recheck 1s;",
    loc => 'ocdz_session db; ocdz_card_wait 10s;',
    server => <<'EOF',
        location ~ "^/short/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_card_wait 1s;
        }
        location ~ "^/off/([0-9a-f]{24})/card$" {
            ocdz_card $1;
        }
EOF
);
# (port 2: HTTP/2 without TLS, for curl --http2-prior-knowledge)
$a_conf{server} .= <<'EOF';
    }
    server {
        listen 127.0.0.1:%%PORT2%% http2;
        location ~ "^/api/internet-orders/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_card_wait 10s;
        }
EOF
my $ngx = card_nginx($env, nginx => { workers => 1, ports => 2,
                                      worker_connections => $MANY + 200 },
                     %a_conf);

# B: another nginx on the same database, its poller storing the cards
my $pollers = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
    vars => { DIR => $env->{dir} }, workers => 1,
    conf => "http {\n    ocdz_db \"%%PGCONNINFO%%\";\n"
          . "    ocdz_card_key k1 %%DIR%%/k1.key current;\n"
          . poller_directives(poller_interval => '100ms')
          . "    server { listen 127.0.0.1:%%PORT%%; "
          . "location / { return 204; } }\n}\n");
$pollers->start;

my $tok = $pg->add_session(random_token(), 'u1');

# --- helpers ------------------------------------------------------------------

# A request sent, its answer read later: { sock, sent }
sub ask ($id, %o) {
    my $path = card_path($id, $o{prefix} // '/api/internet-orders');
    $path .= "?$o{query}" if defined $o{query};
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ngx->port, Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    my $ua = $o{ua} // 'wait-test';
    syswrite $s, "GET $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $tok\r\nUser-Agent: $ua\r\n"
        . "Connection: close\r\n\r\n";
    return { sock => $s, sent => time };
}

# Has an answer come (without reading it)?
sub answered ($req, $secs = 0) {
    return IO::Select->new($req->{sock})->can_read($secs) ? 1 : 0;
}

# The answer: parse_response's hash, plus at (when it came) and json.
sub answer ($req, $secs = 30) {
    my ($resp, $buf) = ('');
    my $sel = IO::Select->new($req->{sock});
    my $deadline = time + $secs * $SF;
    my $at;
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread $req->{sock}, $buf, 65536;
        last unless $n;
        $at //= time;
        $resp .= $buf;
    }
    close $req->{sock};
    my $r = parse_response($resp, 'GET');
    $r->{at} = $at // time;
    $r->{json} = json_decode($r->{body} // '');
    return $r;
}

sub pending_order (%f) {
    return new_order($env, user_id => 'u1', status => 'HANDLING',
                     next_check_at => "now() + interval '1 day'", %f);
}

# the poller of B finds the order FULFILLED upstream now
sub fulfil_upstream ($id, $code) {
    push @{ $env->{codes} }, $code;
    $mock->set_order($id, status => 'FULFILLED', card_code => $code,
                     num_trans => 'AT-' . random_hex(4),
                     date_traitement => '2025-10-29T01:05:30.000Z');
    $pg->psql('UPDATE ocdz.orders SET next_check_at = now() '
              . 'WHERE topup_id = ' . sql_quote($id));
}

# the card stored and the order FULFILLED in one statement, as the poller
# does, but by hand
sub store_direct ($id, $code) {
    push @{ $env->{codes} }, $code;
    my $rec = tool_encrypt($env, $id, $code);
    $pg->psql("UPDATE ocdz.orders SET status = 'FULFILLED', card_enc = "
              . sql_quote($rec) . ", num_trans = 'AT-1', fulfilled_at = "
              . 'now() WHERE topup_id = ' . sql_quote($id));
}

sub reveals_logged ($from) {
    my @l = grep { /execute ocdz_s\d+: WITH i AS \(SELECT \* FROM unnest/ }
            split /\n/, $pg->log_content($from);
    return scalar @l;
}

sub listen_count () {
    return $pg->value("SELECT count(*) FROM pg_stat_activity WHERE "
                      . "query LIKE 'LISTEN ocdz_card%'");
}

sub listen_pid () {
    return $pg->value("SELECT pid FROM pg_stat_activity WHERE "
                      . "query LIKE 'LISTEN ocdz_card%'");
}

ok(wait_until(sub { listen_pid() }, timeout => 10),
   'the worker LISTENs on its own connection');
is(listen_count(), 1, 'one LISTEN connection: A\'s one worker (B does '
   . 'not hold requests)');

# --- bad values, and what never waits ---------------------------------------

{
    my $id = pending_order();
    for my $q ('wait=abc', 'wait=-1', 'wait=', 'wait=1.5', 'wait=%31',
               'wait=+3', 'wait=1e3') {
        my ($s, $h, $j) = card_get($ngx, $id, token => $tok, query => $q);
        is($s, 400, "$q: 400");
        is($j->{error}, 'INVALID_WAIT', "$q: INVALID_WAIT");
    }
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok,
                               query => 'wait=abc', prefix => '/off');
    is($s, 400, 'waiting off in the location: a bad wait is still a 400');

    my $t = time;
    ($s, undef, $j) = card_get($ngx, $id, token => $tok, query => 'wait=5',
                               prefix => '/off');
    ok($s == 409 && time - $t < 1.5 * $SF,
       'waiting off in the location: 409 at once');
    $t = time;
    ($s) = card_get($ngx, $id, token => $tok, query => 'wait=0');
    ok($s == 409 && time - $t < 1.5 * $SF, 'wait=0: 409 at once');
    $t = time;
    ($s) = card_get($ngx, $id, token => $tok, query => 'wait=5',
                    method => 'HEAD');
    ok($s == 409 && time - $t < 1.5 * $SF, 'HEAD is never held');

    my ($cid, $code) = new_card($env, user => 'u1');
    $t = time;
    ($s, undef, $j) = card_get($ngx, $cid, token => $tok, query => 'wait=9');
    ok($s == 200 && ($j->{cardCode} // '') eq $code
       && time - $t < 1.5 * $SF, 'a fulfilled order: the card at once');

    my $rid = new_order($env, user_id => 'u1', status => 'REFUNDED');
    ($s, undef, $j) = card_get($ngx, $rid, token => $tok, query => 'wait=9');
    is($s, 410, 'a refunded order: 410 at once');

    my $eid = new_order($env, user_id => 'u1', status => 'ERROR');
    $t = time;
    ($s, undef, $j) = card_get($ngx, $eid, token => $tok, query => 'wait=9');
    ok($s == 409 && ($j->{status} // '') eq 'ERROR' && time - $t < 1.5 * $SF,
       'an order in ERROR (final): 409 at once');
    is_deeply([audit_events($env, $eid)], ['ORDER_NOT_READY'],
              'ERROR: audited once');

    my ($oid) = new_card($env, user => 'u2');
    ($s) = card_get($ngx, $oid, token => $tok, query => 'wait=9');
    is($s, 404, "someone else's order: 404 at once");
}

# --- woken by the card another nginx's poller stores ----------------------------

{
    my $id = pending_order();
    my $code = random_card_code();
    my $req = ask($id, query => 'wait=10');
    ok(!answered($req, 1), 'pending: the request is held');
    fulfil_upstream($id, $code);
    my $r = answer($req);
    is($r->{status}, 200, 'woken: 200');
    is($r->{json}{cardCode}, $code, 'woken: the card');
    my $stored = $pg->value('SELECT extract(epoch FROM fulfilled_at) FROM '
                            . 'ocdz.orders WHERE topup_id = '
                            . sql_quote($id));
    my $late = $r->{at} - $stored;
    ok($late < 0.2 * $SF, sprintf('woken %.0f ms after the store '
                                  . '(at most %.0f)', $late * 1000,
                                  200 * $SF));
    diag sprintf 'woken %.1f ms after the transaction that stored the card',
                 $late * 1000;
    is_deeply([audit_events($env, $id)], ['CARD_STORED', 'CARD_REVEALED'],
              'woken: one audit row for the answer, none for the wait');
}

{
    my $id = pending_order();
    my $req = ask($id, query => 'wait=10');
    ok(!answered($req, 0.5), 'pending: held');
    $mock->set_order($id, status => 'REFUNDED',
                     refund_message => 'no stock');
    $pg->psql('UPDATE ocdz.orders SET next_check_at = now() '
              . 'WHERE topup_id = ' . sql_quote($id));
    my $r = answer($req);
    is($r->{status}, 410, 'refunded while waiting: 410');
    ok($r->{at} - $req->{sent} < 5 * $SF, 'refunded: answered at once');
    is_deeply([grep { !/^CARD_STORED$/ } audit_events($env, $id)],
              ['ORDER_REFUNDED'], 'refunded: audited once');

    # fulfilled without a card (someone's mistake): 500 at once
    $id = pending_order();
    $req = ask($id, query => 'wait=10');
    ok(!answered($req, 0.5), 'pending: held');
    $pg->psql("UPDATE ocdz.orders SET status = 'FULFILLED' "
              . 'WHERE topup_id = ' . sql_quote($id));
    $r = answer($req);
    ok($r->{status} == 500 && ($r->{json}{error} // '') eq 'DELIVERY_FAILED'
       && $r->{at} - $req->{sent} < 5 * $SF,
       'fulfilled without a card while waiting: 500 DELIVERY_FAILED');
    is_deeply([audit_events($env, $id)], ['DELIVERY_FAILED'],
              'DELIVERY_FAILED: audited once');
}

# --- the wait ends ----------------------------------------------------------------

{
    my $id = pending_order();
    my $req = ask($id, query => 'wait=2', ua => 'timeout-test');
    my $r = answer($req);
    my $took = $r->{at} - $req->{sent};
    is($r->{status}, 409, 'wait=2: 409');
    is($r->{json}{status}, 'HANDLING', 'wait=2: the status');
    ok($took > 1.9 && $took < 2 + 2 * $SF, sprintf 'after %.2f s', $took);
    is_deeply([audit_events($env, $id)], ['ORDER_NOT_READY'],
              'timeout: audited once');

    $req = ask($id, query => 'wait=100', prefix => '/short');
    $r = answer($req);
    $took = $r->{at} - $req->{sent};
    ok($r->{status} == 409 && $took > 0.9 && $took < 1 + 2 * $SF,
       sprintf 'wait=100 capped by ocdz_card_wait 1s: 409 after %.2f s',
               $took);
}

# --- keep-alive and pipelining: the next request waits its turn -------------------

{
    my $id = pending_order();
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ngx->port, Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    my $t = time;
    my $path = card_path($id);
    syswrite $s, "GET $path?wait=1 HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $tok\r\n\r\n"
        . "GET $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $tok\r\nConnection: close\r\n\r\n";
    my $r = answer({ sock => $s, sent => $t });
    my @st = $r->{raw} =~ m{HTTP/1\.1 (\d{3}) }g;
    is_deeply(\@st, [409, 409], 'a held request and one pipelined behind '
              . 'it: both answered, in order, on one connection')
        or diag $r->{raw};
    ok($r->{at} - $t > 0.9, 'the first was held');
}

# --- HTTP/2: held, answered, and a client that goes away ---------------------------

{
    my $id = pending_order();
    my @curl = ('curl', '-s', '--http2-prior-knowledge', '-o', '/dev/null',
                '-w', '%{http_code} %{http_version}', '-H',
                "Authorization: Bearer $tok",
                'http://127.0.0.1:' . $ngx->port(2) . card_path($id));
    my $t = time;
    my ($rc, $out) = run_cmd([@curl, '--get', '-d', 'wait=1'],
                             timeout => 20);
    my $took = time - $t;
    ok($out eq '409 2' && $took > 0.9,
       sprintf 'HTTP/2: held, then 409 (%s, %.2f s)', $out, $took);

    my $mark = $ngx->log_mark;
    $t = time;
    run_cmd([@curl, '--get', '-d', 'wait=10', '--max-time', '1'],
            timeout => 20);
    ok($ngx->wait_for_log(qr/the client closed the connection while waiting/,
                          from => $mark, timeout => 3),
       'HTTP/2: a client that goes away leaves at once');
    ok(time - $t < 4 * $SF, 'well before its wait would end');
}

# --- the limit, a client leaving -------------------------------------------------

{
    my $id = pending_order();
    my @held = map { ask($id, query => 'wait=10') } 1 .. 40;
    sleep 0.5;
    my $r = answer(ask($id, query => 'wait=10'), 10);
    is($r->{status}, 503, 'the 41st waiter of the worker: 503');
    like($r->{headers}{'retry-after'} // '', qr/^\d+$/, '503: Retry-After');
    is($r->{json}{error}, 'SERVICE_UNAVAILABLE', '503: SERVICE_UNAVAILABLE');
    ok(!grep({ answered($_, 0) } @held), 'the 40 still wait');

    # five clients leave: their slots are free at once
    close $_->{sock} for splice @held, 0, 5;
    sleep 0.3;
    my @more = map { ask($id, query => 'wait=10') } 1 .. 5;
    ok(!grep({ answered($_, 0.5) } @more),
       'clients that left freed their slots: five more are held');
    like($ngx->error_log, qr/the client closed the connection while waiting/,
         'the client leaving is logged');
    $r = answer(ask($id, query => 'wait=10'), 10);
    is($r->{status}, 503, 'and the limit holds again');

    my $code = random_card_code();
    fulfil_upstream($id, $code);
    my @r = map { answer($_) } @held, @more;
    is(scalar(grep { $_->{status} == 200
                     && ($_->{json}{cardCode} // '') eq $code } @r),
       40, 'all 40 waiters get the card');
    is(scalar(grep { $_ eq 'CARD_REVEALED' } audit_events($env, $id)), 40,
       '40 CARD_REVEALED rows, no row for the clients that left');
}

# --- no statement per waiting request; memory -----------------------------------

{
    # a small queue: the looks of many waiters at once (a shutdown) must
    # be paced, or most would be refused (503)
    $ngx->reload(conf => card_conf(%a_conf,
        http => "ocdz_card_wait_limit " . ($MANY + 10)
                . ";\n    ocdz_card_wait_recheck 1s; ocdz_db_queue 32;"));
    ok(wait_until(sub { listen_pid() }, timeout => 10), 'listening again');
    my ($worker) = $ngx->worker_pids;
    my $rss = sub {
        (slurp("/proc/$worker/status") =~ /^VmRSS:\s+(\d+)/m)[0] // 0
    };
    my $before = $rss->();
    my @ids = map { pending_order() } 1 .. 10;
    my @held;
    for my $i (1 .. $MANY) {
        push @held, ask($ids[$i % 10], query => 'wait=30');
        sleep 0.2 unless $i % 20;       # first looks within the queue
    }
    sleep 1.5;
    ok(!grep({ answered($_, 0) } @held), "$MANY requests held");
    my $with = $rss->();
    diag sprintf '%d waiters: worker RSS %d kB -> %d kB (%.1f kB a waiter)',
                 $MANY, $before, $with, ($with - $before) / $MANY;
    ok($with - $before < 20 * $MANY + 4096,
       "$MANY waiters: RSS grows by less than 20 kB each");

    my $mark = $pg->log_mark;
    sleep 3;
    is(reveals_logged($mark), 0,
       "no statement in 3 s for $MANY waiting requests");

    # one order's waiters look again, and only they
    my $code = random_card_code();
    $mark = $pg->log_mark;
    fulfil_upstream($ids[0], $code);
    my @mine = grep { ($_ % 10) == 0 } 1 .. $MANY;
    my @r = map { answer($held[$_ - 1]) } @mine;
    is(scalar(grep { $_->{status} == 200 } @r), scalar @mine,
       'the waiters of the fulfilled order get the card');
    my $n = reveals_logged($mark);
    ok($n >= 1 && $n <= @mine,
       "their looks ($n statements for " . scalar(@mine) . ' waiters)');

    # the LISTEN backend killed while they wait: they still get answers
    my $lp = listen_pid();
    ok($pg->value("SELECT pg_terminate_backend($lp)"), 'LISTEN backend '
       . 'killed');
    my $code1 = random_card_code();
    store_direct($ids[1], $code1);
    my @one = grep { ($_ % 10) == 1 } 1 .. $MANY;
    @r = map { answer($held[$_ - 1], 10) } @one;
    is(scalar(grep { $_->{status} == 200
                     && ($_->{json}{cardCode} // '') eq $code1 } @r),
       scalar @one, 'a card stored while LISTEN was down: its waiters get '
       . 'it (looked again)');
    ok(wait_until(sub { my $p = listen_pid(); $p && $p != $lp },
                  timeout => 10), 'LISTEN connected again');
    like($ngx->error_log, qr/ocdz pg listen: connection lost/,
         'the lost LISTEN connection is logged');

    # quit with waiters: each answered (409), then the worker exits
    my @rest = map { $held[$_ - 1] } grep { ($_ % 10) > 1 } 1 .. $MANY;
    my $t = time;
    $ngx->signal('QUIT');
    @r = map { answer($_, 20) } @rest;
    is(scalar(grep { $_->{status} == 409 } @r), scalar @rest,
       'QUIT: every waiter answered 409 (their last looks paced: no 503 '
       . 'with ocdz_db_queue 32)')
        or diag explain [map { $_->{status} } @r];
    ok(wait_until(sub { !$ngx->running }, timeout => 20), 'nginx exits');
    diag sprintf 'QUIT with %d waiters: answered and exited in %.2f s',
                 scalar @rest, time - $t;
    $ngx->quit;
    $ngx->start;
}

# --- reload with waiters; a missing trigger ---------------------------------------

{
    my $id = pending_order();
    ok(wait_until(sub { listen_pid() }, timeout => 10), 'listening');
    my @held = map { ask($id, query => 'wait=30') } 1 .. 5;
    ok(!grep({ answered($_, 0.5) } @held), 'held');
    ok($ngx->reload(conf => card_conf(%a_conf)), 'reload');
    my @r = map { answer($_, 10) } @held;
    is(scalar(grep { $_->{status} == 409 } @r), 5,
       'a reload answers every waiter 409');

    $pg->psql('DROP TRIGGER ocdz_notify_card ON ocdz.orders');
    ok($ngx->reload(conf => card_conf(%a_conf)), 'reload');
    ok($ngx->wait_for_log(qr/NOTIFY trigger of sql\/ocdz.sql is missing/,
                          timeout => 10), 'a missing trigger is logged');
    my $req = ask($id, query => 'wait=10');
    ok(!answered($req, 0.5), 'held without the trigger');
    my $code = random_card_code();
    store_direct($id, $code);
    my $r = answer($req);
    ok($r->{status} == 200 && $r->{at} - $req->{sent} < 4 * $SF,
       'without the trigger the card comes by the re-check (1s)');
    $pg->psql(slurp(repo_root() . '/sql/ocdz.sql'));
    is($pg->value("SELECT count(*) FROM pg_trigger "
                  . "WHERE tgname = 'ocdz_notify_card'"), 1,
       'sql/ocdz.sql again: one trigger (idempotent)');
    ok(wait_until(sub { listen_count() == 1 }, timeout => 10),
       'after reloads, one LISTEN connection still (the old workers\' '
       . 'are closed)');
}

$pollers->quit;
hygiene($env);
$ngx->quit;
done_testing;

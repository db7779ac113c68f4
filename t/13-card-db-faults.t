# The card endpoint when PostgreSQL misbehaves: stopped (503 at once,
# Retry-After) and started again (200 without a reload), backends
# terminated between requests, a query held past ocdz_db_query_timeout
# (503, the connection replaced), a server-side statement_timeout,
# ocdz_db_prepared off, and TLS to PostgreSQL.

use v5.36;
use Test::More;
use POSIX ();
use Time::HiRes qw(time);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();

my $env = card_env();
my $pg = $env->{pg};
my $tok = $pg->add_session(random_token(), 'u1');
my ($id, $code) = new_card($env);

sub timed_get ($ngx, $id, %o) {
    my $t0 = time;
    my @r = card_get($ngx, $id, token => $tok, %o);
    return (time - $t0, @r);
}

# $max: seconds (times slow_factor), or [seconds] for a bound that must
# not stretch (it proves a timeout fired): not checked under valgrind
sub unavailable ($what, $el, $s, $h, $j, $max = 2) {
    is($s, 503, "$what: 503");
    is($j && $j->{error}, 'SERVICE_UNAVAILABLE',
       "$what: SERVICE_UNAVAILABLE");
    like($h->{'retry-after'} // '', qr/^\d+$/, "$what: Retry-After");
    is($h->{'cache-control'}, 'no-store', "$what: no-store");
    return if ref $max && under_valgrind();
    $max = ref $max ? $max->[0] : $max * slow_factor();
    ok($el < $max, sprintf "$what: answered in %.2f s (< $max s)", $el);
}

# --- PostgreSQL stopped, then started ----------------------------------------

{
    my $ngx = card_nginx($env, http => 'ocdz_db_retry_delay 1s;',
                         nginx => { workers => 1 });
    my ($el, $s, $h, $j) = timed_get($ngx, $id);
    is($s, 200, 'PostgreSQL up: 200');
    my @workers = $ngx->worker_pids;

    $pg->stop('fast');
    for my $n (1 .. 4) {
        ($el, $s, $h, $j) = timed_get($ngx, $id);
        unavailable("PostgreSQL stopped, request $n", $el, $s, $h, $j);
    }
    # the same for a request that would be a 401 or 404 with a database
    ($el, $s, $h, $j) = timed_get($ngx, random_topup_id());
    unavailable('PostgreSQL stopped, another order', $el, $s, $h, $j);

    $pg->start;
    my $got;
    ok(wait_until(sub { ($got) = card_get($ngx, $id, token => $tok);
                        $got == 200 }, timeout => 20, interval => 0.2),
       'PostgreSQL started again: 200 without a reload');
    is_deeply([$ngx->worker_pids], \@workers, 'the same worker')
        unless single_process();

    # backends killed between requests: at most one 503, then 200
    for my $round (1 .. 3) {
        ok($pg->terminate_backends >= 1, "round $round: backends killed");
        my @st;
        for (1 .. 3) {
            ($el, $s) = timed_get($ngx, $id);
            push @st, $s;
            ok($el < 3 * slow_factor(),
               sprintf "round $round: answered in %.2f s", $el);
        }
        my $n503 = grep { $_ == 503 } @st;
        ok($n503 <= 1 && $st[-1] == 200 && !grep({ $_ != 200 && $_ != 503 }
                                                 @st),
           "round $round after pg_terminate_backend: @st");
    }

    # a restart under an idle pool
    $pg->restart('fast');
    ok(wait_until(sub { ($got) = card_get($ngx, $id, token => $tok);
                        $got == 200 }, timeout => 20, interval => 0.2),
       'after a PostgreSQL restart: 200');
    $ngx->quit;
}

# --- many requests at once: queued, or refused at once when the queue is full

# n requests in parallel (forked clients); returns their statuses
sub parallel ($ngx, $n, $path) {
    my @kids;
    for my $i (1 .. $n) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $r;
            my $res = $ngx->http('GET', $path, timeout => 30,
                headers => { Authorization => "Bearer $tok" });
            print $w $res->{status};
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    my @st;
    for my $k (@kids) {
        my $fh = $k->[1];
        local $/;
        my $v = <$fh>;
        push @st, 0 + ($v // 0);
        waitpid($k->[0], 0);
    }
    return @st;
}

{
    my $ngx = card_nginx($env, http => 'ocdz_db_pool_size 2;',
                         server => slow_location(0.2));
    my @st = parallel($ngx, 40, card_path($id));
    is(scalar(grep { $_ == 200 } @st), 40,
       '40 parallel requests on 2 connections per worker: all 200')
        or diag "@st";
    @st = parallel($ngx, 12, card_path($id, '/slow'));
    is(scalar(grep { $_ == 200 } @st), 12,
       '12 parallel slow requests: all 200, queued') or diag "@st";
    $ngx->quit;

    # a queue of 1 beyond the one connection: the overflow gets 503 at once
    $ngx = card_nginx($env, nginx => { workers => 1 },
                      http => 'ocdz_db_pool_size 1; ocdz_db_queue 1;',
                      server => slow_location(1));
    my ($s) = card_get($ngx, $id, token => $tok);
    is($s, 200, 'small queue: warm-up 200');
    my $t0 = time;
    @st = parallel($ngx, 8, card_path($id, '/slow'));
    my $n503 = grep { $_ == 503 } @st;
    my $n200 = grep { $_ == 200 } @st;
    ok($n503 >= 1 && $n200 >= 1 && $n503 + $n200 == 8,
       "pool 1, queue 1, 8 slow requests: 200s and 503s (@st)");
    like($ngx->error_log, qr/declined|queue/i,
         'the overflow is logged');
    ($s) = card_get($ngx, $id, token => $tok);
    is($s, 200, 'after the overflow: 200');
    $ngx->quit;
}

# --- a query held past ocdz_db_query_timeout ---------------------------------


{
    my $ngx = card_nginx($env, nginx => { workers => 1 },
        http => 'ocdz_db_pool_size 1;',
        db_conf => 'ocdz_db_query_timeout 1s; ocdz_db_statement_timeout 0;',
        server => slow_location(3));
    # warm the only connection
    my ($el, $s, $h, $j) = timed_get($ngx, $id);
    is($s, 200, 'query timeout: warm-up 200');
    my $mark = $ngx->log_mark;
    ($el, $s, $h, $j) = timed_get($ngx, $id, prefix => '/slow');
    unavailable('query held past its timeout', $el, $s, $h, $j, [2.9]);
    ok($el >= 0.9, sprintf 'the timeout waited ~1 s (%.2f s)', $el);
    like($ngx->error_log($mark), qr/timed out|timeout/i,
         'the timeout is logged');
    # the only connection was closed and replaced: a normal request
    # answers before the sleeping one would have finished
    ($el, $s, $h, $j) = timed_get($ngx, $id);
    is($s, 200, 'a normal request after the timeout: 200');
    is($j && $j->{cardCode}, $code, 'a normal request: the card');
    ok($el < 1.9, sprintf 'without waiting for the old query (%.2f s)', $el)
        unless under_valgrind();
    # again, twice in a row
    for my $n (1 .. 2) {
        ($el, $s) = timed_get($ngx, $id, prefix => '/slow');
        is($s, 503, "slow query again ($n): 503");
        ($el, $s) = timed_get($ngx, $id);
        is($s, 200, "normal query again ($n): 200");
    }
    $ngx->quit;
}

# --- server-side statement_timeout, prepared statements off ------------------

{
    my $ngx = card_nginx($env, nginx => { workers => 1 },
        http => 'ocdz_db_prepared off;',
        db_conf => 'ocdz_db_query_timeout 10s; ocdz_db_statement_timeout 1s;',
        server => slow_location(3));
    my $mark = $pg->log_mark;
    my ($el, $s, $h, $j) = timed_get($ngx, $id);
    is($s, 200, 'prepared off: 200');
    is($j && $j->{cardCode}, $code, 'prepared off: the card');
    ($el, $s) = timed_get($ngx, random_topup_id());
    is($s, 404, 'prepared off: 404');
    ($s) = card_get($ngx, $id);
    is($s, 401, 'prepared off: 401');
    my $tid = new_order($env, user_id => 'u1', status => 'QUEUED');
    ($el, $s, $h, $j) = timed_get($ngx, $tid);
    is($s, 409, 'prepared off: 409');
    is($j && $j->{status}, 'QUEUED', 'prepared off: status');
    my ($bad) = new_card($env);
    $pg->psql("UPDATE ocdz.orders SET card_enc = 'ocdz1.k1.AAAA' "
              . "WHERE topup_id = '$bad'");
    ($el, $s) = timed_get($ngx, $bad);
    is($s, 500, 'prepared off: a broken card 500');
    is_deeply([audit_events($env, $bad)],
              ['CARD_REVEALED', 'CARD_REVEAL_FAILED'],
              'prepared off: the failure audited');
    my $log = $pg->log_content($mark);
    like($log, qr/ocdz_module\@postgres LOG:  execute <unnamed>:/,
         'prepared off: unnamed statements');
    unlike($log, qr/execute ocdz_s\d/, 'prepared off: no named statement');

    # statement_timeout: the server cancels, the request gets 503
    ($el, $s, $h, $j) = timed_get($ngx, $id, prefix => '/slow');
    unavailable('statement_timeout 1s', $el, $s, $h, $j, [2.9]);
    ($el, $s) = timed_get($ngx, $id);
    is($s, 200, 'after statement_timeout: 200');
    $ngx->quit(check_log => 1);
}

# --- TLS to PostgreSQL -------------------------------------------------------

{
    my $tenv = card_env(pg => { ssl => 1 });
    my $tpg = $tenv->{pg};
    my $ttok = $tpg->add_session(random_token(), 'u1');
    my $ca = $tpg->ssl_ca_file;
    for my $c (['require', $tpg->conninfo(sslmode => 'require')],
               ['verify-full', $tpg->conninfo(sslmode => 'verify-full',
                                              sslrootcert => $ca)]) {
        my ($mode, $ci) = @$c;
        my $ngx = card_nginx($tenv, db => $ci);
        my @ids = map { [new_card($tenv)] } 1 .. 3;
        for my $n (1 .. 3) {
            for my $x (@ids) {
                my ($s, $h, $j) = card_get($ngx, $x->[0], token => $ttok);
                is($s, 200, "TLS $mode: card $n");
                is($j && $j->{cardCode}, $x->[1], "TLS $mode: code $n");
            }
        }
        is($tpg->value("SELECT count(*) FROM pg_stat_ssl s JOIN "
                       . "pg_stat_activity a USING (pid) WHERE a.usename = "
                       . "'ocdz_module' AND NOT s.ssl"), 0,
           "TLS $mode: every module connection uses TLS");
        ok($tpg->value("SELECT count(*) FROM pg_stat_ssl s JOIN "
                       . "pg_stat_activity a USING (pid) WHERE a.usename = "
                       . "'ocdz_module' AND s.ssl") >= 1,
           "TLS $mode: a TLS connection");
        my ($s) = card_get($ngx, random_topup_id(), token => $ttok);
        is($s, 404, "TLS $mode: 404");
        $tpg->terminate_backends;
        my @st;
        for (1 .. 3) {
            ($s) = card_get($ngx, $ids[0][0], token => $ttok);
            push @st, $s;
        }
        is($st[-1], 200, "TLS $mode: recovers after terminated backends "
                         . "(@st)");
        $ngx->quit;
    }
    hygiene($tenv);
}

hygiene($env);
done_testing;

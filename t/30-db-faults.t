# PostgreSQL faults under load (issue #6): while clients reveal cards
# and the poller fulfils orders, PostgreSQL is stopped (-m fast), restarted
# (-m immediate), its module backends are killed again and again, a
# lock makes every statement hang past ocdz_db_query_timeout, the whole
# server is frozen (SIGSTOP: connections and connects hang), and the
# pool is exhausted. Every answer is a 200 with the right card or a 503
# SERVICE_UNAVAILABLE with Retry-After (a 401 never needs the database),
# none takes longer than the timeouts allow, the pool recovers by itself
# without a reload and without leaking connections, no worker dies, and
# every order the poller handled is FULFILLED exactly once with one
# CARD_STORED row. (Faults between requests of an idle pool are in
# t/13-card-db-faults.t.)

use v5.36;
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Poller qw(:all);
use Ocdz::Load;

require_module();
plan skip_all => 'load on one valgrind process: the ASan run covers it'
    if under_valgrind();

my $QT = 2;             # ocdz_db_query_timeout
my $CT = 2;             # ocdz_db_connect_timeout
# the longest a request may take: a wait in the queue (query timeout),
# a connect, then the statement (query timeout), and some slack
my $BOUND = (2 * $QT + $CT + 2) * slow_factor();

# synchronous_commit on: an immediate stop must not lose what the tests
# (or the module) committed just before it
my $env = card_env(pg => { log_statement => 'none',
                           settings => { synchronous_commit => 'on' } });
my $pg = $env->{pg};
my $mock = Ocdz::Test::Mock->start;

# every PostgreSQL process of our cluster gets SIGCONT whatever happens
my $frozen = 0;
END { thaw() if $frozen }

# started once the stored cards exist: the poller must not see them PENDING
my $ngx = card_nginx($env, nginx => { mock => $mock, workers => 2 }, start => 0,
    db_conf => "ocdz_db_connect_timeout ${CT}s; ocdz_db_query_timeout ${QT}s;"
             . ' ocdz_db_statement_timeout 0; ocdz_db_retry_delay 500ms;',
    http => "    ocdz_db_pool_size 2;\n    ocdz_db_queue 16;\n"
            . poller_directives(),
    server => slow_location(0.5));

my $tok = $pg->add_session(random_token(), 'u1');
my $tok2 = $pg->add_session(random_token(), 'u2');
my @cards = map { [new_card($env, user => 'u1')] } 1 .. 4;
$ngx->start;
my @workers = $ngx->worker_pids;

# --- answers ---------------------------------------------------------------

sub unavailable ($h, $j) {
    return 'a 503 that is not SERVICE_UNAVAILABLE'
        unless ref $j && $j->{error} eq 'SERVICE_UNAVAILABLE'
               && !$j->{success};
    return 'a 503 without Retry-After'
        unless ($h->{'retry-after'} // '') =~ /^\d+$/;
    return 'a 503 without Cache-Control: no-store'
        unless ($h->{'cache-control'} // '') eq 'no-store';
    return undef;
}

sub card_check ($code) {
    return sub ($s, $h, $j, $raw) {
        return $s == 503 ? unavailable($h, $j)
             : $s != 200 ? "status $s"
             : (ref $j && ($j->{cardCode} // '') eq $code) ? undef
             : 'a 200 without the card';
    };
}

my @requests = (
    (map { my ($id, $code) = @$_;
           { name => 'card', path => card_path($id),
             headers => { Authorization => "Bearer $tok" },
             check => card_check($code) } } @cards),
    { name => 'notfound', path => card_path(random_topup_id()),
      headers => { Authorization => "Bearer $tok" },
      check => sub ($s, $h, $j, $raw) {
          $s == 503 ? unavailable($h, $j)
          : $s == 404 && ref $j && $j->{error} eq 'ORDER_NOT_FOUND' ? undef
          : "status $s" } },
    # no token: refused without asking the database, whatever its state
    { name => 'nosession', path => card_path($cards[0][0]),
      check => sub ($s, $h, $j, $raw) {
          $s == 401 && ref $j && $j->{error} eq 'SESSION_REQUIRED' ? undef
          : "status $s" } },
);

# --- the poller's orders ----------------------------------------------------

my %orders;             # id => 1: every order the poller must fulfil

sub more_orders ($n) {
    for (1 .. $n) {
        my $id = random_topup_id();
        $mock->set_order($id, status => 'HANDLING',
                         card_code => random_card_code(),
                         fulfil_after_checks => 1, then => 'FULFILLED');
        $pg->insert_order(topup_id => $id, user_id => 'u2');
        $orders{$id} = 1;
    }
}

# --- PostgreSQL processes ---------------------------------------------------

sub pg_pids () {
    my ($master) = slurp($pg->data_dir . '/postmaster.pid') =~ /^(\d+)/;
    return () unless $master;
    my @p = ($master);
    opendir my $dh, '/proc' or return @p;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $st = slurp("/proc/$pid/stat");
        push @p, $pid if $st =~ /^\d+ \(.*\) \S (\d+)/s && $1 == $master;
    }
    return @p;
}

sub freeze () { $frozen = 1; kill 'STOP', pg_pids() }
sub thaw ()   { kill 'CONT', pg_pids(); $frozen = 0 }

# --- a phase: load, a fault, recovery ---------------------------------------

# $fault->() injects and returns [start, end] of the window in which the
# database was unusable (undef: no such window); it must undo the fault.
sub phase ($name, $fault, %o) {
    my $load = Ocdz::Load->start($ngx, clients => $o{clients} // 4,
                                 requests => $o{requests} // \@requests);
    ok($load->wait_good(n => 6, timeout => 30), "$name: good answers first");
    more_orders($o{orders} // 3);
    my $window = $fault->();
    ok($load->wait_good(n => 12, timeout => 30),
       "$name: recovered by itself");
    my @r = $load->stop;
    my @bad = grep { $_->{err} ne '' } @r;
    ok(!@bad, "$name: every answer is right (" . scalar(@r) . ' answers)')
        or diag join "\n", Ocdz::Load->failures(\@r);
    my $max = Ocdz::Load->max_elapsed(\@r);
    ok($max <= $BOUND, sprintf "$name: the slowest answer took %.2f s "
                               . "(<= %.1f s)", $max, $BOUND);
    my @card = grep { $_->{name} eq 'card' } @r;
    my $n503 = grep { $_->{status} == 503 } @card;
    if ($window) {
        my ($from, $to) = @$window;
        my @in = grep { $_->{t} >= $from && $_->{t} + $_->{el} <= $to }
                 @card;
        ok(@in && !grep({ $_->{status} != 503 } @in),
           "$name: every card request while the database was unusable "
           . 'answered 503 (' . scalar(@in) . ')')
            or diag join "\n", map { sprintf '%.3f-%.3f %s %d', $_->{t},
                $_->{t} + $_->{el}, $_->{name}, $_->{status} }
                grep { $_->{status} != 503 } @in;
        diag sprintf 'window %.3f-%.3f', $from, $to;
    }
    ok($n503 >= ($o{min_503} // 1), "$name: the fault was felt ($n503 "
                                     . 'answers 503)');
    diag sprintf "%s: %d answers, %d x 503, slowest %.2f s", $name,
        scalar(@r), $n503, $max;
    return @r;
}

# baseline: nothing fails
{
    my $load = Ocdz::Load->start($ngx, clients => 3, requests => \@requests);
    more_orders(3);
    sleep 2;
    my @r = $load->stop;
    ok(@r >= 10 && !grep({ $_->{err} ne '' || $_->{status} == 503 } @r),
       'baseline: every answer right, none 503 (' . scalar(@r) . ')')
        or diag join "\n", Ocdz::Load->failures(\@r);
}

phase('PostgreSQL stopped (fast) under load', sub {
    $pg->stop('fast');
    my $from = time;
    sleep 3;
    my $to = time;
    $pg->start;
    return [$from, $to];
});

phase('PostgreSQL restarted (immediate) under load', sub {
    $pg->restart('immediate');
    return undef;
});

phase('PostgreSQL stopped (immediate) under load', sub {
    $pg->stop('immediate');
    my $from = time;
    sleep 2;
    my $to = time;
    $pg->start;
    return [$from, $to];
});

phase('pg_terminate_backend again and again under load', sub {
    for my $round (1 .. 6) {
        wait_until(sub { $pg->backends >= 1 }, timeout => 10);
        ok($pg->terminate_backends >= 1, "terminate round $round: backends "
                                         . 'killed');
        sleep 0.7;
    }
    return undef;
});

# every statement touching ocdz.orders waits for a lock past the timeout
phase('a lock holds every statement past the query timeout', sub {
    my $hold = 3 * $QT + 1;
    my $t0 = time;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        run_cmd(['psql', '-X', '-q', '-h', $pg->socket_dir, '-p', $pg->port,
                 '-U', 'postgres', '-d', 'postgres', '-c',
                 "BEGIN; LOCK TABLE ocdz.orders IN ACCESS EXCLUSIVE MODE; "
                 . "SELECT pg_sleep($hold); COMMIT;"], timeout => 60);
        POSIX::_exit(0);
    }
    ok(wait_until(sub { $pg->value("SELECT count(*) FROM pg_locks l JOIN "
        . "pg_class c ON c.oid = l.relation WHERE c.relname = 'orders' "
        . "AND l.mode = 'AccessExclusiveLock' AND l.granted") > 0 },
        timeout => 10), 'the lock is held');
    my $from = time;
    waitpid($pid, 0);
    # held at least until $t0 + $hold; a little less for the clocks
    return [$from, $t0 + $hold - 0.1];
}, min_503 => 2);

# the whole server stops answering: statements and connects hang
phase('PostgreSQL frozen (SIGSTOP) under load', sub {
    freeze();
    my $from = time;
    sleep 2 * $QT + $CT;
    my $to = time;
    thaw();
    return [$from, $to];
});

# the pool exhausted: slow statements on 2 connections, a queue of 16
{
    my $slow = { name => 'card', path => card_path($cards[0][0], '/slow'),
                 headers => { Authorization => "Bearer $tok" },
                 check => card_check($cards[0][1]) };
    my $load = Ocdz::Load->start($ngx, clients => 24, requests => [$slow]);
    sleep 5;
    my @r = $load->stop;
    my @bad = grep { $_->{err} ne '' } @r;
    ok(!@bad, 'pool exhausted: every answer 200 or 503 ('
              . scalar(@r) . ')') or diag join "\n", Ocdz::Load->failures(\@r);
    my $max = Ocdz::Load->max_elapsed(\@r);
    ok($max <= $BOUND, sprintf 'pool exhausted: slowest %.2f s', $max);
    diag sprintf 'pool exhausted: %d answers, %d x 200, %d x 503',
        scalar(@r), scalar(grep { $_->{status} == 200 } @r),
        scalar(grep { $_->{status} == 503 } @r);
    my ($s) = card_get($ngx, $cards[1][0], token => $tok);
    is($s, 200, 'after the pool was exhausted: 200');
}

# --- afterwards -------------------------------------------------------------

is_deeply([$ngx->worker_pids], \@workers, 'no worker died or was replaced');
ok(wait_until(sub { $pg->backends <= 2 * 2 }, timeout => 15),
   'no more connections than the pools hold (' . $pg->backends . ')');

my @ids = sort keys %orders;
ok(wait_until(sub {
    $pg->value("SELECT count(*) FROM ocdz.orders WHERE status = 'FULFILLED' "
               . 'AND topup_id IN (' . join(',', map { "'$_'" } @ids) . ')')
        == @ids }, timeout => 60),
   'the poller fulfilled all ' . scalar(@ids) . ' orders despite the faults')
    or diag explain [$pg->hashes("SELECT topup_id, status, attempts, "
        . "last_error FROM ocdz.orders WHERE status <> 'FULFILLED'")];
my %stored = map { $_->[0] => $_->[1] } $pg->psql("SELECT topup_id, count(*) "
    . "FROM ocdz.audit WHERE event = 'CARD_STORED' GROUP BY topup_id");
my @not_once = grep { ($stored{$_} // 0) != 1 } @ids;
ok(!@not_once, 'exactly one CARD_STORED row per order')
    or diag join ', ', map { "$_: " . ($stored{$_} // 0) } @not_once;
my @wrong;
for my $id (@ids) {
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok2);
    my $want = $mock->order($id)->{card_code};
    push @wrong, "$id: $s" unless $s == 200 && ($j->{cardCode} // '') eq $want;
    push @{ $env->{codes} }, $want;
}
ok(!@wrong, 'every stored card opens to the code upstream gave')
    or diag "@wrong";

$ngx->quit;
hygiene($env);
done_testing;

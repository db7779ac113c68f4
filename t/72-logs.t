use v5.36;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Poller qw(:all);
use Ocdz::Test::Env qw(PYTHON repo_root);
use Ocdz::Test::Proc qw(spawn);
use IO::Socket::INET;
require_module();

# Error logs an operator can act on, once (issue 14): at Debian's
# default level "error", a failure that stops checks or reveals is one
# [error] line per worker when it starts and one when it ends, with
# what happened meanwhile; its repeats are counted, not printed.

my ($pg, $mock, $dir) = poller_env();

# A TCP forwarder on loopback whose target port is read from a file at
# each connection: the API's address stays, what answers there changes
# (a certificate nobody trusts, then the mock's).
my $fwd_port = free_port();
my $fwd_target = "$dir/target";
replace_file($fwd_target, $mock->{extra}{rogue});
my $fwd_pid = spawn([PYTHON, repo_root() . '/t/lib/tcp_forward.py',
                     '127.0.0.1', $fwd_port, $fwd_target],
                    log => "$dir/fwd.log");
END { kill 'KILL', $fwd_pid if $fwd_pid }
ok(wait_until(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$fwd_port") },
              timeout => 10), 'the forwarder listens');

my $conf = poller_conf(directives => [
    api_base => "https://127.0.0.1:$fwd_port",
    api_connect_timeout => '1s',
    poller_interval => '200ms',
    poller_pause => '1s',
    poller_concurrency => 4]);

my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
    error_log_level => 'error', vars => { DIR => $dir }, conf => $conf);
$ngx->start;
my @pids = $ngx->worker_pids;
is(scalar @pids, 2, 'two workers');

# each worker's lines matching $re: { pid => count }
sub per_worker ($log, $re) {
    my %n;
    for my $l (split /\n/, $log) {
        next unless $l =~ $re;
        my ($pid) = $l =~ /\[\w+\] (\d+)#/;
        $n{$pid // '?'}++;
    }
    return \%n;
}

sub at_most_one_each ($n, $name) {
    my @over = grep { $n->{$_} > 1 } keys %$n;
    ok(!@over && %$n, "$name: at most one per worker, at least one ("
       . join(', ', map { "$_: $n->{$_}" } sort keys %$n) . ')');
}

# --- an upstream TLS failure ------------------------------------------------

{
    my @ids = map { my $id = random_topup_id();
                    $mock->set_order($id, status => 'FULFILLED');
                    $pg->insert_order(topup_id => $id); $id } 1 .. 8;
    # both workers fail checks for a while
    ok(wait_until(sub {
        $pg->value("SELECT count(*) FROM ocdz.orders WHERE attempts >= 3") >= 6
    }, timeout => 15), 'checks fail again and again');
    sleep 1;
    my $log = $ngx->error_log;
    my $start = per_worker($log,
        qr/\[error\].*ocdz poller: API unreachable \(TLS\): .*curl 60/);
    at_most_one_each($start, 'TLS failure: one start line');
    like($log, qr/\[error\].*ocdz poller: API unreachable \(TLS\): SSL certificate problem: self.signed certificate \(curl 60\)/,
         'the start line has the curl error text');
    my @errors = grep { /\[error\]/ } split /\n/, $log;
    my $fails = $pg->value('SELECT sum(attempts) FROM ocdz.orders');
    ok(@errors <= 2 && $fails > 2 * @errors,
       scalar(@errors) . " [error] lines for $fails failed checks")
        or diag join "\n", @errors;

    # the API answers again: one end line per worker that started
    replace_file($fwd_target, $mock->port);
    ok(wait_until(sub {
        $pg->value("SELECT count(*) FROM ocdz.orders WHERE status = 'FULFILLED'") == 8
    }, timeout => 20), 'after the fix, every order is fulfilled');
    # a worker ends its alarm when its own checks are answered: orders
    # keep coming until both have had one
    my $end;
    wait_until(sub {
        $log = $ngx->error_log;
        $end = per_worker($log,
            qr/\[error\].*ocdz poller: API unreachable \(TLS\) ended after \d+/);
        return 1 if keys %$end >= keys %$start;
        my $id = random_topup_id();
        $mock->set_order($id, status => 'FULFILLED');
        $pg->insert_order(topup_id => $id);
        sleep 0.3;
        return 0;
    }, timeout => 15);
    is_deeply($end, $start, 'one end line per worker that logged a start');
    my ($n) = $log =~ /API unreachable \(TLS\) ended after \S+, the API answers again: (\d+) checks failed meanwhile/;
    ok(($n // 0) > 1, "repeats counted: " . ($n // 'no') . ' failed checks');
    unlike($log, qr/\[warn\]/, 'no [warn] line at level error');
}

# --- a database outage of several seconds -----------------------------------

{
    my $mark = $ngx->log_mark;
    $pg->stop;
    my $t0 = time;
    # the pollers keep claiming (and failing) every few hundred ms
    sleep 5;
    $pg->start_server;
    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED');
    $pg->insert_order(topup_id => $id);
    order_is($pg, $id, sub { $_[0]{status} eq 'FULFILLED' },
             'after the outage, an order is fulfilled', 20);
    # each worker has reconnected (its claims come every second at most)
    sleep 2;
    my $log = $ngx->error_log($mark);
    my $start = per_worker($log,
        qr/\[error\].*ocdz pg: the database is unavailable: could not connect/);
    my $end = per_worker($log,
        qr/\[error\].*ocdz pg: the database is back after \d+s/);
    is(scalar(keys %$start), 2, 'both workers logged the outage');
    at_most_one_each($start, 'database outage: one start line');
    is_deeply($end, $start, 'one end line per worker');
    my @errors = grep { /\[error\]/ } split /\n/, $log;
    is(scalar @errors, 4, 'four [error] lines in all (' . scalar(@errors)
       . ')') or diag join "\n", @errors;
    my @attempts = $log =~ /database is back after \S+ \(database unavailable\): (\d+) failed connection attempts, (\d+) queries refused/g;
    ok(@attempts == 4 && $attempts[0] + $attempts[2] > 2
       && $attempts[1] + $attempts[3] > 2,
       "failures and refusals counted (@attempts)");
    like($log, qr/database is back after [4-9]s|database is back after 1\ds/,
         'the duration is the outage\'s');
}

# --- a schema too old (reconnects refused) ------------------------------------

{
    my $mark = $ngx->log_mark;
    $pg->psql('CREATE TABLE ocdz.sv_saved AS SELECT * FROM ocdz.schema_version;'
              . ' DELETE FROM ocdz.schema_version;');
    $pg->psql('SELECT pg_terminate_backend(pid) FROM pg_stat_activity'
              . ' WHERE pid <> pg_backend_pid() AND backend_type = \'client backend\'');
    ok(wait_until(sub {
        keys %{ per_worker($ngx->error_log($mark), qr/\[error\].*ocdz pg: the database is unavailable: database schema version 0 is older/) } == 2
    }, timeout => 15), 'both workers say the schema is too old');
    sleep 3;    # their pollers keep claiming: refused
    $pg->psql('INSERT INTO ocdz.schema_version SELECT * FROM ocdz.sv_saved;'
              . ' DROP TABLE ocdz.sv_saved;');
    ok(wait_until(sub {
        keys %{ per_worker($ngx->error_log($mark), qr/\[error\].*ocdz pg: the database is back after \S+ \(database schema too old\)/) } == 2
    }, timeout => 15), 'both workers say it is fixed');
    my $log = $ngx->error_log($mark);
    my $start = per_worker($log, qr/\[error\].*schema version 0 is older/);
    at_most_one_each($start, 'schema too old: one start line');
    my @errors = grep { /\[error\]/ } split /\n/, $log;
    is(scalar @errors, 4, 'four [error] lines in all') or diag join "\n", @errors;
}

# --- access refused upstream (401, no secondary token) ------------------------

{
    my $mark = $ngx->log_mark;
    $mock->reset_requests;
    $mock->set_tokens('tok_someone_else');
    my @ids = map { my $id = random_topup_id();
                    $mock->set_order($id, status => 'FULFILLED');
                    $pg->insert_order(topup_id => $id); $id } 1 .. 4;
    # every check pauses for 1 s, then is refused again
    ok(wait_until(sub {
        my @r = $mock->requests(path => qr/check-id/);
        @r >= 6 && $ngx->error_log($mark) =~ /API access refused/
    }, timeout => 15), 'checks are refused again and again');
    sleep 2;
    $mock->set_tokens($mock->token);
    unpause($pg);
    my $in = join ',', map { "'$_'" } @ids;
    ok(wait_until(sub {
        $pg->value("SELECT count(*) FROM ocdz.orders WHERE topup_id IN ($in)"
                   . " AND status = 'FULFILLED'") == 4
    }, timeout => 20), 'with the token accepted again, the orders are fulfilled');
    my $log = $ngx->error_log($mark);
    my $start = per_worker($log,
        qr/\[error\].*ocdz poller: API access refused: OneClickDz rejected the access token \(HTTP 401/);
    at_most_one_each($start, '401: one start line');
    my @other = grep { /\[error\]/ && !/API access refused/ } split /\n/, $log;
    is(scalar @other, 0, 'no other [error] line (the pauses are [info])')
        or diag join "\n", @other;
    like($log, qr/\[error\].*API access refused ended after \S+, the API answers again: (\d+) checks failed/,
         'its end is logged with the refused checks counted');
}

$ngx->stop;
done_testing;

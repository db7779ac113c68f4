# nginx itself under load (issue #6): reloads (HUP) while clients reveal
# cards and the poller has checks in flight, worker processes killed
# (SIGKILL) in the middle of it, and graceful quits (QUIT) with reveals
# waiting on the database. The master respawns killed workers and work
# resumes; a reload or a quit never cuts an answer; every order ends
# FULFILLED exactly once, with exactly one CARD_STORED audit row, and
# its card opens to the code upstream gave; nothing stays leased.

use v5.36;
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Poller qw(:all);
use Ocdz::Load;

require_module();
plan skip_all => 'no worker processes under valgrind' if single_process();

my $env = card_env(pg => { log_statement => 'none' });
my $pg = $env->{pg};
my $mock = Ocdz::Test::Mock->start;
my $tok = $pg->add_session(random_token(), 'u1');

# started once the stored cards exist: the poller must not see them PENDING
my $ngx = card_nginx($env, start => 0, nginx => { mock => $mock, workers => 2,
                                      main => 'worker_shutdown_timeout 15s;' },
    http => poller_directives(api_timeout => '3s', poller_lease => '5s',
                              poller_concurrency => 4),
    server => slow_location(1));

# --- orders: stored cards, and orders the poller fulfils under load ---------

my @cards = map { [new_card($env, user => 'u1')] } 1 .. 3;
$ngx->start;
my %code;               # poller orders: id => code upstream
my @pending;

sub more_orders ($n) {
    for (1 .. $n) {
        my $id = random_topup_id();
        my $code = random_card_code();
        $mock->set_order($id, status => 'HANDLING', card_code => $code,
                         fulfil_after_checks => 1 + int(rand 2),
                         then => 'FULFILLED');
        # some checks are slow: in flight when a worker goes
        $mock->fault('delay', id => $id, delay_ms => 700, count => 2)
            if rand() < 0.5;
        $pg->insert_order(topup_id => $id, user_id => 'u1');
        $code{$id} = $code;
        push @{ $env->{codes} }, $code;
        push @pending, $id;
    }
}

sub check_card ($want, $pending) {
    return sub ($s, $h, $j, $raw) {
        return undef if $s == 200 && ref $j && ($j->{cardCode} // '') eq $want;
        return undef if $pending && $s == 409 && ref $j
                        && $j->{error} eq 'ORDER_NOT_READY';
        return "status $s " . substr($raw // '', 0, 80);
    };
}

more_orders(6);
my @requests = (
    (map { { name => 'card', path => card_path($_->[0]),
             headers => { Authorization => "Bearer $tok" },
             check => check_card($_->[1], 0) } } @cards),
    (map { { name => 'pending', path => card_path($_),
             headers => { Authorization => "Bearer $tok" },
             check => check_card($code{$_}, 1) } } @pending),
);

sub load (%o) {
    my $l = Ocdz::Load->start($ngx, clients => 4, pause => 0.01,
                              requests => \@requests, %o);
    ok($l->wait_good(n => 6, timeout => 20), 'the load runs');
    return $l;
}

# answers must all be right; $may_drop: a killed worker's requests may
# get no answer at all
sub judge ($what, $r, $may_drop = 0) {
    my @bad = grep { $_->{err} ne ''
                     && !($may_drop && $_->{status} == 0) } @$r;
    my $dropped = grep { $_->{status} == 0 } @$r;
    return ok(@$r > 20 && !@bad, "$what: every answer right ("
              . scalar(@$r) . " answers, $dropped without answer)")
        || diag join "\n", Ocdz::Load->failures(\@bad);
}

# --- HUP under load ---------------------------------------------------------

{
    my $l = load();
    for my $n (1 .. 3) {
        more_orders(3);
        ok($ngx->reload(timeout => 20), "reload $n under load");
    }
    ok($l->wait_good(n => 8, timeout => 20), 'answers after the reloads');
    judge('reloads (HUP) under load', [$l->stop]);
}

# --- SIGKILL a worker under load --------------------------------------------

{
    my $l = load();
    for my $n (1 .. 3) {
        more_orders(3);
        my @w = $ngx->worker_pids;
        is(scalar @w, 2, "kill $n: two workers");
        my $victim = $w[int rand @w];
        # a string, not a qr//: it outlives global destruction
        $ngx->expect("worker process $victim exited on signal 9");
        kill 'KILL', $victim;
        ok(wait_until(sub {
               my @now = $ngx->worker_pids;
               @now == 2 && !grep { $_ == $victim } @now
           }, timeout => 15), "kill $n: the master respawned worker $victim");
        ok($l->wait_good(n => 8, timeout => 20), "kill $n: work resumes");
    }
    like($ngx->error_log, qr/exited on signal 9/, 'the kills are logged');
    judge('workers killed under load', [$l->stop], 1);
}

# --- QUIT with reveals waiting on the database ------------------------------

{
    more_orders(3);
    my $quit_file = tmpdir() . '/quit';
    my $l = load(flag_file => $quit_file);
    my @slow;
    for my $i (1 .. 4) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $rd;
            my ($s, $h, $j) = card_get($ngx, $cards[0][0], prefix => '/slow',
                                       token => $tok);
            print $wr "$s ", ($j && $j->{cardCode} // '-');
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @slow, [$pid, $rd];
    }
    # the four statements are running (pg_sleep) when QUIT comes
    ok(wait_until(sub { $pg->value("SELECT count(*) FROM pg_stat_activity "
                                   . "WHERE query LIKE '%pg_sleep(1)%' AND "
                                   . "usename = 'ocdz_module' AND state = "
                                   . "'active'") >= 2 }, timeout => 10),
       'slow reveals in flight');
    ok(wait_until(sub { (my @r = $l->results) >= 30 }, timeout => 20),
       'answers before QUIT');
    write_file($quit_file, '');
    my $t0 = time;
    is($ngx->quit(timeout => 30), 0, 'QUIT under load: nginx exits cleanly');
    my $took = time - $t0;
    my @got;
    for my $k (@slow) {
        my $fh = $k->[1];
        local $/;
        push @got, scalar(<$fh>) // '';
        waitpid($k->[0], 0);
    }
    is_deeply(\@got, [("200 $cards[0][1]") x 4],
              'QUIT: the reveals in flight were answered, not cut');
    diag sprintf 'graceful quit took %.2f s', $took;
    my @r = $l->stop;
    # answers complete before QUIT was sent are all right; after it the
    # listening sockets close and clients may get no connection
    my @before = grep { !$_->{flag} } @r;
    judge('before QUIT', \@before);
    # a connection still in the listen queue when the workers close
    # their listening sockets is reset by the kernel before one byte of
    # an answer: nginx's own shutdown, not an answer cut
    my @cut = grep { $_->{status} == 0 && $_->{err} !~ /connect/
                     && !($_->{flag}
                          && $_->{err} =~ /^no answer: read: Connection reset/)
                   } @r;
    ok(!@cut, 'QUIT: no answer cut half way')
        or diag join "\n", Ocdz::Load->failures(\@cut);

    $ngx->start;
    my $l2 = load();
    more_orders(3);
    ok($ngx->reload(timeout => 20), 'started again, and a reload');
    ok($l2->wait_good(n => 8, timeout => 20), 'work resumes after the quit');
    judge('after starting again', [$l2->stop]);
}

# --- the database at the end ------------------------------------------------

my $list = join ',', map { "'$_'" } @pending;
ok(wait_until(sub {
    $pg->value("SELECT count(*) FROM ocdz.orders WHERE status = 'FULFILLED' "
               . "AND topup_id IN ($list)") == @pending }, timeout => 60),
   'every one of ' . scalar(@pending) . ' orders FULFILLED')
    or diag explain [$pg->hashes("SELECT topup_id, status, attempts, "
        . "last_error, lease_until FROM ocdz.orders WHERE status <> "
        . "'FULFILLED'")];
my %stored = map { $_->[0] => $_->[1] } $pg->psql("SELECT topup_id, count(*) "
    . "FROM ocdz.audit WHERE event = 'CARD_STORED' GROUP BY topup_id");
my @not_once = grep { ($stored{$_} // 0) != 1 } @pending;
ok(!@not_once, 'exactly one CARD_STORED row per order')
    or diag join ', ', map { "$_: " . ($stored{$_} // 0) } @not_once;
is($pg->value("SELECT count(*) FROM ocdz.audit WHERE event = 'CARD_STORED'"),
   scalar @pending, 'and no other CARD_STORED row');
is($pg->value("SELECT count(*) FROM ocdz.orders WHERE lease_token IS NOT "
              . "NULL"), 0, 'no lease left');
my @wrong;
for my $id (@pending) {
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok);
    push @wrong, "$id: $s" unless $s == 200
                                  && ($j->{cardCode} // '') eq $code{$id};
}
ok(!@wrong, 'every card opens to the code upstream gave') or diag "@wrong";

$ngx->quit;
hygiene($env);
done_testing;

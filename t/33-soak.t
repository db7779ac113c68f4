# A bounded soak (issue #6): for OCDZ_SOAK_SECONDS (default 60) clients
# reveal cards (their own, someone else's, orders not ready yet or
# refunded, without a session, HEAD) while the poller works through
# orders that come due one after another, and faults are injected at
# random: backends killed, PostgreSQL restarted, the upstream failing in
# every way the mock knows, reloads, a worker killed. Then a full
# consistency check: every answer was right for its moment, every order
# reached the state upstream gave it, each fulfilled one exactly once
# with one CARD_STORED row and the right card, refunded ones hold no
# card, no lease is left, reveals are audited for their owners only and
# at least once per card sent. (There is no outbox table yet; when one
# appears it is checked for rows left unsent.)

use v5.36;
use Test::More;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Poller qw(:all);
use Ocdz::Load;

require_module();
plan skip_all => 'a soak under valgrind: the ASan run covers it'
    if under_valgrind();

my $SECONDS = $ENV{OCDZ_SOAK_SECONDS} // 60;
my $workers = !single_process();

my $env = card_env(pg => { log_statement => 'none',
                           settings => { synchronous_commit => 'on' } });
my $pg = $env->{pg};
my $mock = Ocdz::Test::Mock->start;

# started once the orders exist: the poller must not see stored cards
# PENDING
my $ngx = card_nginx($env, start => 0, nginx => { mock => $mock, workers => 2,
                                      main => 'worker_shutdown_timeout 10s;' },
    db_conf => 'ocdz_db_connect_timeout 3s; ocdz_db_query_timeout 3s; '
             . 'ocdz_db_retry_delay 300ms;',
    http => "    ocdz_db_pool_size 3;\n"
            . poller_directives(poller_pause => '1s',
                                poller_retry_after_max => '2s',
                                poller_concurrency => 4));

my @users = qw(alice bob carol);
my %tok = map { $_ => $pg->add_session(random_token(), $_) } @users;

# stored cards, and orders coming due over the soak
my (%owner, %code, %final, @stored, @poll);
for my $u (@users) {
    for (1 .. 2) {
        my ($id, $c) = new_card($env, user => $u);
        ($owner{$id}, $code{$id}, $final{$id}) = ($u, $c, 'FULFILLED');
        push @stored, $id;
    }
}
my $norders = int($SECONDS / 2) + 12;
for my $i (1 .. $norders) {
    my $u = $users[$i % @users];
    my $id = random_topup_id();
    my $c = random_card_code();
    my $refund = $i % 7 == 0;
    $mock->set_order($id, status => 'HANDLING', card_code => $c,
                     fulfil_after_checks => int(rand 3),
                     then => $refund ? 'REFUNDED' : 'FULFILLED',
                     $refund ? (refund_message => 'balance') : ());
    my $due = int(($i - 1) * $SECONDS * 0.8 / $norders);
    $pg->insert_order(topup_id => $id, user_id => $u,
                      next_check_at => "now() + interval '$due seconds'");
    ($owner{$id}, $code{$id}) = ($u, $c);
    $final{$id} = $refund ? 'REFUNDED' : 'FULFILLED';
    push @{ $env->{codes} }, $c;
    push @poll, $id;
}
$ngx->start;

# --- what every answer may be -----------------------------------------------

sub unavailable ($h, $j) {
    return ref $j && $j->{error} eq 'SERVICE_UNAVAILABLE'
           && ($h->{'retry-after'} // '') =~ /^\d+$/ ? undef : 'bad 503';
}

sub error_is ($j, $code) {
    return ref $j && !$j->{success} && ($j->{error} // '') eq $code
           && length($j->{message} // '') ? undef : "not $code";
}

# the owner asks for an order: its card, or why not yet
sub owner_check ($id) {
    my ($want, $final) = ($code{$id}, $final{$id});
    return sub ($s, $h, $j, $raw) {
        return unavailable($h, $j) if $s == 503;
        return ref $j && ($j->{cardCode} // '') eq $want ? undef
                                                         : 'wrong card'
            if $s == 200 && $final eq 'FULFILLED';
        return error_is($j, 'ORDER_NOT_READY') if $s == 409;
        return error_is($j, 'ORDER_REFUNDED')
            if $s == 410 && $final eq 'REFUNDED';
        return "status $s";
    };
}

my @requests;
for my $id (@stored, @poll) {
    my $u = $owner{$id};
    my $other = $users[(1 + (grep { $users[$_] eq $u } 0 .. $#users)[0])
                       % @users];
    push @requests,
        { name => "own $id", path => card_path($id),
          headers => { Authorization => "Bearer $tok{$u}" },
          check => owner_check($id) },
        { name => "other $id", path => card_path($id),
          headers => { Cookie => "ocdz_session=$tok{$other}" },
          check => sub ($s, $h, $j, $raw) {
              $s == 503 ? unavailable($h, $j)
              : $s == 404 ? error_is($j, 'ORDER_NOT_FOUND')
              : "status $s" } };
}
push @requests,
    { name => 'nosession', path => card_path($stored[0]),
      headers => { Authorization => 'Bearer short' },
      check => sub ($s, $h, $j, $raw) {
          $s == 401 ? error_is($j, 'SESSION_REQUIRED') : "status $s" } },
    { name => "head $stored[1]", method => 'HEAD',
      path => card_path($stored[1]),
      headers => { Authorization => "Bearer $tok{$owner{$stored[1]}}" },
      check => sub ($s, $h, $j, $raw) {
          ($s == 200 || $s == 503) && ($raw // '') eq '' ? undef
                                                         : "status $s" } };

# --- the soak ---------------------------------------------------------------

my @faults = (
    [terminate => sub { $pg->terminate_backends }],
    [pg_restart => sub { $pg->restart('fast') }],
    [upstream_500 => sub { $mock->fault('status', code => 500, count => 3) }],
    [upstream_slow => sub { $mock->fault('delay', delay_ms => 1500,
                                         count => 3) }],
    [upstream_hang => sub { $mock->fault('hang', count => 2) }],
    [upstream_close => sub { $mock->fault('close', count => 2) }],
    [upstream_reset => sub { $mock->fault('reset', count => 2) }],
    [upstream_malformed => sub { $mock->fault('malformed', count => 2) }],
    [upstream_429 => sub { $mock->fault('rate_limit', retry_after => 1,
                                        count => 1) }],
    [tls_reset => sub { $mock->fault('tls_reset', count => 1) }],
    [reload => sub { $ngx->reload(timeout => 20) }],
    [kill_worker => sub {
        return unless $workers;
        my @w = $ngx->worker_pids or return;
        my $v = $w[int rand @w];
        $ngx->expect("worker process $v exited on signal 9");
        kill 'KILL', $v;
        wait_until(sub { $ngx->worker_pids == 2 }, timeout => 15);
     }],
);

my $load = Ocdz::Load->start($ngx, clients => 4, pause => 0.02,
                             requests => \@requests, timeout => 30);
my (%count, @kills);
my $end = time + $SECONDS;
while (time < $end) {
    sleep 0.5 + rand 2;
    my $f = $faults[int rand @faults];
    my $t = time;
    $f->[1]->();
    push @kills, [$t, time] if $f->[0] eq 'kill_worker';
    $count{ $f->[0] }++;
}
$mock->reset_faults;
$mock->release;
diag 'faults injected: ' . join ', ', map { "$_ $count{$_}" } sort keys %count;
ok($load->wait_good(n => 20, timeout => 30), 'good answers after the soak');
my @r = $load->stop;

# --- every answer -----------------------------------------------------------

# a worker killed: its requests in flight get no answer
sub near_kill ($r) {
    return grep { $r->{t} <= $_->[1] + 0.5 && $r->{t} + $r->{el} >= $_->[0]
                  - 0.5 } @kills;
}
my @bad = grep { $_->{err} ne '' && !($_->{status} == 0 && near_kill($_)) }
          @r;
ok(@r > 100 && !@bad, 'every answer during the soak was right ('
   . scalar(@r) . ' answers)') or diag join "\n", Ocdz::Load->failures(\@bad);
my %by = ();
$by{ $_->{status} }++ for @r;
diag 'answers: ' . join ', ', map { "$_ x $by{$_}" } sort keys %by;
my $slowest = Ocdz::Load->max_elapsed(\@r);
ok($slowest < 15 * slow_factor(), sprintf 'the slowest answer took %.1f s',
   $slowest);

# --- the database -----------------------------------------------------------

$pg->psql('UPDATE ocdz.poller_state SET paused_until = NULL');
my $list = join ',', map { "'$_'" } @poll;
ok(wait_until(sub {
    $pg->value("SELECT count(*) FROM ocdz.orders WHERE status IN "
               . "('FULFILLED', 'REFUNDED') AND topup_id IN ($list)") == @poll
   }, timeout => 60), "all $norders orders reached a final state")
    or do {
        diag explain [$pg->hashes("SELECT topup_id, status, attempts, "
            . "last_error, lease_until FROM ocdz.orders WHERE status NOT IN "
            . "('FULFILLED', 'REFUNDED')")];
        diag 'poller state: ' . join ' ', map { $_ // 'NULL' }
            @{ ($pg->psql('SELECT paused_until, pause_reason FROM '
                          . 'ocdz.poller_state'))[0] };
        my @l = grep { /poller|curl|ocdz pg/ && !/\[debug\]/ }
                split /\n/, $ngx->error_log;
        diag join "\n", @l[($#l > 40 ? $#l - 40 : 0) .. $#l];
        diag 'mock: ' . json_encode({ %{ $mock->stats }, per_id => undef });
    };

my %row = map { $_->{topup_id} => $_ } $pg->hashes('SELECT topup_id, user_id, '
    . 'status, card_enc IS NOT NULL AS has_card, lease_token FROM ocdz.orders');
my %stored_n = map { $_->[0] => $_->[1] } $pg->psql("SELECT topup_id, "
    . "count(*) FROM ocdz.audit WHERE event = 'CARD_STORED' GROUP BY 1");
my @wrong_state = grep { $row{$_}{status} ne $final{$_} } @poll;
ok(!@wrong_state, 'every order in the state upstream gave it')
    or diag join ', ', map { "$_ $row{$_}{status} (want $final{$_})" }
                       @wrong_state;
my @stored_wrong = grep { ($stored_n{$_} // 0)
                          != ($final{$_} eq 'FULFILLED' ? 1 : 0) } @poll;
ok(!@stored_wrong, 'exactly one CARD_STORED row per fulfilled order, none '
   . 'for refunded ones') or diag join ', ',
   map { "$_: " . ($stored_n{$_} // 0) } @stored_wrong;
is(scalar(grep { $final{$_} eq 'REFUNDED' && $row{$_}{has_card} eq 't' }
          @poll), 0, 'refunded orders hold no card');
is(scalar(grep { defined $row{$_}{lease_token} } keys %row), 0,
   'no lease left');

# reveals: audited for the owner only, at least once per card sent
my %revealed = map { $_->[0] => $_->[1] } $pg->psql("SELECT topup_id, "
    . "count(*) FROM ocdz.audit WHERE event = 'CARD_REVEALED' GROUP BY 1");
is($pg->value("SELECT count(*) FROM ocdz.audit a JOIN ocdz.orders o USING "
              . "(topup_id) WHERE a.event = 'CARD_REVEALED' AND a.user_id "
              . "<> o.user_id"), 0, 'no reveal audited for another user');
my (%sent, %asked);
for (@r) {
    next unless $_->{name} =~ /^own (\w+)/;
    $asked{$1}++;
    $sent{$1}++ if $_->{status} == 200;
}
my @under = grep { ($revealed{$_} // 0) < $sent{$_} } keys %sent;
ok(!@under, 'every card sent has its CARD_REVEALED row')
    or diag join ', ', map { "$_: $sent{$_} sent, "
                             . ($revealed{$_} // 0) . ' audited' } @under;
my @over = grep { ($revealed{$_} // 0) > ($asked{$_} // 0) } keys %revealed;
ok(!@over, 'no more CARD_REVEALED rows than requests')
    or diag join ', ', @over;

my @cards_wrong;
for my $id (grep { $final{$_} eq 'FULFILLED' } @poll, @stored) {
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok{ $owner{$id} });
    push @cards_wrong, "$id: $s"
        unless $s == 200 && ($j->{cardCode} // '') eq $code{$id};
}
ok(!@cards_wrong, 'every card opens to its code') or diag "@cards_wrong";

if ($pg->value("SELECT to_regclass('ocdz.outbox') IS NOT NULL") eq 't') {
    diag 'ocdz.outbox: ' . $pg->value('SELECT count(*) FROM ocdz.outbox')
        . ' rows';
} else {
    note 'no outbox table yet';
}

is(scalar($ngx->worker_pids), 2, 'two workers at the end') if $workers;
$ngx->quit;
hygiene($env);
done_testing;

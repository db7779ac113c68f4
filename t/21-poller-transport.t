use v5.36;
use utf8;
use Test::More;
use Ocdz::Test qw(:all);
use Ocdz::Poller qw(:all);
require_module();

my ($pg, $mock, $dir) = poller_env();

my $conf = poller_conf(directives => [api_base => '%%BASE%%',
                                      api_connect_timeout => '2s',
                                      poller_pause => '3s',
                                      poller_concurrency => 3]);

# TLS: a rogue certificate, then a certificate for another name
for my $c (['rogue', $mock->rogue_base_url, qr/certificate|SSL|curl 60/i],
           ['wrongname', $mock->wrongname_base_url,
            qr/certificate|SSL|curl 60|name/i]) {
    my ($what, $base, $re) = @$c;
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir, BASE => $base }, conf => $conf);
    $ngx->start;
    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED');
    $pg->insert_order(topup_id => $id);
    my $r = order_is($pg, $id, sub { ($_[0]{last_error} // '') ne '' }, "$what: fault");
    like($r->{last_error}, $re, "$what: $r->{last_error}");
    $ngx->stop;
    $pg->psql("DELETE FROM ocdz.orders");
}

my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
    vars => { DIR => $dir, BASE => $mock->base_url }, conf => $conf);
$ngx->start;

# concurrency: 20 orders with a slow upstream
{
    $mock->reset_requests;
    $mock->fault('delay', delay_ms => 300);
    my @ids = map { my $id = random_topup_id(); $mock->set_order($id, status => 'FULFILLED'); $pg->insert_order(topup_id => $id); $id } 1 .. 20;
    ok(wait_until(sub { $pg->value("SELECT count(*) FROM ocdz.orders WHERE status = 'FULFILLED'") == 20 }, timeout => 30), 'all 20 fulfilled');
    my $mi = $mock->max_inflight;
    ok($mi <= 6, "max inflight $mi <= 2 workers x 3");
    is($pg->value("SELECT count(*) FROM ocdz.audit WHERE event = 'CARD_STORED'"), 20, '20 audit rows');
    $mock->reset_faults;
}

# lease taken over: a write with an old token writes nothing
{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED');
    $mock->fault('delay', id => $id, delay_ms => 1500, count => 1);
    $pg->insert_order(topup_id => $id);
    ok(wait_until(sub { $mock->request_count($id) > 0 }, timeout => 10), 'check started');
    $pg->psql("UPDATE ocdz.orders SET lease_token = 'someoneelse', lease_until = now() + interval '1 hour' WHERE topup_id = '$id'");
    sleep 2.5;
    my $r = $pg->order($id);
    is($r->{status}, 'PENDING', 'taken over: nothing written');
    is($r->{lease_token}, 'someoneelse', 'lease kept');
    like($ngx->error_log, qr/top-up $id: lease lost/, 'lease lost logged');
}

# database down and back
{
    my $mark = $ngx->log_mark;
    $pg->stop;
    sleep 3;
    $pg->start;
    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED');
    $pg->insert_order(topup_id => $id);
    order_is($pg, $id, sub { $_[0]{status} eq 'FULFILLED' }, 'after db restart fulfilled', 15);
    my $l = $ngx->error_log($mark);
    my @down = $l =~ /\[error\].*ocdz pg: the database is unavailable/g;
    my @back = $l =~ /\[error\].*ocdz pg: the database is back after/g;
    ok(@down >= 1 && @down <= 2, "down logged once per worker (" . scalar(@down) . ")");
    ok(@back >= 1 && @back <= 2, "back logged (" . scalar(@back) . ")");
}

# reload with checks in flight, then TERM with checks in flight
#
# Not "4 in flight at once": one worker may claim all four (it has 6
# slots) and run only 3 of them (ocdz_poller_concurrency 3), until a
# check times out and the other worker happens to claim the order; a
# race this test once lost. What it must show is that every order is
# checked again by the new workers (the old workers give their leases
# back as they go). Counted at the mock: a check whose TLS handshake
# times out never gets there, and with ocdz_api_connect_timeout 1s the
# mock's handshakes did, now and then, on two busy shared cores.
SKIP: {
    # with master_process off (valgrind) a reload stops the module's work
    # (t/26): these need workers
    skip 'a reload needs workers (master_process on)', 5 if single_process();
    my @ids = map { my $id = random_topup_id(); $mock->set_order($id, status => 'HANDLING'); $mock->fault('hang', id => $id); $pg->insert_order(topup_id => $id); $id } 1 .. 4;
    ok(wait_until(sub { !grep({ $mock->request_count($_) == 0 } @ids) && $mock->stats->{inflight} >= 3 }, timeout => 10), 'hanging checks in flight');
    ok($ngx->reload(wait_old_exit => 1, timeout => 10), 'reload');
    my %before = map { $_ => $mock->request_count($_) } @ids;
    ok(wait_until(sub { !grep({ $mock->request_count($_) <= $before{$_} } @ids) }, timeout => 15), 'new workers check again after leases')
        or diag explain { map { $_ => [$before{$_}, $mock->request_count($_)] } @ids };
    $ngx->stop;
    unlike($ngx->error_log, qr/open socket|\[alert\]|\[crit\]/, 'no alerts');
    $mock->release;
}
done_testing;

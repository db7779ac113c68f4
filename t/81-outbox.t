use v5.36;
use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Test::Peer qw(webhook_peer);
use Ocdz::Card qw(:all);
require_module();

# The outbox sender and its webhook channel, against a real HTTP
# receiver on loopback: signed events, retries with backoff and
# Retry-After, failure at the limit, a worker killed mid-send, two nginx
# instances on one database, and no card code anywhere but the database's
# encrypted card.

my $sf = slow_factor();
my $env = card_env(pg => { log_statement => 'none' });
my $pg = $env->{pg};
my $dir = $env->{dir};

# --- the receiver -----------------------------------------------------------
my $receiver = webhook_peer();
my ($rport, $rdir) = @$receiver{qw(port dir)};
ok($receiver->{listening}, 'receiver listening');
sub mode ($m) { replace_file("$rdir/mode", $m) }
sub received (%o) {
    my $f = "$rdir/requests.jsonl";
    return () unless -e $f;
    my @r = map { json_decode($_) } grep { length } split /\n/, slurp($f);
    return grep { !$o{topup} || $_->{body} =~ /"topup_id":"\Q$o{topup}\E"/ } @r;
}
mode('ok');

my $secret = 'whsec_' . random_hex(16);
write_file("$dir/wh.secret", $secret, 0600);

my $http = <<"EOF";
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_max_backoff 4s;
    ocdz_outbox_attempts 3;
    ocdz_outbox_lease 4s;
    ocdz_webhook_url http://127.0.0.1:$rport/hook;
    ocdz_webhook_secret_file %%DIR%%/wh.secret;
    ocdz_webhook_timeout 2s;
EOF
my $ngx = card_nginx($env, http => $http);

sub row ($id, $channel = 'webhook', $event = undef) {
    my ($r) = $pg->hashes('SELECT * FROM ocdz.outbox WHERE topup_id = '
        . sql_quote($id) . ' AND channel = ' . sql_quote($channel)
        . ($event ? ' AND event = ' . sql_quote($event) : '')
        . ' ORDER BY id LIMIT 1');
    return $r;
}
sub state_is ($id, $state, $name, %o) {
    my $r;
    my $ok = wait_until(sub {
        $r = row($id, $o{channel} // 'webhook', $o{event});
        $r && $r->{state} eq $state;
    }, timeout => ($o{timeout} // 10) * $sf);
    ok($ok, $name) or diag explain $r;
    return $r;
}
sub verify ($req) {
    my $h = $req->{headers};
    my ($sig) = grep { lc $_ eq 'ocdz-signature' } keys %$h;
    my ($t, $v1) = ($h->{$sig} // '') =~ /^t=(\d+),v1=([0-9a-f]{64})$/ or return 0;
    return 0 if abs(time - $t) > 300;
    return hmac_sha256_hex("$t.$req->{body}", $secret) eq $v1;
}
sub event_id ($req) {
    my ($k) = grep { lc $_ eq 'ocdz-event-id' } keys %{ $req->{headers} };
    return $k ? $req->{headers}{$k} : undef;
}

# --- 1. a fulfilled order: its webhook, signed -------------------------------
{
    my ($id, $code, $trans) = new_card($env);
    my $r = state_is($id, 'sent', 'order.fulfilled webhook sent');
    is($r->{attempts}, 1, 'one attempt');
    ok(defined $r->{sent_at}, 'sent_at set');
    ok(!defined $r->{lease_token}, 'lease cleared');
    my @got = received(topup => $id);
    is(scalar @got, 1, 'received once');
    ok(verify($got[0]), 'the signature verifies with the secret');
    my $b = json_decode($got[0]{body});
    is($b->{type}, 'order.fulfilled', 'type');
    is($b->{status}, 'FULFILLED', 'status');
    is($b->{num_trans}, $trans, 'num_trans');
    is($b->{channel}, undef, 'no channel for an order event');
    is($b->{id}, event_id($got[0]), 'the event id header is the body id');
    like($b->{id}, qr/^evt_[0-9a-f]{32}$/, 'event id form');
    unlike($got[0]{body}, qr/\Q$code\E/, 'no card code in the webhook');
    (my $tampered = $got[0]) ->{body} =~ s/FULFILLED/REFUNDED/;
    ok(!verify($tampered), 'a changed body does not verify');

    state_is($id, 'skipped', 'email recorded as skipped', channel => 'email');
    my $e = row($id, 'email');
    like($e->{last_error}, qr/no email channel/, '... with the reason');
    state_is($id, 'skipped', 'sms recorded as skipped', channel => 'sms');

    # a delivery reported sent by its channel: delivery.sent webhook
    $pg->psql("UPDATE ocdz.outbox SET state = 'sent', message_id = '<m1\@x>', "
        . "last_error = NULL WHERE channel = 'email' AND topup_id = " . sql_quote($id));
    state_is($id, 'sent', 'delivery.sent webhook sent', event => 'delivery.sent');
    my ($d) = grep { $_->{body} =~ /delivery\.sent/ } received(topup => $id);
    my $db = json_decode($d->{body});
    is($db->{channel}, 'email', 'delivery.sent names the channel');
    is($db->{message_id}, '<m1@x>', '... and the message id');
    ok(verify($d), '... signed');
}

# --- 2. HTTP 500: retried with backoff, failed at the limit ------------------
{
    mode('status 500');
    my $id = $pg->insert_order;
    $pg->psql("UPDATE ocdz.orders SET status = 'REFUNDED' WHERE topup_id = "
              . sql_quote($id));
    my $r = state_is($id, 'failed', 'failed after the attempts', timeout => 20);
    is($r->{attempts}, 3, 'three attempts (ocdz_outbox_attempts 3)');
    is($r->{last_error}, 'HTTP 500', 'last_error says why');
    my @got = received(topup => $id);
    is(scalar @got, 3, 'three requests received');
    my %ids = map { event_id($_) => 1 } @got;
    is(scalar keys %ids, 1, 'every retry carries the same event id');
    ok(!(grep { !verify($_) } @got), 'every retry signed anew and valid');
    my @gap = map { $got[$_]{time} - $got[$_ - 1]{time} } 1 .. $#got;
    cmp_ok($gap[0], '>=', 0.9, "first retry after the backoff (${\ sprintf '%.1f', $gap[0]}s)");
    cmp_ok($gap[1], '>=', 1.9, "second after twice the backoff (${\ sprintf '%.1f', $gap[1]}s)");
    like($ngx->error_log, qr/failed after 3 attempts: HTTP 500/, 'the failure is logged');
}

# --- 3. 429 with Retry-After, then success ---------------------------------
{
    mode('status 429 3');
    my $id = $pg->insert_order;
    $pg->psql("UPDATE ocdz.orders SET status = 'ERROR' WHERE topup_id = "
              . sql_quote($id));
    ok(wait_until(sub { received(topup => $id) >= 1 }, timeout => 10 * $sf),
       '429: first attempt');
    mode('ok');
    my $r = state_is($id, 'sent', '429 then sent', timeout => 15);
    my @got = received(topup => $id);
    is(scalar @got, 2, 'two requests');
    cmp_ok($got[1]{time} - $got[0]{time}, '>=', 2.9,
           'the retry waited for Retry-After (3s), not the 1s backoff');
}

# --- 4. timeout, then success ------------------------------------------------
{
    mode('sleep 3');
    my $id = $pg->insert_order;
    $pg->psql("UPDATE ocdz.orders SET status = 'ERROR' WHERE topup_id = "
              . sql_quote($id));
    my $tr;
    ok(wait_until(sub { $tr = row($id);
                        $tr && $tr->{state} eq 'pending' && $tr->{attempts} == 1 },
                  timeout => 10 * $sf),
       'a timed-out send is retried later');
    like($tr->{last_error}, qr/timeout|timed out/i, 'last_error: timeout') or diag explain $tr;
    mode('ok');
    state_is($id, 'sent', 'sent after the timeout', timeout => 15);
}

# --- 4b. a reload with sends in flight: nothing lost ---------------------------
# (under valgrind nginx runs as one process: no workers to reload or kill)
unless (single_process()) {
    mode('sleep 1');
    my @ids = map { $pg->insert_order } 1 .. 6;
    $pg->psql("UPDATE ocdz.orders SET status = 'ERROR' WHERE topup_id IN ("
              . join(', ', map { sql_quote($_) } @ids) . ')');
    ok(wait_until(sub { received(topup => $ids[0]) || received(topup => $ids[-1]) },
                  timeout => 10 * $sf), 'reload: sends in flight');
    ok(card_reload($ngx, http => $http), 'reloaded');
    mode('ok');
    ok(wait_until(sub {
        $pg->value("SELECT count(*) FROM ocdz.outbox WHERE state = 'sent' "
                   . 'AND topup_id IN (' . join(', ', map { sql_quote($_) } @ids)
                   . ')') == 6 }, timeout => 20 * $sf), 'reload: all 6 sent');
    is_deeply([ grep { received(topup => $_) != 1 } @ids ], [],
              'reload: each received once (the old workers finished their sends)');
}

# --- 5. kill -9 mid-send: sent again after the lease, same event id ----------
unless (single_process()) {
    mode('sleep 1.5');
    my $id = $pg->insert_order;
    $pg->psql("UPDATE ocdz.orders SET status = 'ERROR' WHERE topup_id = "
              . sql_quote($id));
    ok(wait_until(sub { received(topup => $id) >= 1 }, timeout => 10 * $sf),
       'the send is in flight');
    my @w = $ngx->worker_pids;
    for my $p (@w) {
        $ngx->expect("worker process $p exited on signal 9");
        kill 'KILL', $p;
    }
    mode('ok');
    my $r = state_is($id, 'sent', 'sent after the killed workers\' lease', timeout => 20);
    is($r->{attempts}, 2, 'the killed attempt counted');
    my @got = received(topup => $id);
    is(scalar @got, 2, 'received twice (at least once)');
    is(event_id($got[0]), event_id($got[1]), 'with the same event id to drop the duplicate');
}

# --- 6. two nginx instances on one database: each event once ----------------
{
    my $ngx2 = card_nginx($env, http => $http);
    my @ids = map { $pg->insert_order } 1 .. 20;
    $pg->psql("UPDATE ocdz.orders SET status = 'ERROR' WHERE topup_id IN ("
              . join(', ', map { sql_quote($_) } @ids) . ')');
    ok(wait_until(sub {
        $pg->value("SELECT count(*) FROM ocdz.outbox WHERE state = 'sent' "
                   . 'AND topup_id IN (' . join(', ', map { sql_quote($_) } @ids)
                   . ')') == 20 }, timeout => 15 * $sf), 'all 20 sent');
    my %n;
    for my $id (@ids) { $n{$id} = scalar(received(topup => $id)) }
    is_deeply([ grep { $n{$_} != 1 } @ids ], [], 'each received exactly once');
    my %owners = map { $_->[0] => 1 } $pg->psql(
        'SELECT DISTINCT lease_owner FROM ocdz.outbox WHERE lease_owner IS NOT NULL');
    is(scalar keys %owners, 0, 'no lease left behind');
    $ngx2->stop;
}

# --- hygiene: the card codes appear nowhere ---------------------------------
my $all = join "\n", map { $_->{body} . json_encode($_->{headers}) } received();
ok(!(grep { index($all, $_) >= 0 } @{ $env->{codes} }), 'no card code in any webhook');
my $ob = join "\n", map { join ',', map { $_ // '' } @$_ }
    $pg->psql('SELECT o.*::text FROM ocdz.outbox o');
ok(!(grep { index($ob, $_) >= 0 } @{ $env->{codes} }), 'no card code in the outbox');
hygiene($env);

$ngx->stop;
done_testing();

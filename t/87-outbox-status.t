use v5.36;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Test::Peer qw(webhook_peer);
use Ocdz::Card qw(:all);
use Ocdz::Test::Prom qw(parse_prom);
use Ocdz::Test::Secrets qw(assert_no_secret);
require_module();

# The outbox in ocdz_status (issue 15, part C): a webhook answered 200,
# an SMS answered 500 retried then failed at the limit, an email skipped
# (no address): the delivery counters and the send latency by channel
# show exactly those, and the backlog gauges (refreshed by the worker
# every 5 s) the row failed. Then a send held by a slow receiver: in
# flight, "sending", and a row due behind it with its age. A request
# held by ?wait= in the waiters gauge. promtool accepts the text; no
# top-up id, phone, token, secret or card code in either output.

my $sf = slow_factor();
my $env = card_env();
my $pg = $env->{pg};
my $dir = $env->{dir};

# --- the webhook receiver and the SMS gateway ------------------------------
my %peer = map { $_ => webhook_peer() } qw(hook sms);
ok($peer{$_}{listening}, "$_ peer listening") for sort keys %peer;
sub mode ($name, $m) { replace_file("$peer{$name}{dir}/mode", $m) }
mode('hook', 'ok');
mode('sms', 'status 500');

my $secret = 'whsec_' . random_hex(16);
write_file("$dir/wh.secret", $secret, 0600);
my $gw_token = 'gw_' . random_hex(16);
write_file("$dir/gw.token", $gw_token, 0600);
my $user = 'user-' . random_hex(8);
my $tok = $pg->add_session(random_token(), $user);

# one worker, one send at a time: the in-flight gauge is exact
my $ngx = card_nginx($env, nginx => { workers => 1 },
    loc => 'ocdz_session db; ocdz_card_wait 30s;',
    http => <<"EOF",
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_concurrency 1;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_max_backoff 2s;
    ocdz_outbox_attempts 2;
    ocdz_outbox_lease 120s;
    ocdz_webhook_url http://127.0.0.1:$peer{hook}{port}/hook;
    ocdz_webhook_secret_file %%DIR%%/wh.secret;
    ocdz_webhook_timeout 60s;
    ocdz_sms_gateway_url http://127.0.0.1:$peer{sms}{port}/sms;
    ocdz_sms_gateway_body json '{"to":"{to}","text":"{message}"}';
    ocdz_sms_gateway_token_file %%DIR%%/gw.token;
    ocdz_sms_timeout 5s;
    ocdz_smtp_url smtp://127.0.0.1:${\ free_port()};
    ocdz_mail_from cards\@shop.example;
EOF
    server => 'location = /status { ocdz_status; allow 127.0.0.1; '
            . 'deny all; }');

my @texts;
sub scrape () {
    my ($s, $h, $body) = $ngx->http('GET', '/status',
                                    timeout => 10 * $sf);
    die "status: $s\n" unless $s == 200;
    my $m = eval { parse_prom($body) };
    die "the Prometheus text does not parse: $@" unless $m;
    push @texts, $body;
    return wantarray ? ($m, $body) : $m;
}
sub val ($m, $k) { $m->{$k} // -1 }
sub sends ($m, $ch, $out) {
    val($m, qq{ocdz_outbox_deliveries_total{channel="$ch",outcome="$out"}});
}
# every (channel, outcome) counter as "channel/outcome=n", the zeros left out
sub nonzero ($m) {
    join ' ', map { my ($c, $o) = @$_; my $v = sends($m, $c, $o);
                    $v ? "$c/$o=$v" : () }
              map { my $c = $_; map { [$c, $_] } qw(sent retried failed skipped) }
              qw(webhook email sms);
}
sub rows ($m) {
    join ' ', map { my ($c, $st) = @$_;
                    my $v = val($m, qq{ocdz_outbox_rows{channel="$c",state="$st"}});
                    $v ? "$c/$st=$v" : () }
              map { my $c = $_; map { [$c, $_] } qw(pending sending failed) }
              qw(webhook email sms);
}
sub row ($id, $channel, $event = undef) {
    my ($r) = $pg->hashes('SELECT * FROM ocdz.outbox WHERE topup_id = '
        . sql_quote($id) . ' AND channel = ' . sql_quote($channel)
        . ($event ? ' AND event = ' . sql_quote($event) : '')
        . ' ORDER BY id LIMIT 1');
    return $r;
}
sub state_is ($id, $channel, $state, $name, %o) {
    my $r;
    my $ok = wait_until(sub {
        $r = row($id, $channel, $o{event});
        $r && $r->{state} eq $state;
    }, timeout => ($o{timeout} // 15) * $sf);
    ok($ok, $name) or diag explain $r;
}

# --- before anything: every series there, at zero --------------------------
{
    my $m = scrape();
    is(nonzero($m), '', 'no delivery counted yet');
    for my $ch (qw(webhook email sms)) {
        is(val($m, qq{ocdz_outbox_send_duration_seconds_count{channel="$ch"}}),
           0, "$ch: latency histogram there, empty");
    }
    is(val($m, 'ocdz_outbox_sends_in_flight'), 0, 'nothing in flight');
    is(val($m, 'ocdz_card_waiters'), 0, 'no waiter');
}

# --- one order: webhook 200, SMS 500 retried then failed, email skipped -----
my ($id, $code);
{
    $code = random_card_code();
    push @{ $env->{codes} }, $code;
    $id = $pg->insert_order(user_id => $user, phone => '+213550001234');
    my $rec = tool_encrypt($env, $id, $code);
    $pg->psql("UPDATE ocdz.orders SET status = 'FULFILLED', card_enc = "
        . sql_quote($rec) . ", num_trans = 'AT-" . random_hex(4)
        . "', date_traitement = '2025-10-29T01:05:30.000Z', "
        . 'fulfilled_at = now() WHERE topup_id = ' . sql_quote($id));

    state_is($id, 'webhook', 'sent', 'order.fulfilled webhook sent');
    state_is($id, 'email', 'skipped', 'email skipped (no address)');
    state_is($id, 'sms', 'failed', 'sms failed at the limit (2 attempts)');
    state_is($id, 'webhook', 'sent', 'delivery.failed webhook sent',
             event => 'delivery.failed');
    is(row($id, 'sms')->{attempts}, 2, 'the sms was tried twice');

    # the counters are written before the outcome's statement: at once;
    # the backlog within a refresh (5 s)
    my $m;
    my $ok = wait_until(sub {
        $m = scrape();
        rows($m) eq 'sms/failed=1'
            && val($m, 'ocdz_backlog_timestamp_seconds') > 0
    }, timeout => 15 * $sf);
    is(nonzero($m), 'webhook/sent=2 email/skipped=1 sms/retried=1 '
                    . 'sms/failed=1', 'deliveries: exactly those');
    ok($ok, 'backlog: the failed sms row, nothing pending or sending')
        or diag rows($m);
    is(val($m, 'ocdz_outbox_send_duration_seconds_count{channel="webhook"}'),
       2, 'webhook: two sends timed');
    is(val($m, 'ocdz_outbox_send_duration_seconds_count{channel="sms"}'),
       2, 'sms: two sends timed (the 500s)');
    is(val($m, 'ocdz_outbox_send_duration_seconds_count{channel="email"}'),
       0, 'email: a skip is not a send');
    cmp_ok(val($m, 'ocdz_outbox_send_duration_seconds_sum{channel="sms"}'),
           '<', 5 * $sf, 'sms: the latency sum is plausible');
    is(val($m, 'ocdz_outbox_oldest_due_age_seconds{channel="webhook"}'), 0,
       'nothing due: age 0');

    my ($s, $h, $body) = $ngx->http('GET', '/status?format=json');
    push @texts, $body;
    my $j = eval { json_decode($body) };
    ok($j, 'the JSON parses') or diag $@;
    is($j && $j->{outbox}{deliveries}{sms}{retried}, 1, 'JSON agrees: retried');
    is($j && $j->{outbox}{deliveries}{email}{skipped}, 1, 'JSON agrees: skipped');
    is($j && $j->{outbox}{send_duration_seconds}{webhook}{count}, 2,
       'JSON agrees: webhook sends timed');
    is($j && $j->{outbox}{rows}{sms}{failed}, 1, 'JSON agrees: failed row');
}

# --- a send held by the receiver: in flight, sending, one due behind it ----
{
    my $hold = int(12 * $sf);
    mode('hook', "sleep $hold");
    my @ids = map { $pg->insert_order(user_id => $user) } 1 .. 2;
    my $in = join ', ', map { sql_quote($_) } @ids;
    # both due for 100 s already, queued in the same transaction
    $pg->psql("BEGIN; UPDATE ocdz.orders SET status = 'ERROR' WHERE "
              . "topup_id IN ($in); UPDATE ocdz.outbox SET next_attempt_at "
              . "= now() - interval '100 seconds' WHERE topup_id IN ($in); "
              . 'COMMIT;');
    my $m;
    my $ok = wait_until(sub {
        $m = scrape();
        val($m, 'ocdz_outbox_sends_in_flight') == 1
            && rows($m) eq 'webhook/pending=1 webhook/sending=1 sms/failed=1'
    }, timeout => ($hold - 2) * $sf);
    ok($ok, 'one send in flight, its row sending, the other pending')
        or diag rows($m), ' in flight ', val($m, 'ocdz_outbox_sends_in_flight');
    cmp_ok(val($m, 'ocdz_outbox_oldest_due_age_seconds{channel="webhook"}'),
           '>=', 100, 'the row waiting behind it: due for 100 s and more');
    mode('hook', 'ok');
    ok(wait_until(sub {
        $pg->value("SELECT count(*) FROM ocdz.outbox WHERE state = 'sent' "
                   . "AND topup_id IN ($in)") == 2 },
        timeout => ($hold + 15) * $sf), 'both sent in the end');
    ok(wait_until(sub {
        $m = scrape();
        val($m, 'ocdz_outbox_sends_in_flight') == 0
            && rows($m) eq 'sms/failed=1' }, timeout => 15 * $sf),
       'nothing in flight or pending any more');
    is(sends($m, 'webhook', 'sent'), 4, 'webhook: four sent');
    cmp_ok(val($m, 'ocdz_outbox_send_duration_seconds_sum{channel="webhook"}'),
           '>=', $hold - 1, 'the held send in the latency sum');
    is(val($m, 'ocdz_outbox_send_duration_seconds_bucket{channel="webhook",'
           . 'le="2.500000"}'), 3, '... in a bucket above 2.5 s');
}

# --- a request held by ?wait= ----------------------------------------------
{
    my $pid = $pg->insert_order(user_id => $user);
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $ngx->port, Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    syswrite $sock, 'GET ' . card_path($pid) . "?wait=30 HTTP/1.1\r\n"
        . "Host: localhost\r\nAuthorization: Bearer $tok\r\n"
        . "Connection: close\r\n\r\n";
    ok(wait_until(sub { val(scalar(scrape()), 'ocdz_card_waiters') == 1 },
                  timeout => 10 * $sf), 'a held request: one waiter');
    close $sock;
    ok(wait_until(sub { val(scalar(scrape()), 'ocdz_card_waiters') == 0 },
                  timeout => 10 * $sf), 'the client left: none');
}

# --- promtool, and nothing secret ------------------------------------------
{
    my ($m, $t) = scrape();
    my $promtool = $ENV{OCDZ_PROMTOOL}
        // repo_root() . '/build/promtool/usr/bin/promtool';
    SKIP: {
        skip "no promtool ($promtool): make promtool", 1 unless -x $promtool;
        my $f = tmpdir() . '/metrics.txt';
        write_file($f, $t);
        my $out = `'$promtool' check metrics < '$f' 2>&1`;
        is($? >> 8, 0, 'promtool check metrics accepts the text') or diag $out;
    }
    my $all = join "\n", @texts;
    unlike($all, qr/[0-9a-f]{24}/, 'no top-up id in any output');
    assert_no_secret('status outputs', $all, $id, $code, '+213550001234',
                     '213550001234', $secret, $gw_token, $tok, $user);
}

hygiene($env);
$ngx->stop;
done_testing();

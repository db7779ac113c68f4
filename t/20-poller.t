use v5.36;
use utf8;
use Test::More;
use Ocdz::Test qw(:all);
use Ocdz::Poller qw(:all);
require_module();

my ($pg, $mock, $dir) = poller_env(
    mock => { secondary_token => 'tok2_' . random_hex(8) });
my $t2 = $mock->secondary_token_file;

my @directives = (
    api_token_file => '%%TOKEN_FILE%% %%T2%%',
    poller_pause => '3s',
    poller_not_found_retries => 3,
    poller_concurrency => 4,
    poller_queued_interval => '1h',
);

my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock, vars => { DIR => $dir, T2 => $t2 },
    error_log_level => 'debug', conf => poller_conf(directives => \@directives));
$ngx->start;

# 1. fulfilled after two HANDLING checks
my $card;
{
    my $id = random_topup_id();
    my $o = $mock->set_order($id, status => 'HANDLING', fulfil_after_checks => 2, then => 'FULFILLED');
    $pg->insert_order(topup_id => $id);
    my $r = order_is($pg, $id, sub { $_[0]{status} eq 'FULFILLED' }, 'fulfilled');
    like($r->{card_enc}, qr/^ocdz1\.k1\./, 'card sealed');
    ok(defined $r->{num_trans} && length $r->{num_trans}, 'num_trans');
    ok(!defined $r->{lease_token}, "lease cleared");
    my @a = $pg->audit($id);
    is(scalar(@a), 1, 'one audit row');
    is($a[0]{event}, 'CARD_STORED', 'CARD_STORED');
    $card = $mock->order($id)->{card_code};
    diag "attempts=$r->{attempts}";
}

# 2. not found -> ERROR after 3
{
    my $id = random_topup_id();
    $pg->insert_order(topup_id => $id);
    my $r = order_is($pg, $id, sub { $_[0]{status} eq 'ERROR' }, 'not found -> ERROR');
    is($r->{not_found_count}, 3, 'not_found_count 3');
    like($r->{last_error}, qr/not found upstream after 3 checks/, 'last_error');
}

# 3. refunded with message
{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'REFUNDED', refund_message => "رصيد غير كاف");
    $pg->insert_order(topup_id => $id);
    my $r = order_is($pg, $id, sub { $_[0]{status} eq 'REFUNDED' }, 'refunded');
    my $rm = $r->{refund_message}; utf8::decode($rm); is($rm, "رصيد غير كاف", 'refund message') ;
}

# 4. queued
{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'QUEUED');
    $pg->insert_order(topup_id => $id);
    my $r = order_is($pg, $id, sub { $_[0]{status} eq 'QUEUED' }, 'queued');
    my $v = $pg->value("SELECT extract(epoch FROM next_check_at - now())::int FROM ocdz.orders WHERE topup_id = '$id'");
    ok($v > 3500 && $v <= 3600, "queued next check in ~1h ($v)");
}

# 5. faults: malformed, oversized, wrong id, fulfilled without card, 500, hang
for my $f (['malformed', {}, qr/unusable reply/],
           ['oversized', { size => 200000 }, qr/oversized/],
           ['wrong_id', {}, qr/another order/],
           ['fulfilled_no_card', {}, qr/FULFILLED without card_code/],
           ['status', { code => 503 }, qr/HTTP 503/],
           ['duplicate_keys', {}, qr/unusable reply/],
           ['nul', {}, qr/unusable reply/],
           ['hang', {}, qr/timed out/],
           ['close', {}, qr/curl 52|Empty reply|curl 56/],
           ['reset', {}, qr/curl 56|reset/i]) {
    my ($kind, $p, $re) = @$f;
    my $id = random_topup_id();
    $mock->set_order($id, status => 'HANDLING');
    $mock->fault($kind, id => $id, %$p);
    $pg->insert_order(topup_id => $id);
    my $r = order_is($pg, $id, sub { defined $_[0]{last_error} && $_[0]{last_error} ne '' }, "fault $kind recorded");
    like($r->{last_error}, $re, "fault $kind: $r->{last_error}");
    is($r->{status}, 'PENDING', "fault $kind: status unchanged");
    $mock->reset_faults;
}

# 6. 401 on primary -> switch to secondary
{
    $mock->set_tokens($mock->secondary_token);
    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED');
    my $mark = $ngx->log_mark;
    $pg->insert_order(topup_id => $id);
    my $r = order_is($pg, $id, sub { $_[0]{status} eq 'FULFILLED' }, '401 -> secondary -> fulfilled');
    like($ngx->error_log($mark), qr/rejected the primary access token.*using the secondary/, 'switch logged');
    $mock->set_tokens($mock->token, $mock->secondary_token);
}

# 7. 429 with retry-after -> pause
{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'HANDLING');
    $mock->fault('rate_limit', id => $id, retry_after => 2, count => 1);
    $pg->insert_order(topup_id => $id);
    ok(wait_until(sub { $pg->value("SELECT coalesce(pause_reason,'') FROM ocdz.poller_state") =~ /429/ }, timeout => 10), '429 pause');
    my $r = $pg->order($id);
    diag "429: attempts=$r->{attempts} err=$r->{last_error}";
    order_is($pg, $id, sub { $_[0]{status} eq 'HANDLING' }, 'after pause checked again', 15);
}

# 8. redirect -> pause, catcher never reached
{
    unpause($pg);
    my $id = random_topup_id();
    $mock->set_order($id, status => 'HANDLING');
    $mock->fault('redirect', id => $id, code => 302, location => $mock->catcher_base_url . "/v3/internet/check-id/$id", count => 1);
    $pg->insert_order(topup_id => $id);
    ok(wait_until(sub { $pg->value("SELECT coalesce(pause_reason,'') FROM ocdz.poller_state") =~ /redirect/ }, timeout => 10), 'redirect pause');
    is(scalar($mock->catcher_requests), 0, 'redirect not followed');
    unpause($pg);
}

# 9. wrong base: bare 404
{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'HANDLING');
    $mock->fault('notfound_bare', id => $id, count => 1);
    $pg->insert_order(topup_id => $id);
    ok(wait_until(sub { $pg->value("SELECT coalesce(pause_reason,'') FROM ocdz.poller_state") =~ /404 without/ }, timeout => 10), 'bare 404 pause');
    my $r = order_is($pg, $id, sub { $_[0]{status} eq 'HANDLING' }, 'bare 404 order checked again later', 15);
    unpause($pg);
}

# 10. hang in flight during shutdown
{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'HANDLING');
    $mock->fault('hang', id => $id);
    $pg->insert_order(topup_id => $id);
    wait_until(sub { $mock->request_count($id) > 0 }, timeout => 10);
}
my $log = $ngx->error_log;
ok(!find_secret($log, $card), 'card code not in the error log');
ok(index($log, $mock->token) < 0, 'token not in log');
ok(index($log, $mock->secondary_token) < 0, 'token2 not in log');
$ngx->quit;
unlike($ngx->error_log, qr/open socket|\[alert\]/, 'no alerts');
$mock->release;
$mock->reset_faults;

# The CA file is read by the master with the configuration: gone (or
# unreadable to the workers' user) afterwards, checks still verify.
{
    write_file("$dir/ca-copy.pem", slurp($mock->ca_file), 0600);
    my $n2 = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir, T2 => $t2 }, conf => poller_conf(directives
            => [@directives, api_ca_file => '%%DIR%%/ca-copy.pem']));
    $n2->start;
    unlink "$dir/ca-copy.pem";
    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED');
    $pg->insert_order(topup_id => $id);
    order_is($pg, $id, sub { $_[0]{status} eq 'FULFILLED' },
             'CA file removed after start: the check still verifies '
             . 'and the card is stored');
    $n2->quit;
}
done_testing;

# The mock OneClickDz upstream behaves as the other tests assume.
# Uses the curl CLI against it, with the test CA.

use v5.36;
use Test::More;
use Time::HiRes qw(time);
use Ocdz::Test qw(:all);

my $secondary = 'tok2_' . random_hex(8);
my $mock = Ocdz::Test::Mock->start(secondary_token => $secondary);
my $tok = $mock->token;

sub get ($path, %o) { $mock->api_get($path, %o) }
sub get_json ($path, %o) {
    my ($s, $h, $b) = get($path, %o);
    return ($s, json_decode($b), $b, $h);
}

# --- the API --------------------------------------------------------------

{
    my ($s, $j, $raw, $h) = get_json('/v3/ping');
    is $s, 200, 'ping';
    is $j->{data}{api}, 'ok', 'ping: data.api ok';
    ok $j->{success} && $j->{requestId} =~ /^req_/, 'ping: envelope';
    like $h->{'x-request-id'} // '', qr/^req_/, 'X-Request-Id header';

    ($s, $j) = get_json('/v3/ping', token => undef);
    is $s, 401, 'no token: 401';
    is $j->{error}{code}, 'MISSING_ACCESS_TOKEN', 'no token: code';
    ok !$j->{success}, 'no token: success false';

    ($s, $j) = get_json('/v3/ping', token => 'nope');
    is $s, 401, 'wrong token: 401';
    is $j->{error}{code}, 'INVALID_ACCESS_TOKEN', 'wrong token: code';

    ($s) = get_json('/v3/ping', token => $secondary);
    is $s, 200, 'secondary token accepted';

    ($s, $j, $raw) = get_json('/v3/nothing/here');
    is $s, 404, 'unknown route: 404';
    is_deeply $j, { message => 'Cannot GET /v3/nothing/here',
                    error => 'Not Found', statusCode => 404 },
        'unknown route: framework body, no envelope';

    ($s, $j, $raw) = get_json('/v3/internet/check-id/' . random_topup_id());
    is $s, 404, 'unknown id: 404';
    is $j->{error}{code}, 'NOT_FOUND', 'unknown id: NOT_FOUND envelope';
}

# --- orders ---------------------------------------------------------------

{
    my $id = random_topup_id();
    my $card = random_card_code();
    $mock->set_order($id, status => 'HANDLING', card_code => $card,
                     ref => "ref-$id", fulfil_after_checks => 2);
    for my $n (1, 2) {
        my ($s, $j, $raw) = get_json("/v3/internet/check-id/$id");
        is $j->{data}{status}, 'HANDLING', "check $n: HANDLING";
        ok !exists $j->{data}{$_}, "check $n: no $_"
            for qw(card_code num_trans date_traitement);
        unlike $raw, qr/$card/, "check $n: card code not in the body";
    }
    my ($s, $j) = get_json("/v3/internet/check-id/$id");
    is $j->{data}{status}, 'FULFILLED', 'check 3: FULFILLED';
    is $j->{data}{card_code}, $card, 'check 3: the card code';
    ok $j->{data}{num_trans} && $j->{data}{date_traitement},
        'check 3: num_trans, date_traitement';
    is $j->{data}{_id}, $id, '_id';
    is $j->{data}{topup_amount}, 1000, 'topup_amount';
    is $j->{data}{type}, 'ADSL', 'type';

    ($s, $j) = get_json("/v3/internet/check-ref/ref-$id");
    is $j->{data}{_id}, $id, 'check-ref finds it';

    is $mock->request_count($id), 3, 'request_count';
    is $mock->order($id)->{card_code}, $card, 'control: stored order';

    $mock->delete_order($id);
    ($s, $j) = get_json("/v3/internet/check-id/$id");
    is $s, 404, 'deleted: 404';

    my $rid = random_topup_id();
    $mock->set_order($rid, status => 'REFUNDED',
                     refund_message => "\x{641}\x{634}\x{644} refund",
                     type => '4G', number => '213472731602',
                     topup_amount => 500);
    ($s, $j) = get_json("/v3/internet/check-id/$rid");
    is $j->{data}{status}, 'REFUNDED', 'REFUNDED';
    is $j->{data}{refund_message}, "\x{641}\x{634}\x{644} refund",
        'refund_message (UTF-8)';
    ok !exists $j->{data}{card_code}, 'REFUNDED: no card';
    is $j->{data}{number}, '213472731602', 'number';

    my $tid = random_topup_id();
    $mock->set_order($tid, status => 'QUEUED', fulfil_after => 1);
    ($s, $j) = get_json("/v3/internet/check-id/$tid");
    is $j->{data}{status}, 'QUEUED', 'QUEUED before the time';
    sleep 1.2;
    ($s, $j) = get_json("/v3/internet/check-id/$tid");
    is $j->{data}{status}, 'FULFILLED', 'FULFILLED after fulfil_after';
    like $j->{data}{card_code}, qr/^\d{16}$/, 'random card code';

    $mock->set_auto_fulfil(1);
    my $aid = random_topup_id();
    ($s, $j) = get_json("/v3/internet/check-id/$aid");
    is $j->{data}{status}, 'HANDLING', 'auto-fulfil: HANDLING';
    ($s, $j) = get_json('/v3/internet/check-id/not-an-id');
    is $s, 404, 'auto-fulfil: malformed id still 404';
    sleep 1.2;
    ($s, $j) = get_json("/v3/internet/check-id/$aid");
    is $j->{data}{status}, 'FULFILLED', 'auto-fulfil: FULFILLED';
    $mock->set_auto_fulfil(undef);
}

# --- faults ---------------------------------------------------------------

my $id = random_topup_id();
my $card = random_card_code();
$mock->set_order($id, status => 'FULFILLED', card_code => $card);
my $path = "/v3/internet/check-id/$id";

{
    $mock->fault('status', id => $id, code => 503, count => 1);
    my ($s, $j) = get_json($path);
    is $s, 503, 'status 503 fault';
    is $j->{error}{code}, 'SERVICE_UNAVAILABLE', '503 envelope';
    ($s, $j) = get_json($path);
    is $s, 200, 'count => 1: gone after one request';

    my $other = random_topup_id();
    $mock->fault('status', id => $other, code => 500);
    ($s) = get_json($path);
    is $s, 200, 'a per-id fault leaves other ids alone';
    $mock->reset_faults;

    $mock->fault('rate_limit', retry_after => 7, count => 1);
    my $h;
    ($s, $j, undef, $h) = get_json($path);
    is $s, 429, 'global rate_limit';
    is $h->{'retry-after'}, 7, 'Retry-After';
    is $j->{error}{code}, 'RATE_LIMIT_EXCEEDED', '429 code';

    $mock->fault('auth', code => 403, count => 1);
    ($s, $j) = get_json($path);
    is $s, 403, '403 fault';
    ok !$j->{success} && $j->{error}{code}, '403 envelope';

    $mock->fault('auth', count => 1);
    ($s, $j) = get_json($path);
    is "$s $j->{error}{code}", '401 INVALID_ACCESS_TOKEN', '401 fault';

    $mock->fault('notfound_bare', count => 1);
    ($s, $j) = get_json($path);
    is $j->{statusCode}, 404, '404 without envelope';
    ok !exists $j->{success}, '... no success field';

    my $to = $mock->catcher_base_url . $path;
    $mock->fault('redirect', location => $to, count => 1);
    ($s, $j, undef, $h) = get_json($path);
    is $s, 302, 'redirect';
    is $h->{location}, $to, 'Location';

    # curl with -L does send custom headers to the new host: the
    # catcher sees whether a client leaked the token that way
    $mock->fault('redirect', location => $to, count => 1);
    get($path, extra => ['-L']);
    my @c = $mock->catcher_requests;
    is scalar @c, 1, 'the catcher recorded the followed redirect';
    is $c[0]{token}, $tok, 'catcher records the token it got';

    $mock->fault('malformed', count => 1);
    my ($b);
    ($s, $j, $b) = get_json($path);
    ok $s == 200 && !defined $j && length $b, 'malformed JSON';

    for my $size (10 * 1024 * 1024) {
        $mock->fault('oversized', size => $size, count => 1);
        ($s, undef, $b) = get($path);
        is length $b, $size, "oversized: $size bytes";
        $mock->fault('oversized', size => 1024 * 1024, chunked => 1,
                     count => 1);
        ($s, $h, $b) = get($path);
        ok length $b == 1024 * 1024
           && ($h->{'transfer-encoding'} // '') =~ /chunked/,
           'oversized chunked';
    }

    $mock->fault('duplicate_keys', count => 1);
    (undef, undef, $b) = get($path);
    is scalar(() = $b =~ /"status":/g), 2, 'duplicate keys: status twice';

    $mock->fault('nul', count => 1);
    (undef, $j, $b) = get_json($path);
    like $b, qr/\\u0000/, 'nul: \u0000 in the body';
    like $j->{data}{card_code}, qr/\x00/, 'nul: in card_code';

    $mock->fault('wrong_id', count => 1);
    (undef, $j) = get_json($path);
    ok $j->{data}{_id} ne $id && $j->{data}{_id} =~ /^[0-9a-f]{24}$/,
        'wrong_id';

    $mock->fault('fulfilled_no_card', count => 1);
    (undef, $j) = get_json($path);
    ok $j->{data}{status} eq 'FULFILLED' && !exists $j->{data}{card_code},
        'FULFILLED without card_code';

    $mock->fault('raw', code => 200, body => '{"success":true}', count => 1);
    (undef, undef, $b) = get($path);
    is $b, '{"success":true}', 'raw body';
}

# connection-level behaviour: curl exit codes
sub curl_exit ($path, %o) {
    my ($s, $h) = get($path, %o);
    return $s ? 0 : $h->{':curl_exit'};
}

{
    $mock->fault('close', id => $id, count => 1);
    is curl_exit($path), 52, 'close: empty reply (curl 52)';

    $mock->fault('reset', id => $id, count => 1);
    ok curl_exit($path) =~ /^(52|56)$/, 'reset: recv failure';

    $mock->fault('hang', id => $id, count => 1);
    my $t0 = time;
    is curl_exit($path, timeout => 1), 28, 'hang: client times out';
    ok time - $t0 < 3, 'hang: after the client timeout';

    $mock->fault('delay', id => $id, ms => 600, count => 1);
    $t0 = time;
    my ($s) = get($path);
    ok $s == 200 && time - $t0 >= 0.6, 'delay 600 ms then 200';

    $mock->fault('trickle', id => $id, interval_ms => 5, chunk => 20,
                 count => 1);
    $t0 = time;
    my (undef, $j) = get_json($path);
    ok $j->{data}{card_code} eq $card && time - $t0 > 0.1,
        'trickle: slow but complete';

    $mock->fault('tls_reset', count => 1);
    ok curl_exit($path) =~ /^(35|56)$/, 'tls_reset: handshake fails';

    $mock->fault('tls_close', count => 1);
    ok curl_exit($path) =~ /^(35|56)$/, 'tls_close: handshake fails';

    $mock->fault('tls_hang', count => 1);
    is curl_exit($path, timeout => 1), 28, 'tls_hang: client times out';

    ($s) = get($path);
    is $s, 200, 'healthy again';
    is scalar @{ $mock->stats->{faults} }, 0, 'all counted faults used up';
}

# --- certificates ---------------------------------------------------------

{
    my ($s, $h) = get($path, base => $mock->rogue_base_url);
    is $h->{':curl_exit'}, 60, 'rogue (self-signed) certificate refused';
    ($s, $h) = get($path, base => $mock->wrongname_base_url);
    ok $s == 0 && $h->{':curl_exit'} =~ /^(51|60)$/,
        'CA-signed certificate for another name refused';
    ($s) = get($path, base => $mock->rogue_base_url, insecure => 1);
    is $s, 200, 'the rogue listener answers when not verified';
}

# --- bookkeeping ----------------------------------------------------------

{
    $mock->reset_requests;
    # one curl run, two URLs: one keep-alive connection
    get($path, extra => [$mock->base_url . $path]);
    my @r = $mock->requests(id => $id);
    is scalar @r, 2, 'two requests recorded';
    is $r[0]{conn}, $r[1]{conn}, 'keep-alive: same connection';
    is $r[0]{token}, $tok, 'token recorded';
    ok((grep { lc $_->[0] eq 'x-access-token' } @{ $r[0]{headers} }),
       'headers recorded');

    $mock->reset_requests;
    $mock->fault('delay', id => $id, ms => 500);
    get($path, extra => ['-Z', ($mock->base_url . $path) x 2]);
    is $mock->max_inflight($id), 3, 'max_inflight per id';
    is $mock->request_count($id), 3, 'count per id';
    $mock->reset;
    my ($s) = get($path);
    is $s, 404, 'reset forgets orders';
}

# --- standalone -----------------------------------------------------------

{
    my ($rc, $out) = run_cmd(['/usr/bin/python3',
        repo_root() . '/t/lib/mock_oneclickdz.py', '--help']);
    ok $rc == 0 && $out =~ /--auto-fulfil/ && $out =~ /--token/,
        'standalone --help documents the flags';
}

done_testing;

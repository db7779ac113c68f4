# Upstream faults the poller tests (t/20, t/21) leave out (issue #6): a
# 100 MB reply (with a length and chunked), a server that trickles bytes
# (too slowly, and just fast enough), one that resets the connection in
# the middle of the TLS handshake, one that accepts and never answers,
# one that closes before the handshake, a refused connection, 403, 5xx
# without an envelope or with HTML, every malformed body and replies
# missing fields. Each fault is recorded on the order without storing
# anything; once the fault is gone the same order is fulfilled, exactly
# once, with the card upstream gave, and a fresh order is fulfilled too:
# the poller stays healthy. The worker's memory stays small through the
# 100 MB replies and it keeps no file descriptors from failed checks.

use v5.36;
use Test::More;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Poller qw(:all);

require_module();

my $env = card_env(pg => { log_statement => 'none' });
my $pg = $env->{pg};
my $mock = Ocdz::Test::Mock->start;
my $tok = $pg->add_session(random_token(), 'u1');

my $ngx = card_nginx($env, nginx => { mock => $mock, workers => 1,
                                      vars => { BASE => $mock->base_url } },
    http => poller_directives(api_base => '%%BASE%%', poller_pause => '1s',
                              poller_concurrency => 2));

sub status_of ($id) { $pg->value("SELECT status FROM ocdz.orders "
                                 . "WHERE topup_id = '$id'") }

sub stored_rows ($id) {
    return $pg->value("SELECT count(*) FROM ocdz.audit WHERE topup_id = "
                      . "'$id' AND event = 'CARD_STORED'");
}

# An order upstream has FULFILLED; returns (id, code).
sub upstream_order () {
    my $id = random_topup_id();
    my $code = random_card_code();
    $mock->set_order($id, status => 'FULFILLED', card_code => $code);
    push @{ $env->{codes} }, $code;
    return ($id, $code);
}

# The order is FULFILLED once, its card opens to $code.
sub fulfilled_ok ($id, $code, $what) {
    ok(wait_until(sub { status_of($id) eq 'FULFILLED' }, timeout => 20),
       "$what: fulfilled") or diag explain $pg->order($id);
    is(stored_rows($id), 1, "$what: one CARD_STORED row");
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok);
    is($s == 200 && $j->{cardCode}, $code, "$what: the card upstream gave");
}

# A fresh order goes through: the poller is healthy.
sub healthy ($what) {
    my ($id, $code) = upstream_order();
    $pg->insert_order(topup_id => $id, user_id => 'u1');
    fulfilled_ok($id, $code, "$what, then a new order");
}

# Injects a fault for one order, waits until the poller records it,
# checks nothing was stored, removes the fault; the order is then
# fulfilled. Returns the recorded last_error.
sub per_order ($what, $kind, $re, %p) {
    my ($id, $code) = upstream_order();
    $mock->fault($kind, id => $id, %p);
    my $t0 = time;
    $pg->insert_order(topup_id => $id, user_id => 'u1');
    my $r;
    ok(wait_until(sub { $r = $pg->order($id);
                        ($r->{last_error} // '') ne '' }, timeout => 20),
       "$what: the fault is recorded");
    my $el = time - $t0;
    like($r->{last_error} // '', $re, "$what: last_error "
                                      . ($r->{last_error} // 'none'));
    ok($r->{status} ne 'FULFILLED' && !defined $r->{card_enc},
       "$what: nothing stored");
    $mock->reset_faults;
    unpause($pg);
    fulfilled_ok($id, $code, "$what, fault gone");
    return ($r->{last_error}, $el);
}

sub worker () { ($ngx->worker_pids)[0] }

sub proc_status ($pid, $field) {
    my ($v) = slurp("/proc/$pid/status") =~ /^$field:\s+(\d+)/m;
    return $v // 0;
}

sub fds ($pid) {
    opendir my $dh, "/proc/$pid/fd" or return -1;
    return scalar grep { /^\d+$/ } readdir $dh;
}

healthy('warm-up');
my $w = worker();
my $fds0 = fds($w);
my $hwm0 = proc_status($w, 'VmHWM');

# --- 100 MB -----------------------------------------------------------------

for my $chunked (0, 1) {
    my $what = '100 MB reply' . ($chunked ? ' (chunked)' : '');
    my ($err, $el) = per_order($what, 'oversized',
        qr/oversized reply/, size => 100_000_000, chunked => $chunked);
    ok($el < 2 + 4 * slow_factor(),
       sprintf "$what: given up in %.1f s, not read to the end", $el);
}
my $hwm1 = proc_status($w, 'VmHWM');
ok($hwm1 - $hwm0 < 40 * 1024, sprintf 'the worker\'s peak memory grew by '
   . '%d kB through two 100 MB replies (< 40 MB)', $hwm1 - $hwm0);

# --- trickling --------------------------------------------------------------

per_order('a reply trickling one byte per 200 ms', 'trickle',
          qr/timed out/, chunk => 1, interval_ms => 200);
{
    # 16 bytes every 10 ms: slow, but well within ocdz_api_timeout
    my ($id, $code) = upstream_order();
    $mock->fault('trickle', id => $id, chunk => 16, interval_ms => 10);
    $pg->insert_order(topup_id => $id, user_id => 'u1');
    fulfilled_ok($id, $code, 'a reply trickling fast enough');
    is($pg->order($id)->{attempts}, 1, '... at the first check');
    $mock->reset_faults;
}

# --- HTTP errors and bodies -------------------------------------------------

per_order('403', 'auth', qr/403/, code => 403);
per_order('500 without a body', 'status', qr/HTTP 500/, code => 500,
          envelope => 0);
per_order('502 with an HTML page', 'raw', qr/HTTP 502/, code => 502,
          body => '<html><body>502 Bad Gateway</body></html>',
          headers => { 'Content-Type' => 'text/html' });
per_order('504 without a body', 'status', qr/HTTP 504/, code => 504,
          envelope => 0);
for my $v (qw(not_json empty array html wrong_types truncated)) {
    per_order("malformed body: $v", 'malformed',
              qr/unusable reply|without|HTTP/, variant => $v);
}

# replies missing what the poller needs
{
    my $dummy = random_topup_id();
    my @cases = (
        ['no data', '{"success":true}', qr/without "data"/],
        ['success false without error', '{"success":false}',
         qr/success|error|unusable/],
        ['no status', '{"success":true,"data":{"_id":"%ID%"}}',
         qr/without data\.status/],
        ['no _id', '{"success":true,"data":{"status":"FULFILLED",'
         . '"card_code":"5555666677778888","num_trans":"X"}}',
         qr/without data\._id/],
        ['unknown status', '{"success":true,"data":{"_id":"%ID%",'
         . '"status":"SHIPPED"}}', qr/unknown status/],
        ['status of the wrong type', '{"success":true,"data":{"_id":"%ID%",'
         . '"status":["FULFILLED"]}}', qr/unusable|status/],
        ['a card that is a number', '{"success":true,"data":{"_id":"%ID%",'
         . '"status":"FULFILLED","card_code":5555666677778888}}',
         qr/unusable|card/],
        ['a 2 MB string', '{"success":true,"data":{"_id":"%ID%",'
         . '"status":"HANDLING","x":"' . ('y' x 2_000_000) . '"}}',
         qr/oversized/],
        ['deeply nested', '{"success":true,"data":{"_id":"%ID%",'
         . '"status":"HANDLING","x":' . ('[' x 5000) . (']' x 5000) . '}}',
         qr/unusable|deep|nest/],
    );
    for my $c (@cases) {
        my ($what, $body, $re) = @$c;
        my ($id, $code) = upstream_order();
        (my $b = $body) =~ s/%ID%/$id/g;
        $mock->fault('raw', id => $id, code => 200,
                     body_b64 => encode_base64($b, ''));
        $pg->insert_order(topup_id => $id, user_id => 'u1');
        my $r;
        ok(wait_until(sub { $r = $pg->order($id);
                            ($r->{last_error} // '') ne '' }, timeout => 20),
           "reply with $what: recorded");
        like($r->{last_error} // '', $re,
             "reply with $what: " . ($r->{last_error} // ''));
        ok(!defined $r->{card_enc} && $r->{status} ne 'FULFILLED',
           "reply with $what: nothing stored");
        $mock->reset_faults;
        fulfilled_ok($id, $code, "reply with $what, fault gone");
    }
}

healthy('after the HTTP faults');
ok(fds($w) <= $fds0 + 2, sprintf 'no file descriptors kept by failed checks '
   . '(%d, was %d)', fds($w), $fds0);
is(worker(), $w, 'the same worker throughout');

# --- connection faults: a reload makes the worker connect anew --------------

sub conn_fault ($what, $kind, $re) {
    $mock->fault($kind);            # global, every new connection
    ok($ngx->reload(wait_old_exit => 1, timeout => 20),
       "$what: reload, a new worker");
    my ($id, $code) = upstream_order();
    $pg->insert_order(topup_id => $id, user_id => 'u1');
    my $r;
    ok(wait_until(sub { $r = $pg->order($id);
                        ($r->{last_error} // '') ne '' }, timeout => 20),
       "$what: recorded");
    like($r->{last_error} // '', $re, "$what: " . ($r->{last_error} // ''));
    ok(scalar(grep { ($_->{conn_fault} // '') eq $kind } $mock->requests),
       "$what: the mock did it");
    ok(!defined $r->{card_enc}, "$what: nothing stored");
    # a hanging connection ends when the poller gives up on it
    $mock->reset_faults;
    fulfilled_ok($id, $code, "$what, fault gone");
}

# with master_process off (valgrind) nginx serves nothing after a reload,
# with or without the module: these need workers
if (single_process()) {
    note 'connection faults skipped: they need a reload, hence workers';
} else {
    conn_fault('reset in the middle of the TLS handshake', 'tls_reset',
               qr/curl (35|56)|reset|SSL/i);
    conn_fault('accepted, never answered', 'tls_hang',
               qr/timed out|curl 28/i);
    conn_fault('closed before the handshake', 'tls_close',
               qr/curl (35|52|56)|SSL|closed/i);

    # nobody listening
    {
        my $port = free_port();
        ok($ngx->reload(vars => { BASE => "https://127.0.0.1:$port" },
                        wait_old_exit => 1, timeout => 20),
           'connection refused: reload');
        my ($id, $code) = upstream_order();
        $pg->insert_order(topup_id => $id, user_id => 'u1');
        my $r;
        ok(wait_until(sub { $r = $pg->order($id);
                            ($r->{last_error} // '') ne '' }, timeout => 20),
           'connection refused: recorded');
        like($r->{last_error} // '', qr/curl 7|connect/i,
             'connection refused: ' . ($r->{last_error} // ''));
        ok($ngx->reload(vars => { BASE => $mock->base_url },
                        wait_old_exit => 1, timeout => 20),
           'the right base again');
        unpause($pg);
        fulfilled_ok($id, $code, 'connection refused, fault gone');
    }
}

healthy('at the end');
$ngx->quit;
hygiene($env);
done_testing;

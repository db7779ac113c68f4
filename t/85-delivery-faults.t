use v5.36;
use Test::More;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Test::Peer qw(webhook_peer);
use Ocdz::Card qw(:all);
use Ocdz::Test::Proc qw(spawn);
require_module();

# Delivery faults against real peers on loopback: a scriptable SMTP
# server (t/lib/smtp_fault_server.py: STARTTLS with the test CA, AUTH
# PLAIN) failing at each step, 4xx retried and 5xx failed as the README's
# table says, STARTTLS missing never sending in clear; a server stalling
# mid-DATA (the send ends at ocdz_smtp_timeout, the worker answers a
# reveal meanwhile, the retry delivers once with the same Message-ID); a
# worker killed mid-send (email) and a reload mid-send (SMS); two nginx
# instances on one database sending 20 emails and 20 SMS once each; a
# webhook to an HTTPS receiver whose certificate is not trusted; the
# card code nowhere but in the messages.

my $sf = slow_factor();
my $env = card_env(pg => { log_statement => 'none' });
my $pg = $env->{pg};
my $dir = $env->{dir};
my $pki = pki();

# --- the peers ----------------------------------------------------------------
my $sport = free_port();
my $sdir = tmpdir();
my $pass = 'smtp_' . random_hex(12);
my $spid = spawn(['/usr/bin/python3', repo_root() . '/t/lib/smtp_fault_server.py',
                  $sport, $sdir, $pki->{server_cert}, $pki->{server_key},
                  'shop', $pass], log => "$sdir/smtp.log");
END { kill 'TERM', $spid if $spid }
my $gateway = webhook_peer(timeout => 15);
my ($gport, $gdir) = @$gateway{qw(port dir)};
ok(wait_until(sub { slurp("$sdir/smtp.log") =~ /listening/ }, timeout => 15)
   && $gateway->{listening}, 'SMTP server and SMS gateway listening');

sub smode ($m) { replace_file("$sdir/mode", $m) }
sub gmode ($m) { replace_file("$gdir/mode", $m) }
sub jsonl ($f) {
    return () unless -e $f;
    return map { json_decode($_) } grep { length } split /\n/, slurp($f);
}
sub msgid ($id) { "<ocdz.$id.email\@shop.example>" }
sub messages ($id) { grep { ($_->{message_id} // '') eq msgid($id) }
                     jsonl("$sdir/messages.jsonl") }
sub stalled ($id) { grep { ($_->{message_id} // '') eq msgid($id) }
                    jsonl("$sdir/stalled.jsonl") }
sub sms_received ($id) { grep { $_->{body} =~ /"key":"\Q$id\E-sms"/ }
                         jsonl("$gdir/requests.jsonl") }
smode('');
gmode('ok');

write_file("$dir/smtp.cred", "shop:$pass\n", 0600);
my $http = <<"EOF";
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_max_backoff 2s;
    ocdz_outbox_attempts 3;
    ocdz_outbox_lease 3s;
    ocdz_smtp_url smtp://127.0.0.1:$sport;
    ocdz_smtp_credentials_file %%DIR%%/smtp.cred;
    ocdz_smtp_ca_file $pki->{ca_cert};
    ocdz_smtp_timeout 2s;
    ocdz_mail_from cards\@shop.example;
    ocdz_sms_gateway_url http://127.0.0.1:$gport/sms;
    ocdz_sms_gateway_body json '{"to":"{to}","text":"{message}","key":"{idempotency_key}"}';
    ocdz_sms_timeout 2s;
EOF
my $ngx = card_nginx($env, http => $http);

# an order fulfilled as the poller does it: card and status in one write
sub order (%f) {
    my $code = random_card_code();
    push @{ $env->{codes} }, $code;
    $f{channels} //= '{email}';
    my $id = $pg->insert_order(user_id => 'u1', %f);
    my $rec = tool_encrypt($env, $id, $code);
    $pg->psql("UPDATE ocdz.orders SET status = 'FULFILLED', card_enc = "
        . sql_quote($rec) . ", num_trans = 'AT-" . random_hex(4) . "', "
        . "date_traitement = '2025-10-29T01:05:30.000Z', fulfilled_at = now() "
        . 'WHERE topup_id = ' . sql_quote($id));
    return ($id, $code);
}
sub row ($id, $channel = 'email') {
    my ($r) = $pg->hashes("SELECT *, next_attempt_at > now() AS later "
        . 'FROM ocdz.outbox WHERE topup_id = ' . sql_quote($id)
        . ' AND channel = ' . sql_quote($channel));
    return $r;
}
sub wait_row ($id, $cond, $t = 10, $channel = 'email') {
    my $r;
    wait_until(sub { $r = row($id, $channel); $r && $cond->($r) },
               timeout => $t * $sf);
    return $r;
}
sub is_sent ($id, $name, $t = 10, $channel = 'email') {
    my $r = wait_row($id, sub ($r) { $r->{state} eq 'sent' }, $t, $channel);
    ok($r && $r->{state} eq 'sent', $name) or diag explain $r;
    return $r;
}
sub in_ids (@ids) { '(' . join(', ', map { sql_quote($_) } @ids) . ')' }

# last_error: a reason, never a secret, an address or the server's text
sub clean_error ($e, $name) {
    my @bad = grep { index($e // '', $_) >= 0 }
              ($pass, 'shop:', "127.0.0.1:$sport", '@example.com',
               'refused', 'not available', 'not accepted');
    ok(!@bad, "$name: last_error without secret, address or reply text")
        or diag "last_error: $e";
}

# --- 1. a reply at each step: retried or failed as the README says -----------
# [mode, outcome, last_error, name]
my @faults = (
    ['greet 421',         'pending', qr/^SMTP 421\b/, 'greeting 421'],
    ['greet 554',         'failed',  qr/^SMTP 554\b/, 'greeting 554'],
    ['ehlo 451',          'pending', qr/^SMTP 451\b/, 'EHLO 451'],
    ['ehlo 550',          'failed',  qr/^SMTP 550\b/, 'EHLO 550'],
    ['ehlo 502',          'pending', qr/STARTTLS not offered/, 'EHLO not known: HELO, and no STARTTLS without EHLO'],
    ['ehlo2 421',         'pending', qr/^SMTP 421\b/, 'EHLO 421 after STARTTLS'],
    ['ehlo2 554',         'failed',  qr/^SMTP 554\b/, 'EHLO 554 after STARTTLS'],
    ['nostarttls',        'pending', qr/SSL|TLS/i,     'STARTTLS not offered'],
    ['starttls 454',      'pending', qr/^SMTP 454\b/, 'STARTTLS 454'],
    ['starttls 554',      'failed',  qr/^SMTP 554\b/, 'STARTTLS 554'],
    ['auth 454',          'pending', qr/^SMTP 454\b/, 'AUTH 454'],
    ['auth 535',          'failed',  qr/^SMTP 535\b/, 'AUTH 535'],
    ['mail 550',          'failed',  qr/^SMTP 550\b/, 'MAIL 550'],
    ['rcpt 550',          'failed',  qr/^SMTP 550\b/, 'RCPT 550'],
    ['data 451',          'pending', qr/^SMTP 451\b/, 'DATA command 451'],
    ['data 554',          'failed',  qr/^SMTP 554\b/, 'DATA command 554'],
    ['eod 452',           'pending', qr/^SMTP 452\b/, 'end of data 452'],
    ['eod 552',           'failed',  qr/^SMTP 552\b/, 'end of data 552'],
);
for my $f (@faults) {
    my ($m, $want, $err, $name) = @$f;
    smode($m);
    my $conns = () = jsonl("$sdir/commands.jsonl");
    my ($id) = order(email => 'fault@example.com');
    my $r = wait_row($id, sub ($r) { $r->{attempts} >= 1 && $r->{state} ne 'sending' });
    is($r && $r->{state}, $want, "$name: $want") or diag explain $r;
    like($r->{last_error} // '', $err, "$name: last_error") or diag $r->{last_error};
    clean_error($r->{last_error}, $name);
    if ($m eq 'nostarttls') {
        my @cmds = jsonl("$sdir/commands.jsonl");
        my @clear = grep { !$_->{tls} && $_->{verb} !~ /^(EHLO|STARTTLS|QUIT)$/ }
                    @cmds[$conns .. $#cmds];
        is_deeply([ map { $_->{verb} } @clear ], [],
                  "$name: nothing but EHLO/STARTTLS/QUIT in clear (no AUTH, MAIL, DATA)");
    }
    smode('');
    if ($want eq 'pending') {
        is($r->{attempts}, 1, "$name: one attempt so far");
        ok($r->{later} eq 't' || $r->{later} eq '1', "$name: next_attempt_at in the future");
        ok(!defined $r->{lease_token}, "$name: lease released");
        is_sent($id, "$name: sent on a later attempt");
        is(scalar(messages($id)), 1, "$name: one message received");
    } else {
        is($r->{attempts}, 1, "$name: not retried");
        is(scalar(messages($id)), 0, "$name: nothing received");
    }
}

# --- 2. a server stalling mid-DATA ---------------------------------------------
# One worker, alone on the database: the reveal meets the worker that sends.
$ngx->stop;
{
    (my $h1 = $http) =~ s/ocdz_smtp_timeout 2s/ocdz_smtp_timeout 2500ms/;
    $h1 =~ s/ocdz_outbox_attempts 3/ocdz_outbox_attempts 5/;
    my $n1 = card_nginx($env, http => $h1, nginx => { workers => 1 });
    my $tok = $pg->add_session(random_token(), 'u1');
    my ($cid) = new_card($env);
    my $t1 = time;
    my ($s0) = card_get($n1, $cid, token => $tok);
    my $base = time - $t1;
    is($s0, 200, 'stall: a reveal before');

    smode('stall 400');
    my ($id) = order(email => 'stall@example.com');
    ok(wait_until(sub { stalled($id) }, timeout => 10 * $sf), 'stall: part of the body read, then silence');
    my $t0 = time;
    smode('');
    $t1 = time;
    my ($s) = card_get($n1, $cid, token => $tok);
    my $dt = time - $t1;
    is($s, 200, 'stall: a reveal answered meanwhile');
    cmp_ok($dt, '<', 1.5, sprintf('stall: ... quickly: the worker does not wait for the server (%.2fs; %.2fs before the stall)', $dt, $base));
    my $r = wait_row($id, sub ($r) { $r->{attempts} >= 1 && $r->{state} eq 'pending' });
    ok($r && $r->{state} eq 'pending', 'stall: retried') or diag explain $r;
    my $took = time - $t0;
    like($r->{last_error} // '', qr/tim/i, 'stall: last_error says timeout');
    unlike($r->{last_error} // '', qr/^SMTP/, 'stall: ... not a success reply code (354)');
    cmp_ok($took, "<", 2.5 + 3 * $sf, sprintf('stall: ended by ocdz_smtp_timeout (%.1fs)', $took));
    $r = is_sent($id, 'stall: sent on the next attempt');
    is($r->{attempts}, 2, 'stall: two attempts (the stalled connection not reused)');
    my @m = messages($id);
    is(scalar @m, 1, 'stall: received exactly once');
    my ($st) = stalled($id);
    is($st && $st->{message_id}, $m[0]{message_id},
       'stall: the same Message-ID in both attempts');
    $n1->stop;
}
$ngx = card_nginx($env, http => $http);

# --- 3. a worker killed mid-send (email): sent after the lease, once ---------
unless (single_process()) {
    smode('stall 400');
    my ($id) = order(email => 'killed@example.com');
    ok(wait_until(sub { stalled($id) }, timeout => 10 * $sf), 'kill: the send hangs mid-DATA');
    for my $p ($ngx->worker_pids) {
        $ngx->expect("worker process $p exited on signal 9");
        kill 'KILL', $p;
    }
    smode('');
    my $r = is_sent($id, "kill: sent by a new worker after the dead one's lease", 15);
    is($r->{attempts}, 2, 'kill: the killed attempt counted');
    my @m = messages($id);
    is(scalar @m, 1, 'kill: one message accepted (the cut one never was)');
    is($m[0]{message_id}, msgid($id), 'kill: the same Message-ID');
}

# --- 4. a reload mid-send (SMS): sent once ------------------------------------
unless (single_process()) {
    gmode('sleep 1');
    my @ids = map { (order(phone => '+21355000' . sprintf('%04d', $_),
                           channels => '{sms}'))[0] } 1 .. 4;
    ok(wait_until(sub { grep { sms_received($_) } @ids }, timeout => 10 * $sf),
       'reload: SMS in flight');
    ok(card_reload($ngx, http => $http), 'reload: reloaded');
    gmode('ok');
    ok(wait_until(sub { $pg->value("SELECT count(*) FROM ocdz.outbox WHERE "
                   . "channel = 'sms' AND state = 'sent' AND topup_id IN "
                   . in_ids(@ids)) == 4 }, timeout => 15 * $sf),
       'reload: the 4 SMS sent');
    is_deeply([ grep { sms_received($_) != 1 } @ids ], [], 'reload: each SMS received once');
}

# --- 5. two instances on one database: 20 emails and 20 SMS, once each ----
{
    my $ngx2 = card_nginx($env, http => $http);
    my @ids = map { (order(email => "two$_\@example.com",
                           phone => '+21366000' . sprintf('%04d', $_),
                           channels => '{email,sms}'))[0] } 1 .. 20;
    ok(wait_until(sub { $pg->value("SELECT count(*) FROM ocdz.outbox WHERE "
                   . "channel IN ('email', 'sms') AND state = 'sent' AND "
                   . 'topup_id IN ' . in_ids(@ids)) == 40 },
                  timeout => 30 * $sf), 'two instances: the 40 deliveries sent');
    is_deeply([ grep { messages($_) != 1 } @ids ], [], 'two instances: each email received once');
    is_deeply([ grep { sms_received($_) != 1 } @ids ], [], 'two instances: each SMS received once');
    is($pg->value('SELECT count(*) FROM ocdz.outbox WHERE lease_token IS NOT NULL '
                  . 'AND topup_id IN ' . in_ids(@ids)), 0, 'two instances: no lease left');
    $ngx2->stop;
}
$ngx->stop;

# --- 6. the webhook to an HTTPS receiver not trusted --------------------------
{
    my $receiver = webhook_peer(cert => $pki->{server_cert},
                                key => $pki->{server_key});
    my ($wport, $wdir) = @$receiver{qw(port dir)};
    ok($receiver->{listening}, 'HTTPS receiver listening');
    write_file("$dir/wh.secret", 'whsec_' . random_hex(16), 0600);
    my $n3 = card_nginx($env, http => <<"EOF");
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_attempts 3;
    ocdz_webhook_url https://127.0.0.1:$wport/hook;
    ocdz_webhook_secret_file %%DIR%%/wh.secret;
    ocdz_webhook_timeout 5s;
EOF
    my $id = $pg->insert_order;
    $pg->psql("UPDATE ocdz.orders SET status = 'REFUNDED' WHERE topup_id = " . sql_quote($id));
    my $r = wait_row($id, sub ($r) { $r->{attempts} >= 1 && $r->{state} eq 'pending' },
                     10, 'webhook');
    ok($r && $r->{state} eq 'pending', 'untrusted HTTPS receiver: retried') or diag explain $r;
    like($r->{last_error} // '', qr/certificate|SSL/i, '... last_error says the certificate')
        or diag $r->{last_error};
    unlike($r->{last_error} // '', qr/127\.0\.0\.1|hook/, '... without the URL');
    my @got = jsonl("$wdir/requests.jsonl");
    is(scalar @got, 0, '... nothing delivered to it');
    $n3->stop;

    # the same receiver, its CA given by ocdz_outbox_ca_file
    my $n4 = card_nginx($env, http => <<"EOF");
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_attempts 3;
    ocdz_webhook_url https://127.0.0.1:$wport/hook;
    ocdz_webhook_secret_file %%DIR%%/wh.secret;
    ocdz_webhook_timeout 5s;
    ocdz_outbox_ca_file $pki->{ca_cert};
EOF
    $r = wait_row($id, sub ($r) { $r->{state} eq 'sent' }, 15, 'webhook');
    is($r && $r->{state}, 'sent', 'ocdz_outbox_ca_file: the retried webhook sent to the receiver its CA signed')
        or diag explain $r;
    @got = grep { index($_->{body} // '', $id) >= 0 } jsonl("$wdir/requests.jsonl");
    is(scalar @got, 1, '... received once');
    $n4->stop;
}

# --- the card code only inside the messages -----------------------------------
my $ob = join "\n", map { join ',', map { $_ // '' } @$_ }
    $pg->psql('SELECT o.*::text FROM ocdz.outbox o');
ok(!(grep { index($ob, $_) >= 0 } @{ $env->{codes} }), 'no card code in the outbox');
my $errs = join "\n", map { $_->[0] // '' }
    $pg->psql('SELECT last_error FROM ocdz.outbox WHERE last_error IS NOT NULL');
ok(index($errs, $pass) < 0, 'no SMTP password in any last_error');
my $cmds = slurp("$sdir/commands.jsonl");
ok(!(grep { index($cmds, $_) >= 0 } @{ $env->{codes} }), '(the SMTP peer logged commands only)');
hygiene($env, $pass);

done_testing();

use v5.36;
use Test::More;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Test::Peer qw(webhook_peer);
use Ocdz::Card qw(:all);
require_module();

# The outbox's SMS channel against an HTTP gateway stub on loopback
# (t/lib/webhook_receiver.py): the card opened when sent, the text in the
# customer's language, the gateway's JSON body, its token and message id,
# CARD_DELIVERED audited; no phone or a bad one skipped with the reason;
# 500 retried to the limit, 429 retried then sent once; the card code
# only inside the gateway's requests, never in a log, table or the outbox.

my $sf = slow_factor();
my $env = card_env();
my $pg = $env->{pg};
my $dir = $env->{dir};

my $gateway = webhook_peer();
my ($gport, $gdir) = @$gateway{qw(port dir)};
ok($gateway->{listening}, 'gateway stub listening');
sub mode ($m) { replace_file("$gdir/mode", $m) }
sub received (%o) {
    my $f = "$gdir/requests.jsonl";
    return () unless -e $f;
    my @r = map { json_decode($_) } grep { length } split /\n/, slurp($f);
    return grep { !$o{key} || $_->{body} =~ /"key":"\Q$o{key}\E-sms"/ } @r;
}
mode('ok');

my $token = 'gw_' . random_hex(16);
write_file("$dir/gw.token", $token, 0600);

my $ngx = card_nginx($env, http => <<"EOF");
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_max_backoff 4s;
    ocdz_outbox_attempts 3;
    ocdz_outbox_lease 5s;
    ocdz_sms_gateway_url http://127.0.0.1:$gport/sms;
    ocdz_sms_gateway_body json '{"to":"{to}","text":"{message}","unicode":"{unicode}","key":"{idempotency_key}"}';
    ocdz_sms_gateway_token_file %%DIR%%/gw.token;
    ocdz_sms_reply_id id;
    ocdz_sms_timeout 2s;
EOF

# an order fulfilled as the poller does it: card and status in one write
sub order (%f) {
    my $code = delete $f{code} // random_card_code();
    push @{ $env->{codes} }, $code;
    my $id = $pg->insert_order(%f);
    my $rec = tool_encrypt($env, $id, $code);
    my $trans = 'AT-' . random_hex(4);
    $pg->psql("UPDATE ocdz.orders SET status = 'FULFILLED', card_enc = "
        . sql_quote($rec) . ", num_trans = '$trans', date_traitement = "
        . "'2025-10-29T01:05:30.000Z', fulfilled_at = now() WHERE topup_id = "
        . sql_quote($id));
    return ($id, $code, $trans);
}
sub sms_row ($id) {
    my ($r) = $pg->hashes("SELECT * FROM ocdz.outbox WHERE channel = 'sms' "
                          . 'AND topup_id = ' . sql_quote($id));
    return $r;
}
sub sms_is ($id, $state, $name, $t = 10) {
    my $r;
    my $ok = wait_until(sub { $r = sms_row($id); $r && $r->{state} eq $state },
                        timeout => $t * $sf);
    ok($ok, $name) or diag explain $r;
    return $r;
}
sub header ($req, $name) {
    my ($k) = grep { lc $_ eq lc $name } keys %{ $req->{headers} };
    return $k ? $req->{headers}{$k} : undef;
}

# --- the three languages ------------------------------------------------------
for my $c ([en => 'ADSL', qr/ADSL/, '0'], [fr => '4G', qr/4G/, '0'],
           [ar => 'ADSL', qr/[\x{0600}-\x{06FF}]/, '1']) {
    my ($lang, $type, $re, $uni) = @$c;
    my ($id, $code, $trans) = order(phone => '+213550000001', lang => $lang,
                                    type => $type);
    my $r = sms_is($id, 'sent', "$lang: sms sent");
    my @got = received(key => $id);
    is(scalar @got, 1, "$lang: one request");
    my $raw = $got[0]{body};
    utf8::encode($raw) if utf8::is_utf8($raw);
    my $b = json_decode($raw);
    is($b->{to}, '+213550000001', "$lang: to");
    my $text = $b->{text};
    utf8::decode($text) unless utf8::is_utf8($text);
    like($text, qr/\Q$code\E/, "$lang: the card code in the SMS");
    like($text, qr/\Q$trans\E/, "$lang: the transaction number");
    like($text, $re, "$lang: the text of its language/type");
    is($b->{unicode}, $uni, "$lang: unicode $uni");
    is(header($got[0], 'Authorization'), "Bearer $token", "$lang: the gateway token");
    like($r->{message_id}, qr/^msg-\d+$/, "$lang: the gateway's message id kept");
    my @aud = grep { $_->{event} eq 'CARD_DELIVERED' } $pg->audit($id);
    is(scalar @aud, 1, "$lang: CARD_DELIVERED audited");
    is($aud[0]{method}, 'sms', "$lang: ... method sms");
    ok(defined $pg->order($id)->{delivered_at}, "$lang: delivered_at set");
}

# --- skipped with the reason ------------------------------------------------
{
    my ($id) = order(lang => 'en');
    my $r = sms_is($id, 'skipped', 'no phone: skipped');
    is($r->{last_error}, 'the order has no phone number', '... with the reason');
    my ($id2) = order(phone => '1234567890123456789');
    $r = sms_is($id2, 'skipped', 'a phone the gateway cannot take: skipped');
    like($r->{last_error}, qr/not valid/, '... with the reason');
    my ($id3) = order(phone => '+213550000002', channels => '{email}');
    $r = sms_is($id3, 'skipped', 'sms not among the order\'s channels: skipped');
    is(scalar(received(key => $id3)), 0, 'nothing sent for them');
    is(scalar(received(key => $id)) + scalar(received(key => $id2)), 0, '...');
}

# --- gateway 500 to the limit, 429 then sent once ---------------------------
{
    mode('status 500');
    my ($id) = order(phone => '+213550000003');
    my $r = sms_is($id, 'failed', '500: failed at the limit', 20);
    is($r->{attempts}, 3, 'three attempts');
    is($r->{last_error}, 'HTTP 500', 'last_error');
    is(scalar(received(key => $id)), 3, 'three requests');
    ok(!defined $pg->order($id)->{delivered_at}, 'not delivered');

    mode('status 429 1');
    my ($id2) = order(phone => '+213550000004');
    ok(wait_until(sub { received(key => $id2) >= 1 }, timeout => 10 * $sf),
       '429: first attempt');
    mode('ok');
    sms_is($id2, 'sent', '429 then sent', 15);
    sleep 1.5;
    is(scalar(received(key => $id2)), 2, 'two requests, none after the success');
}

# --- the card code only inside the gateway's requests -----------------------
my $ob = join "\n", map { join ',', map { $_ // '' } @$_ }
    $pg->psql('SELECT o.*::text FROM ocdz.outbox o');
ok(!(grep { index($ob, $_) >= 0 } @{ $env->{codes} }), 'no card code in the outbox');
hygiene($env, $token);

$ngx->stop;
done_testing();

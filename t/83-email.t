use v5.36;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Test::Proc qw(spawn);
require_module();

# The outbox's email channel against a real SMTP server on loopback
# (aiosmtpd, t/lib/smtp_server.py) with STARTTLS and AUTH required: the
# message's headers, MIME structure, encodings and content in English,
# French and Arabic; the Message-ID of the order; CARD_DELIVERED; no
# address skipped; 4xx at RCPT and DATA retried, 5xx failed at once,
# wrong credentials failed, a refused connection retried; the card code
# only inside the messages received.

if (system('/usr/bin/python3', '-c', 'import aiosmtpd') != 0) {
    plan skip_all => 'python3-aiosmtpd is not installed (make deps-test)';
}

my $sf = slow_factor();
my $env = card_env();
my $pg = $env->{pg};
my $dir = $env->{dir};
my $pki = pki();

my $sport = free_port();
my $sdir = tmpdir();
my $pass = 'smtp_' . random_hex(12);
my $spid = spawn(['/usr/bin/python3', repo_root() . '/t/lib/smtp_server.py',
                  $sport, $sdir, $pki->{server_cert}, $pki->{server_key},
                  'shop', $pass], log => "$sdir/smtp.log");
END { kill 'TERM', $spid if $spid }
ok(wait_until(sub { slurp("$sdir/smtp.log") =~ /listening/ }, timeout => 15),
   'SMTP server listening') or diag slurp("$sdir/smtp.log");
sub mode ($m) { replace_file("$sdir/mode", $m) }
sub messages (%o) {
    my $f = "$sdir/messages.jsonl";
    return () unless -e $f;
    my @r = map { json_decode($_) } grep { length } split /\n/, slurp($f);
    return grep { !$o{id} || ($_->{headers}{'Message-ID'} // '') =~ /\Q$o{id}\E/ } @r;
}
mode('none');

write_file("$dir/smtp.cred", "shop:$pass\n", 0600);
write_file("$dir/smtp.bad", "shop:wrong\n", 0600);
my $conf = sub (%o) {
    my $port = $o{port} // $sport;
    my $cred = $o{cred} // 'smtp.cred';
    my $c = <<"EOF";
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_max_backoff 4s;
    ocdz_outbox_attempts 3;
    ocdz_outbox_lease 8s;
    ocdz_smtp_url smtp://127.0.0.1:$port;
    ocdz_smtp_credentials_file %%DIR%%/$cred;
    ocdz_smtp_ca_file $pki->{ca_cert};
    ocdz_smtp_timeout 5s;
    ocdz_mail_from cards\@shop.example;
    ocdz_mail_from_name "Boutique Échantillon";
    ocdz_mail_reply_to support\@shop.example;
EOF
    utf8::encode($c);
    return $c;
};
my $ngx = card_nginx($env, http => $conf->());

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
sub mail_row ($id) {
    my ($r) = $pg->hashes("SELECT * FROM ocdz.outbox WHERE channel = 'email' "
                          . 'AND topup_id = ' . sql_quote($id));
    return $r;
}
sub mail_is ($id, $state, $name, $t = 10) {
    my $r;
    my $ok = wait_until(sub { $r = mail_row($id); $r && $r->{state} eq $state },
                        timeout => $t * $sf);
    ok($ok, $name) or diag explain $r;
    return $r;
}
sub dec ($s) { my $c = $s // ''; utf8::decode($c) unless utf8::is_utf8($c); $c }

# --- three languages ---------------------------------------------------------
my %words = (en => qr/Keep this code secret/, fr => qr/Gardez ce code secret/,
             ar => qr/احتفظ بهذا الرمز سرا/);
for my $lang (qw(en fr ar)) {
    my ($id, $code, $trans) = order(email => "buyer.$lang\@example.com",
                                    lang => $lang, phone => undef);
    my $r = mail_is($id, 'sent', "$lang: email sent");
    my ($m) = messages(id => $id);
    ok($m, "$lang: received") or next;
    ok($m->{tls}, "$lang: over TLS (STARTTLS)");
    is($m->{auth}, 'shop', "$lang: authenticated");
    is($m->{mail_from}, 'cards@shop.example', "$lang: envelope sender");
    is_deeply($m->{rcpt}, ["buyer.$lang\@example.com"], "$lang: envelope recipient");
    my $h = $m->{headers};
    is($h->{'Message-ID'}, "<ocdz.$id.email\@shop.example>", "$lang: Message-ID of the order");
    is($r->{message_id}, $h->{'Message-ID'}, "$lang: kept in the outbox");
    like(dec($h->{From}), qr/Boutique Échantillon.*<cards\@shop\.example>/, "$lang: From with its name");
    is($h->{'Reply-To'}, 'support@shop.example', "$lang: Reply-To");
    like($h->{'Content-Type'}, qr{^multipart/alternative}, "$lang: multipart/alternative");
    is($h->{'Content-Language'}, $lang, "$lang: Content-Language");
    like($m->{raw}, qr/^Subject: =\?UTF-8\?B\?/m, "$lang: the subject RFC 2047 encoded")
        if $lang eq 'ar';
    like(dec($h->{Subject}), qr/ADSL.*1000/, "$lang: the subject (decoded) names the card");
    my ($text) = grep { $_->{type} eq 'text/plain' } @{ $m->{parts} };
    my ($html) = grep { $_->{type} eq 'text/html' } @{ $m->{parts} };
    ok($text && $html, "$lang: text and HTML parts");
    is(lc($text->{charset} // ''), 'utf-8', "$lang: UTF-8 text");
    my ($t, $hh) = (dec($text->{content}), dec($html->{content}));
    like($t, qr/\Q$code\E/, "$lang: the card code in the text");
    like($hh, qr/\Q$code\E/, "$lang: ... and in the HTML");
    like($t, qr/\Q$trans\E/, "$lang: the transaction number");
    like($t, $words{$lang}, "$lang: the notice in its language");
    like($hh, qr/dir="rtl"/, "$lang: right to left") if $lang eq 'ar';
    unlike($m->{raw}, qr/\Q$code\E/, "$lang: the code not in clear on the wire (encoded parts)")
        if $lang eq 'ar';
    my @aud = grep { $_->{event} eq 'CARD_DELIVERED' } $pg->audit($id);
    is(scalar(@aud), 1, "$lang: CARD_DELIVERED");
    is($aud[0]{method}, 'email', "$lang: ... method email");
}

# --- no address: skipped ----------------------------------------------------
{
    my ($id) = order();
    my $r = mail_is($id, 'skipped', 'no email address: skipped');
    is($r->{last_error}, 'the order has no email address', '... with the reason');
}

# --- SMTP faults ---------------------------------------------------------------
for my $f (['rcpt 450', 'pending'], ['data 451', 'pending'], ['mail 451', 'pending'],
           ['rcpt 550', 'failed'], ['data 554', 'failed']) {
    my ($m, $want) = @$f;
    mode($m);
    my ($id) = order(email => 'fault@example.com');
    my $r;
    ok(wait_until(sub { $r = mail_row($id); $r->{attempts} >= 1 && $r->{state} eq $want },
                  timeout => 10 * $sf), "$m: $want") or diag explain $r;
    my ($code) = $m =~ /(\d+)/;
    like($r->{last_error} // '', qr/^SMTP $code/, "$m: last_error says SMTP $code");
    mode('none');
    if ($want eq 'pending') {
        mail_is($id, 'sent', "$m: sent on a later attempt");
        is(scalar(messages(id => $id)), 1, "$m: one message received");
    } else {
        is($r->{attempts}, 1, "$m: not retried");
        is(scalar(messages(id => $id)), 0, "$m: nothing received");
    }
}
$ngx->stop;

# --- wrong credentials; a refused connection ----------------------------------
{
    my $n2 = card_nginx($env, http => $conf->(cred => 'smtp.bad'));
    my ($id) = order(email => 'auth@example.com');
    my $r = mail_is($id, 'failed', 'wrong credentials: failed');
    like($r->{last_error}, qr/^SMTP 535/, '... SMTP 535');
    $n2->stop;

    my $n3 = card_nginx($env, http => $conf->(port => free_port()));
    my ($id2) = order(email => 'down@example.com');
    ok(wait_until(sub { my $x = mail_row($id2); $x->{attempts} >= 1 && $x->{state} eq 'pending' },
                  timeout => 10 * $sf), 'connection refused: retried later');
    like(mail_row($id2)->{last_error}, qr/connect/i, '... last_error says so');
    $n3->stop;
}

my $ob = join "\n", map { join ',', map { $_ // '' } @$_ }
    $pg->psql('SELECT o.*::text FROM ocdz.outbox o');
ok(!(grep { index($ob, $_) >= 0 } @{ $env->{codes} }), 'no card code in the outbox');
hygiene($env, $pass);

done_testing();

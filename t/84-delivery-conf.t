use v5.36;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Test::Peer qw(webhook_peer);
use Ocdz::Card qw(:all);
use Ocdz::Test::Proc qw(spawn);
require_module();

# The delivery's configuration (issue 15, part A), against the SMTP
# server (aiosmtpd, t/lib/smtp_server.py) and the SMS gateway stub
# (t/lib/webhook_receiver.py) of t/82 and t/83:
# - ocdz_mail_template / ocdz_sms_template: replaced templates used in
#   the messages received in English, French and Arabic (subject, text
#   and HTML parts, SMS text), values still escaped in a replaced HTML
#   part, the built-ins kept for the parts not replaced; every bad file
#   refused by nginx -t with its file, language, part and reason; the
#   text of `ocdz-card template` accepted and giving the built-in's
#   message;
# - ocdz_delivery_channels: what an order's NULL channels means (email
#   only: the SMS row skipped with the reason and nothing at the
#   gateway; none), an order's own channels winning;
# - the card code never in a log, a table or the outbox.

if (system('/usr/bin/python3', '-c', 'import aiosmtpd') != 0) {
    plan skip_all => 'python3-aiosmtpd is not installed (make deps-test)';
}

my $sf = slow_factor();
my $env = card_env();
my $pg = $env->{pg};
my $dir = $env->{dir};
my $pki = pki();

# --- the peers -----------------------------------------------------------------
my $sport = free_port();
my $sdir = tmpdir();
my $pass = 'smtp_' . random_hex(12);
my $spid = spawn(['/usr/bin/python3', repo_root() . '/t/lib/smtp_server.py',
                  $sport, $sdir, $pki->{server_cert}, $pki->{server_key},
                  'shop', $pass], log => "$sdir/smtp.log");
END { kill 'TERM', $spid if $spid }
my $gateway = webhook_peer(timeout => 15);
my ($gport, $gdir) = @$gateway{qw(port dir)};
ok(wait_until(sub { slurp("$sdir/smtp.log") =~ /listening/ }, timeout => 15),
   'SMTP server listening') or diag slurp("$sdir/smtp.log");
ok($gateway->{listening}, 'gateway stub listening');
replace_file("$sdir/mode", 'none');
replace_file("$gdir/mode", 'ok');

sub jsonl ($f) {
    return () unless -e $f;
    return map { json_decode($_) } grep { length } split /\n/, slurp($f);
}
sub dec ($s) {
    my $c = $s // '';
    utf8::decode($c) unless utf8::is_utf8($c);
    $c =~ s/\r\n/\n/g;
    return $c;
}
# the email of an order: subject, text and HTML parts, decoded
sub mail_of ($id) {
    my ($m) = grep { ($_->{headers}{'Message-ID'} // '') =~ /\Q$id\E/ }
              jsonl("$sdir/messages.jsonl");
    return undef unless $m;
    my ($t) = grep { $_->{type} eq 'text/plain' } @{ $m->{parts} };
    my ($h) = grep { $_->{type} eq 'text/html' } @{ $m->{parts} };
    return { subject => dec($m->{headers}{Subject}),
             text => dec($t && $t->{content}), html => dec($h && $h->{content}) };
}
# the SMS texts the gateway got for an order
sub sms_of ($id) {
    return map {
        my $raw = $_->{body};
        utf8::encode($raw) if utf8::is_utf8($raw);
        dec(json_decode($raw)->{text});
    } grep { $_->{body} =~ /"key":"\Q$id\E-sms"/ } jsonl("$gdir/requests.jsonl");
}

# --- the configuration ---------------------------------------------------------
my $token = 'gw_' . random_hex(16);
write_file("$dir/gw.token", $token, 0600);
write_file("$dir/smtp.cred", "shop:$pass\n", 0600);
my $base = <<"EOF";
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_attempts 3;
    ocdz_outbox_lease 8s;
    ocdz_sms_gateway_url http://127.0.0.1:$gport/sms;
    ocdz_sms_gateway_body json '{"to":"{to}","text":"{message}","key":"{idempotency_key}"}';
    ocdz_sms_gateway_token_file %%DIR%%/gw.token;
    ocdz_sms_timeout 2s;
    ocdz_smtp_url smtp://127.0.0.1:$sport;
    ocdz_smtp_credentials_file %%DIR%%/smtp.cred;
    ocdz_smtp_ca_file $pki->{ca_cert};
    ocdz_smtp_timeout 5s;
    ocdz_mail_from cards\@shop.example;
EOF
sub tpl ($name, $text) {
    my $t = $text;
    utf8::encode($t) if utf8::is_utf8($t);
    write_file("$dir/$name", $t);
    return "$dir/$name";
}
# template directives: [lang, part or undef (SMS), file]
sub tpl_conf (@t) {
    return join '', map {
        my ($l, $p, $f) = @$_;
        defined $p ? "    ocdz_mail_template $l $p $f;\n"
                   : "    ocdz_sms_template $l $f;\n";
    } @t;
}

# --- bad files: nginx -t refuses each, naming file, language and part ------------
{
    my $big = tpl('big.txt', "{card_code}\n" . ('x' x 70_000));
    my %bad = (
        unknown  => tpl('unknown.txt', "Code {card_code} for {customer}\n"),
        badutf8  => tpl('badutf8.txt', "Code {card_code} \xc3\x28\n"),
        nocode   => tpl('nocode.txt', "Your card is ready: {number}\n"),
        twolines => tpl('twolines.txt', "Your card\n{type} card\n"),
        codesubj => tpl('codesubj.txt', "Your code {card_code}\n"),
        brace    => tpl('brace.txt', "<style>p { color: red }</style>{card_code}\n"),
        longsms  => tpl('longsms.txt', "{card_code} " . ('a' x 400) . "\n"),
        good     => tpl('good.txt', "Code {card_code}\n"),
    );
    mkdir "$dir/adir";
    my @cases = (
        ['unknown placeholder', [[fr => text => $bad{unknown}]],
         qr/ocdz_mail_template fr text file "\Q$bad{unknown}\E": .*line 1, column \d+: unknown placeholder \{customer\}/],
        ['too large', [[ar => html => $big]],
         qr/ocdz_mail_template ar html file "[^"]*big\.txt" is too large/],
        ['bad UTF-8', [[en => undef, $bad{badutf8}]],
         qr/ocdz_sms_template en file "\Q$bad{badutf8}\E" is not valid UTF-8 \(byte 18\)/],
        ['no {card_code} in the text part', [[fr => text => $bad{nocode}]],
         qr/ocdz_mail_template fr text file .*has no \{card_code\}/],
        ['no {card_code} in the HTML part', [[ar => html => $bad{nocode}]],
         qr/ocdz_mail_template ar html file .*has no \{card_code\}/],
        ['no {card_code} in the SMS', [[ar => undef, $bad{nocode}]],
         qr/ocdz_sms_template ar file .*has no \{card_code\}/],
        ['a subject of two lines', [[en => subject => $bad{twolines}]],
         qr/ocdz_mail_template en subject file .*line 1, column \d+: a mail subject is one line/],
        ['the card code in the subject', [[fr => subject => $bad{codesubj}]],
         qr/ocdz_mail_template fr subject file .*no placeholder \{card_code\}/],
        ['a stray brace', [[en => html => $bad{brace}]],
         qr/ocdz_mail_template en html file .*unbalanced "\{"/],
        ['an SMS over ocdz_sms_max_parts', [[fr => undef, $bad{longsms}]],
         qr/ocdz_sms_template fr file "\Q$bad{longsms}\E" does not fit ocdz_sms_max_parts 2: /],
        ['a missing file', [[en => text => "$dir/missing.txt"]],
         qr/cannot open ocdz_mail_template en text file "\Q$dir\E\/missing\.txt"/],
        ['a directory', [[ar => undef, "$dir/adir"]],
         qr/ocdz_sms_template ar file "\Q$dir\E\/adir" is not a regular file/],
        ['the same language and part twice',
         [[fr => html => $bad{good}], [fr => html => $bad{good}]],
         qr/"ocdz_mail_template fr html" is duplicate/],
        ['the same SMS language twice',
         [[ar => undef, $bad{good}], [ar => undef, $bad{good}]],
         qr/"ocdz_sms_template ar" is duplicate/],
    );
    for my $c (@cases) {
        my ($name, $t, $re) = @$c;
        my $n = Ocdz::Test::Nginx->new(pg => $pg, vars => { DIR => $dir },
            conf => card_conf(http => $base . tpl_conf(@$t)));
        my ($rc, $out) = $n->test_config;
        my @emerg = grep { /\[emerg\]/ } split /\n/, $out;
        subtest "refused: $name" => sub {
            isnt($rc, 0, 'nginx -t fails');
            is(scalar @emerg, 1, 'one [emerg]') or diag $out;
            like($emerg[0] // '', $re, 'says which file, language, part and why')
                or diag $out;
        };
    }
    my $n = Ocdz::Test::Nginx->new(pg => $pg, vars => { DIR => $dir },
        conf => card_conf(http => $base . tpl_conf([en => text => $bad{good}],
            [en => html => $bad{good}], [ar => undef, $bad{good}])));
    my ($rc, $out) = $n->test_config;
    is($rc, 0, 'good template files pass nginx -t') or diag $out;
}

# --- orders --------------------------------------------------------------------
sub order (%f) {
    my $code = delete $f{code} // random_card_code();
    push @{ $env->{codes} }, $code;
    my $trans = delete $f{trans} // 'AT-' . random_hex(4);
    $f{email} //= 'buyer@example.com';
    $f{phone} //= '+213550000001';
    my $id = $pg->insert_order(%f);
    my $rec = tool_encrypt($env, $id, $code);
    $pg->psql("UPDATE ocdz.orders SET status = 'FULFILLED', card_enc = "
        . sql_quote($rec) . ', num_trans = ' . sql_quote($trans)
        . ", date_traitement = '2025-10-29T01:05:30.000Z', fulfilled_at = "
        . 'now() WHERE topup_id = ' . sql_quote($id));
    return ($id, $code, $trans);
}
sub row ($id, $ch) {
    my ($r) = $pg->hashes('SELECT * FROM ocdz.outbox WHERE channel = '
                          . sql_quote($ch) . ' AND topup_id = ' . sql_quote($id));
    return $r;
}
# waits until both card rows are final; returns them
sub settled ($id, $name) {
    my ($e, $s);
    my $ok = wait_until(sub {
        ($e, $s) = (row($id, 'email'), row($id, 'sms'));
        $e && $s && $e->{state} !~ /^(pending|sending)$/
            && $s->{state} !~ /^(pending|sending)$/;
    }, timeout => 15 * $sf);
    ok($ok, "$name: both deliveries final") or diag explain [$e, $s];
    return ($e, $s);
}
# the message with the order's own values put back as names
sub norm ($s, $id, $code, $trans) {
    $s =~ s/\Q$_->[0]\E/$_->[1]/g for [$code, 'CODE'], [$id, 'ID'], [$trans, 'TRANS'];
    return $s;
}

# --- the built-ins, to compare with --------------------------------------------
my $ngx = card_nginx($env, http => $base);
my %builtin;
{
    my ($id, $code, $trans) = order(lang => 'en');
    my ($e, $s) = settled($id, 'built-ins');
    is("$e->{state} $s->{state}", 'sent sent', 'built-ins: email and SMS sent');
    my $m = mail_of($id);
    my ($sms) = sms_of($id);
    $builtin{$_} = norm($m->{$_}, $id, $code, $trans) for qw(subject text html);
    $builtin{sms} = norm($sms // '', $id, $code, $trans);
    like($builtin{text}, qr/Keep this code secret/, 'built-in English text');
}

# --- replaced templates --------------------------------------------------------
# French: all four replaced; Arabic: text, HTML and SMS (its subject the
# built-in); English: the files `ocdz-card template` writes
my %tool;
for my $k (qw(mail-subject mail-text mail-html sms)) {
    my ($rc, $out) = run_cmd([tool_path(), 'template', $k, 'en']);
    is($rc, 0, "ocdz-card template $k en");
    $tool{$k} = "$dir/tool.$k.en";
    write_file($tool{$k}, $out);
}
my ($rc, undef, $err) = run_cmd([tool_path(), 'template', 'mail-body', 'en']);
is($rc, 2, 'ocdz-card template: an unknown kind is a usage error');
like($err, qr/unknown template "mail-body"/, '... saying so');

my @files = (
    [fr => subject => tpl('fr.subject', "FR-SUJET {type} {value} DA\n")],
    [fr => text => tpl('fr.text', "FR-TEXTE {{ok}}\nCode : {card_code}\n"
        . "Transaction : {num_trans}\n{notice}\n")],
    [fr => html => tpl('fr.html', "<p class=\"fr-html\">Code : <b>{card_code}</b>"
        . "</p>\n<p>Transaction : {num_trans}</p>\n<ol>\n{instructions_steps}\n</ol>\n")],
    [fr => undef, tpl('fr.sms', "FR-SMS {type} : {card_code} T {num_trans}\n")],
    [ar => text => tpl('ar.text', "AR-TEXT رمز البطاقة: {card_code}\n"
        . "رقم العملية: {num_trans}\n")],
    [ar => html => tpl('ar.html', "<div dir=\"rtl\" class=\"ar-html\">رمز البطاقة: "
        . "{card_code} — {num_trans}</div>\n")],
    [ar => undef, tpl('ar.sms', "AR-SMS {card_code} رقم {num_trans}")],
    [en => subject => $tool{'mail-subject'}], [en => text => $tool{'mail-text'}],
    [en => html => $tool{'mail-html'}], [en => undef, $tool{sms}],
);
ok(card_reload($ngx, http => $base . tpl_conf(@files)), 'reloaded with the template files');

{
    my $odd = 'AT-<i>&"q\'' . random_hex(3);
    my ($fid, $fcode) = order(lang => 'fr', type => '4G', trans => $odd);
    my ($aid, $acode) = order(lang => 'ar', trans => $odd);
    my ($eid, $ecode, $etrans) = order(lang => 'en');

    my ($e, $s) = settled($fid, 'fr');
    is("$e->{state} $s->{state}", 'sent sent', 'fr: email and SMS sent');
    my $m = mail_of($fid) // {};
    is($m->{subject}, 'FR-SUJET 4G 1000 DA', 'fr: the subject from its file');
    like($m->{text}, qr/\AFR-TEXTE \{ok\}\nCode : \Q$fcode\E\nTransaction : \Q$odd\E\n/,
         'fr: the text part from its file, "{{" a brace, the values as they are');
    like($m->{text}, qr/Gardez ce code secret/, 'fr: {notice} in French');
    like($m->{html}, qr{<p class="fr-html">Code : <b>\Q$fcode\E</b></p>},
         'fr: the HTML part from its file');
    like($m->{html}, qr{Transaction : AT-&lt;i&gt;&amp;&quot;q&#0?39;},
         'fr: values escaped for HTML in a replaced HTML part');
    unlike($m->{html}, qr/<i>&/, '... never raw');
    like($m->{html}, qr{<ol>\n<li>}, 'fr: {instructions_steps} as <li> lines');
    my @sms = sms_of($fid);
    is_deeply(\@sms, ["FR-SMS 4G : $fcode T $odd"], 'fr: the SMS text from its file');

    ($e, $s) = settled($aid, 'ar');
    is("$e->{state} $s->{state}", 'sent sent', 'ar: email and SMS sent');
    $m = mail_of($aid) // {};
    like($m->{subject}, qr/^بطاقة تعبئة ADSL/, 'ar: the built-in subject (not replaced)');
    like($m->{text}, qr/\AAR-TEXT رمز البطاقة: \Q$acode\E\nرقم العملية: \Q$odd\E\n\z/,
         'ar: the text part from its file');
    like($m->{html}, qr{<div dir="rtl" class="ar-html">رمز البطاقة: \Q$acode\E — AT-&lt;i&gt;},
         'ar: the HTML part from its file, escaped');
    @sms = sms_of($aid);
    is_deeply(\@sms, ["AR-SMS $acode رقم $odd"], 'ar: the SMS text from its file');

    ($e, $s) = settled($eid, 'en');
    is("$e->{state} $s->{state}", 'sent sent', 'en: email and SMS sent');
    $m = mail_of($eid) // {};
    for my $p (qw(subject text html)) {
        is(norm($m->{$p} // '', $eid, $ecode, $etrans), $builtin{$p},
           "en: the $p from `ocdz-card template` is the built-in's");
    }
    @sms = sms_of($eid);
    is(norm($sms[0] // '', $eid, $ecode, $etrans), $builtin{sms},
       'en: the SMS from `ocdz-card template` is the built-in\'s');
}

# --- default channels ------------------------------------------------------------
my $reason = 'not among the default channels (ocdz_delivery_channels)';
my @en = ([en => subject => tpl('en.subject', "EN-CUSTOM {type}")],
          [en => text => tpl('en.text', "EN-TEXT {card_code}\n")],
          [en => html => tpl('en.html', "<p>EN-HTML {card_code}</p>\n")],
          [en => undef, tpl('en.sms', "EN-SMS {card_code}\n")]);
ok(card_reload($ngx, http => $base . tpl_conf(@en) . "    ocdz_delivery_channels email;\n"),
   'reloaded: ocdz_delivery_channels email');
{
    my ($id, $code) = order(lang => 'en');
    my ($e, $s) = settled($id, 'email only');
    is($e->{state}, 'sent', 'email only: the email sent');
    is($s->{state}, 'skipped', 'email only: the SMS skipped');
    is($s->{last_error}, $reason, '... with the reason');
    is($s->{attempts}, 1, '... at its first lease');
    my $m = mail_of($id) // {};
    is($m->{subject}, 'EN-CUSTOM ADSL', 'en: the subject from its file');
    is($m->{text}, "EN-TEXT $code\n", 'en: the text part from its file');
    is($m->{html}, "<p>EN-HTML $code</p>\n", 'en: the HTML part from its file');

    my ($id2, $code2) = order(lang => 'en', channels => '{sms}');
    ($e, $s) = settled($id2, 'explicit {sms}');
    is($s->{state}, 'sent', 'an order\'s own {sms} wins: sent');
    is($e->{state}, 'skipped', '... its email skipped');
    is($e->{last_error}, 'not among the order\'s channels', '... by the order');
    is_deeply([sms_of($id2)], ["EN-SMS $code2"], 'en: the SMS text from its file');
    ok(!mail_of($id2), '... and no email');
    is(scalar(sms_of($id)), 0, 'email only: nothing at the gateway');
    is(scalar(grep { $_->{event} eq 'CARD_DELIVERED' && $_->{method} eq 'sms' }
              $pg->audit($id)), 0, 'email only: no CARD_DELIVERED by SMS');
}

ok(card_reload($ngx, http => $base . "    ocdz_delivery_channels none;\n"),
   'reloaded: ocdz_delivery_channels none');
{
    my ($id) = order(lang => 'fr');
    my ($e, $s) = settled($id, 'none');
    is("$e->{state} $s->{state}", 'skipped skipped', 'none: both skipped');
    is("$e->{last_error}|$s->{last_error}", "$reason|$reason", '... with the reason');
    ok(!mail_of($id) && !sms_of($id), '... nothing sent');
    ok(!defined $pg->order($id)->{delivered_at}, '... not delivered');

    my ($id2, $code2) = order(lang => 'fr', channels => '{email,sms}');
    ($e, $s) = settled($id2, 'explicit {email,sms}');
    is("$e->{state} $s->{state}", 'sent sent', 'an order\'s own channels win over none');
    like(mail_of($id2)->{text} // '', qr/\Q$code2\E/, '... the built-in French text');
    is(scalar(sms_of($id2)), 1, '... one SMS');
}
$ngx->stop;

# --- the card code only inside the messages ------------------------------------
my $ob = join "\n", map { join ',', map { $_ // '' } @$_ }
    $pg->psql('SELECT o.*::text FROM ocdz.outbox o');
ok(!(grep { index($ob, $_) >= 0 } @{ $env->{codes} }), 'no card code in the outbox');
hygiene($env, $pass, $token);

done_testing();

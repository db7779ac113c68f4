# Hostile arguments for every ocdz_* directive (issue #6, the config-
# argument parsers). The parsers are nginx glue (ngx_conf_t, nginx's and
# libpq's own parsers inside), so instead of libFuzzer they get a sweep
# through `nginx -t`: empty, huge, binary, numeric extremes, variables,
# format strings, paths to devices, directories and system files, URLs,
# CIDRs and origins that are almost right, a seeded set of random
# strings, and secret files with hostile contents (NUL bytes, 63 and 65
# hex digits, 10 MB, a directory, /dev/zero). Every run ends with exit 0,
# or exit 1 with an [emerg] line; nothing crashes, nothing hangs, no
# [alert] or [crit], and no secret file's content appears in the output.
# (t/01-config.t checks the messages of the expected refusals.)

use v5.36;
use Test::More;
use Ocdz::Test qw(:all);

require_module();

my $dir = tmpdir();
write_key_file("$dir/k1.key");
write_file("$dir/token", 'tok_' . random_hex(8), 0600);
write_file("$dir/dbpass", 'pw', 0600);
write_file("$dir/jwt", random_hex(32), 0600);
mkdir "$dir/adir";

# files with hostile contents; each holds a marker that must never be
# printed back
my $MARK = 'zqm' . random_hex(5);
my %files = (
    empty   => '',
    nul     => "$MARK\0" . ('a' x 63),
    hex63   => substr(random_hex(32), 0, 62) . 'a',
    hex65   => random_hex(32) . 'a',
    nonhex  => ('g' x 60) . $MARK,
    crlf    => random_hex(32) . "\r\n\r\n",
    utf8    => "\xd9\xa1" x 32,
    big     => $MARK x (10_000_000 / length $MARK),
    json    => qq({"ADSL":{"fr":{"title":"$MARK","steps":[]}}}),
    spaces  => "tok $MARK tok",
    ctl     => "tok\x01\x7f$MARK",
);
write_file("$dir/f_$_", $files{$_}, 0600) for keys %files;
my @file_values = ((map { "$dir/f_$_" } sort keys %files), "$dir/adir",
    '/dev/zero', '/dev/null', '/etc/shadow', "$dir/missing", '/',
    '/proc/self/environ', '');

my @values = ('', ' ', 'x' x 100_000, "\xff\xfe\x80", "\xd8\xb9\xd8\xb1",
    '-1', '0', '1', '99999999999999999999999', '1e9', '0x10', '-0', 'on',
    'off', '$1', '$nonexistent_variable', '${', '%s%s%n%x', '%%', "a\nb",
    "\t", ';', '{', '}', '"', "'", '\\', '*', '://', 'https://',
    'https://:99999', 'https://[::1', 'HTTPS://x.example/', 'https://x?y#z',
    'http://x', 'file:///etc/passwd', '1.2.3.4/99', '::/0', '0.0.0.0/0',
    'unix:/tmp/x', 'host=', 'host=127.0.0.1 port=99999', 'hostaddr=999.1.1.1',
    'password=x', 'postgresql://%zz', "service=$MARK", '5parsecs', '1h1h',
    '9999999999999999d', '10m', 'null', 'https://a.example/ https://b');
{
    # a seeded handful of random strings, printable and not
    my $seed = $ENV{OCDZ_CONFIG_SEED} // int(rand 1e9);
    note "random arguments from seed $seed (OCDZ_CONFIG_SEED)";
    srand $seed;
    for (1 .. 12) {
        push @values, join '', map { chr(32 + int rand 95) }
                               1 .. 1 + int rand 60;
    }
    push @values, join '', map { chr(1 + int rand 255) } 1 .. 40;
}

# under a sanitizer each nginx -t takes ~0.25 s: a thinner sweep
if (run_mode()) {
    @values = @values[grep { $_ % 8 == 0 } 0 .. $#values];
    @file_values = @file_values[grep { $_ % 3 == 0 } 0 .. $#file_values];
}

# where each directive goes and what the configuration must not hold
# twice: a directive of the base configuration is replaced
my %base = (
    DB     => qq{ocdz_db "host=127.0.0.1 port=5432 dbname=x user=y";}
            . " ocdz_db_password_file $dir/dbpass;",
    KEYS   => "ocdz_card_key k1 $dir/k1.key;",
    TOKEN  => "ocdz_api_token_file $dir/token;",
    POLLER => 'ocdz_poller off;',
    CARD   => 'ocdz_card $1;',
    HTTP   => '', LOC => '',
);
my $tmpl = <<'EOF';
http {
    %%DB%%
    %%KEYS%%
    %%TOKEN%%
    %%POLLER%%
    %%HTTP%%
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ "^/card/([0-9a-f]{24})$" {
            %%CARD%%
            %%LOC%%
        }
    }
}
EOF

# directive => [slot, kind]; kind: value (one argument), file, key
# (id file [current]), multi (several arguments)
my %directives = (
    ocdz_db => [DB => 'value'], ocdz_db_password_file => [DB => 'file'],
    ocdz_card_key => [KEYS => 'key'], ocdz_api_token_file => [TOKEN => 'file'],
    ocdz_poller => [POLLER => 'value'], ocdz_card => [CARD => 'value'],
    (map { $_ => [HTTP => 'value'] } qw(ocdz_db_pool_size ocdz_db_queue
        ocdz_db_batch ocdz_db_batch_wait ocdz_poller_sync_commit
        ocdz_db_connect_timeout ocdz_db_query_timeout
        ocdz_db_statement_timeout ocdz_db_retry_delay ocdz_db_prepared
        ocdz_api_base ocdz_api_proxy ocdz_api_timeout
        ocdz_api_connect_timeout ocdz_poller_interval
        ocdz_poller_queued_interval ocdz_poller_max_backoff
        ocdz_poller_backoff_after ocdz_poller_lease ocdz_poller_pause
        ocdz_poller_retry_after_max ocdz_poller_concurrency
        ocdz_poller_db_connections ocdz_poller_not_found_retries
        ocdz_card_wait_limit ocdz_card_wait_recheck
        ocdz_outbox ocdz_outbox_interval ocdz_outbox_concurrency
        ocdz_outbox_lease ocdz_outbox_attempts ocdz_outbox_backoff
        ocdz_outbox_max_backoff ocdz_outbox_sync_commit ocdz_outbox_yield
        ocdz_webhook_url ocdz_webhook_timeout
        ocdz_sms_gateway_url ocdz_sms_sender ocdz_sms_reply_id
        ocdz_sms_max_parts ocdz_sms_timeout ocdz_smtp_url
        ocdz_smtp_timeout ocdz_mail_from ocdz_mail_from_name
        ocdz_mail_reply_to ocdz_mail_domain)),
    (map { $_ => [HTTP => 'file'] } qw(ocdz_instructions_file
        ocdz_api_ca_file ocdz_webhook_secret_file
        ocdz_sms_gateway_token_file ocdz_smtp_credentials_file
        ocdz_smtp_ca_file ocdz_outbox_ca_file)),
    (map { $_ => [LOC => 'value'] } qw(ocdz_session ocdz_session_cookie
        ocdz_session_bearer ocdz_session_query ocdz_jwt_user_claim
        ocdz_jwt_leeway ocdz_https_only ocdz_card_wait)),
    ocdz_jwt_secret_file => [LOC => 'file'],
    (map { $_ => [LOC => 'multi'] } qw(ocdz_trusted_proxies
        ocdz_cors_origins)),
    ocdz_sms_gateway_body => [HTTP => 'multi'],
    (map { $_ => [HTTP => 'multi'] } qw(ocdz_mail_template
        ocdz_sms_template ocdz_delivery_channels)),
);

sub quoted ($v) {
    (my $e = $v) =~ s/(['\\])/\\$1/g;
    return "'$e'";
}

my $ngx = Ocdz::Test::Nginx->new(conf => $tmpl, vars => \%base);
my (%rc, @bad);

sub try ($directive, $args) {
    my ($slot, $kind) = @{ $directives{$directive} };
    my $line = "$directive " . join(' ', map { quoted($_) } @$args) . ';';
    $line = "ocdz_session jwt; ocdz_jwt_secret_file $dir/jwt; $line"
        if $directive =~ /^ocdz_jwt_(user_claim|leeway)$/;
    $line = "ocdz_session jwt; $line" if $directive eq 'ocdz_jwt_secret_file';
    my %v = (%base, $slot => $slot eq 'HTTP' || $slot eq 'LOC' ? $line
                    : $slot eq 'DB' && $directive eq 'ocdz_db'
                      ? "$line ocdz_db_password_file $dir/dbpass;"
                    : $slot eq 'DB'
                      ? qq{ocdz_db "host=127.0.0.1 port=5432 dbname=x }
                        . qq{user=y"; $line}
                    : $line);
    $ngx->write_conf(undef, %v);
    my ($rc, $out) = $ngx->test_config;
    $rc{$rc}++;
    if ($rc == 0 && $ENV{OCDZ_CONFIG_ACCEPTED}) {
        (my $l = substr($line, 0, 120)) =~ s/[^\x20-\x7e]/?/g;
        diag "accepted: $l";
    }
    my $what = substr($line, 0, 100);
    $what =~ s/[^\x20-\x7e]/?/g;
    push @bad, "exit $rc: $what" if $rc != 0 && $rc != 1;
    push @bad, "exit 1 without [emerg]: $what\n$out"
        if $rc == 1 && $out !~ /\[emerg\]/;
    push @bad, "alert or crit: $what\n$out" if $out =~ /\[(alert|crit)\]/;
    push @bad, "the marker printed back: $what\n$out"
        if index($out, $MARK) >= 0 && !grep { index($_, $MARK) >= 0 } @$args;
}

# numbers, sizes, times and flags: nginx's own parsers; fewer values
my %numeric = map { $_ => 1 } grep { /_(size|queue|timeout|delay|prepared
    |interval|backoff|backoff_after|lease|pause|max|concurrency|connections
    |retries|bearer|leeway|only)$|^ocdz_poller$/x } keys %directives;
my @few = run_mode() ? @values[0 .. 2]
         : (@values[0 .. 10], '%s%s%n%x', '5parsecs', '1h1h',
            '9999999999999999d', @values[-3 .. -1]);

for my $d (sort keys %directives) {
    my $kind = $directives{$d}[1];
    if ($kind eq 'value') {
        try($d, [$_]) for $numeric{$d} ? @few : @values;
    } elsif ($kind eq 'file') {
        try($d, [$_]) for @file_values, @few;
        if ($d eq 'ocdz_api_token_file') {
            try($d, ["$dir/token", $_]) for @file_values;
        }
    } elsif ($kind eq 'key') {
        try($d, ['k1', $_]) for @file_values;
        try($d, [$_, "$dir/k1.key"]) for @values;
        try($d, ['k1', "$dir/k1.key", $_]) for @few;
    } else {
        try($d, [$_]) for @values;
        try($d, [@values]);
    }
}

# the template files: hostile contents and names in each language/part
for my $f (@file_values) {
    try('ocdz_sms_template', [$_, $f]) for qw(en ar);
    try('ocdz_mail_template', ['fr', $_, $f]) for qw(subject text html);
}
try('ocdz_mail_template', [$_, 'html', "$dir/f_json"]) for @few;
try('ocdz_mail_template', ['en', $_, "$dir/f_json"]) for @few;
try('ocdz_delivery_channels', [$_, 'email']) for @few;

# and some that must be refused
for my $c (['ocdz_api_base', 'https://'], ['ocdz_api_base', 'https:///'],
           ['ocdz_api_base', 'https://?x'], ['ocdz_api_base', 'http://x'],
           ['ocdz_api_base', 'https://x y'], ['ocdz_db', ''],
           ['ocdz_db', 'password=x'], ['ocdz_db_pool_size', '0'],
           ['ocdz_card_key', 'k1', "$dir/f_hex63"],
           ['ocdz_card_key', 'bad id', "$dir/k1.key"],
           ['ocdz_cors_origins', '*'], ['ocdz_trusted_proxies', '1.2.3.4/99'],
           ['ocdz_api_token_file', "$dir/f_spaces"],
           ['ocdz_jwt_secret_file', "$dir/f_empty"],
           # found loose by this sweep
           ['ocdz_api_proxy', 'https://:99999'],
           ['ocdz_api_proxy', 'https://'], ['ocdz_api_proxy', 'https://[::1'],
           ['ocdz_api_proxy', 'http://p:0'],
           ['ocdz_api_proxy', 'https://x?y#z'],
           ['ocdz_api_proxy', 'https://a.example/ https://b'],
           ['ocdz_api_proxy', "http://p\x01"],
           ['ocdz_api_proxy', 'http://p/x'],
           ['ocdz_api_proxy', 'http://u:pw@p'],
           ['ocdz_api_ca_file', "$dir/f_json"],
           ['ocdz_api_ca_file', '/etc/shadow'],
           ['ocdz_api_ca_file', "$dir/f_empty"],
           ['ocdz_db', ' '], ['ocdz_db', "\t\n"],
           ['ocdz_db', 'host=127.0.0.1 port=99999'],
           ['ocdz_db', 'hostaddr=999.1.1.1'], ['ocdz_db', 'hostaddr=::1,x'],
           ['ocdz_db', 'postgresql://127.0.0.1:0/x'],
           ['ocdz_db', 'hostaddr=127.0.0.1 port=-1'],
           ['ocdz_db', 'host=a,b hostaddr=127.0.0.1'],
           ['ocdz_db', 'host=127.0.0.1 port=1,2'],
           ['ocdz_cors_origins', 'https://x?y#z'],
           ['ocdz_cors_origins', 'https://x#z'],
           ['ocdz_cors_origins', 'https://:99999'],
           ['ocdz_cors_origins', 'https://[::1'],
           ['ocdz_cors_origins', 'postgresql://%zz'],
           ['ocdz_cors_origins', 'https://x:0'],
           ['ocdz_cors_origins', 'https://'],
           ['ocdz_db_password_file', "$dir/f_nul"],
           ['ocdz_jwt_secret_file', "$dir/f_nul"],
           ['ocdz_card_key', 'k1', "$dir/f_nul"],
           ['ocdz_sms_template', 'en', "$dir/f_utf8"],
           ['ocdz_mail_template', 'ar', 'html', "$dir/f_nul"],
           ['ocdz_mail_template', 'en', 'subject', "$dir/f_json"],
           ['ocdz_delivery_channels', 'none', 'none'],
           ['ocdz_delivery_channels', 'email', 'sms', 'email']) {
    my ($d, @args) = @$c;
    my $before = $rc{1} // 0;
    try($d, \@args);
    (my $what = "@args") =~ s/[^\x20-\x7e]/?/g;
    is($rc{1} // 0, $before + 1, "refused: $d $what");
}

# and their valid neighbours that must still pass
for my $c (['ocdz_api_proxy', 'http://proxy.example:3128'],
           ['ocdz_api_proxy', 'HTTPS://127.0.0.1:8443/'],
           ['ocdz_api_proxy', 'socks5h://[::1]:1080'],
           ['ocdz_api_proxy', 'socks4a://p'],
           ['ocdz_api_ca_file', pki()->{ca_cert}],
           ['ocdz_db', 'hostaddr=127.0.0.1,::1 port=5432,65535'],
           ['ocdz_db', 'postgresql://127.0.0.1:5432,[::1]:5433/x'],
           ['ocdz_db', 'host=/tmp,127.0.0.1 port=,5432'],
           ['ocdz_cors_origins', 'https://shop.example.dz', 'http://[::1]:80'],
           ['ocdz_cors_origins', 'HTTP://localhost:8080']) {
    my ($d, @args) = @$c;
    my $before = $rc{0} // 0;
    try($d, \@args);
    is($rc{0} // 0, $before + 1, "accepted: $d @args");
}

my $n = 0;
$n += $_ for values %rc;
ok($n > (run_mode() ? 150 : 1000), "$n configurations tested (exit codes: "
   . join(', ', map { "$_ x $rc{$_}" } sort keys %rc) . ')');
ok(!@bad, 'every one refused cleanly or accepted')
    or diag join "\n", @bad[0 .. ($#bad > 20 ? 20 : $#bad)];
# under ASan the harness checks the reports of every nginx -t at the end
done_testing;

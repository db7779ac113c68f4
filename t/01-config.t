# Configuration errors: every mistake makes `nginx -t` fail with one
# clear [emerg] line that names the file, the line and the problem;
# risky but legal settings give a [warn]; secrets never show in the
# output of nginx -t or nginx -T.

use v5.36;
use Test::More;
use File::Basename qw(basename);
use Ocdz::Test qw(:all);

require_module();

my $dir = tmpdir();
my %hex;
$hex{$_} = write_key_file("$dir/$_.key") for qw(k1 k2 k3);
my $token = 'tok_' . random_hex(20);
write_file("$dir/token", "$token\n", 0600);
my $token2 = 'tok2_' . random_hex(20);
write_file("$dir/token2", $token2, 0600);
my $dbpass = 'dbpw_' . random_hex(12);
write_file("$dir/dbpass", "$dbpass\n", 0600);
my $jwt = random_hex(32);
write_file("$dir/jwt", $jwt, 0600);
write_file("$dir/empty", '', 0600);
write_file("$dir/blank", " \n\n", 0600);
write_file("$dir/short.key", substr(random_hex(32), 0, 62), 0600);
my $nonhex = substr(random_hex(32), 0, 63) . 'g';
write_file("$dir/nonhex.key", $nonhex, 0600);
my $long = random_hex(33);
write_file("$dir/long.key", $long, 0600);
write_file("$dir/open.key", random_hex(32), 0644);
write_file("$dir/open.token", $token, 0644);
my $spaced = 'tok en' . random_hex(8);
write_file("$dir/spaced.token", $spaced, 0600);
write_file("$dir/shortjwt", 'x' x 16, 0600);
mkdir "$dir/adir";
my $nulpw = 'nulpw_' . random_hex(8);
write_file("$dir/nul.pw", "$nulpw\0tail", 0600);
my $nuljwt = random_hex(32);
write_file("$dir/nul.jwt", "$nuljwt\0" . random_hex(4), 0600);
write_file("$dir/nul.key", random_hex(16) . "\0" . random_hex(16), 0600);
write_file("$dir/nocert.pem", "a key, not a certificate:\n"
    . slurp(pki()->{ca_key}), 0600);
write_file("$dir/badcert.pem", "-----BEGIN CERTIFICATE-----\n!!!!\n"
    . "-----END CERTIFICATE-----\n", 0600);
my $conninfo = 'host=127.0.0.1 port=5 dbname=postgres user=ocdz_module';
my @secrets = ($token, $token2, $dbpass, $jwt, values %hex);

# A complete, valid configuration; %%HTTP%%, %%SERVER%% and
# %%LOCATION%% take what each case adds, and a case may replace a
# default line by setting its key (DB, KEYS, TOKEN, POLLER, CARD).
my $base = <<'EOF';
http {
%%DB%%
%%KEYS%%
%%TOKEN%%
%%POLLER%%
%%HTTP%%
    server {
        listen 127.0.0.1:%%PORT%%;
%%SERVER%%
        location ~ "^/card/([0-9a-f]{24})$" {
%%CARD%%
%%LOCATION%%
        }
        location / { return 404; }
    }
}
EOF

my %defaults = (
    DB       => "    ocdz_db \"$conninfo\";\n"
              . "    ocdz_db_password_file $dir/dbpass;",
    KEYS     => "    ocdz_card_key k1 $dir/k1.key;",
    TOKEN    => "    ocdz_api_token_file $dir/token $dir/token2;",
    POLLER   => "    ocdz_poller off;",
    CARD     => '            ocdz_card $1;',
    HTTP     => '', SERVER => '', LOCATION => '',
);

sub nginx_for (%vars) {
    my $ngx = Ocdz::Test::Nginx->new(conf => $base,
        vars => { %defaults, DIR => $dir, %vars });
    return $ngx;
}

# One failing case: exit status, exactly one [emerg], its text, the file
# and (when `at` is given) the line of the directive.
sub fails ($name, $re, %c) {
    my $at = delete $c{at};
    my $ngx = nginx_for(%c);
    my ($rc, $out) = $ngx->test_config;
    my @emerg = grep { /\[emerg\]/ } split /\n/, $out;
    subtest $name => sub {
        isnt $rc, 0, 'nginx -t fails';
        is scalar @emerg, 1, 'exactly one [emerg] line' or diag $out;
        my $e = $emerg[0] // '';
        like $e, $re, 'says what is wrong' or diag $out;
        my $file = $ngx->conf_file;
        like $e, qr/ in \Q$file\E:\d+$/, 'names the file and a line';
        if ($at) {
            my $line = $ngx->conf_line($at);
            like $e, qr/:\Q$line\E$/, "line $line, the directive's";
        }
        ok !find_secret($out, @secrets, @{ $c{secrets} // [] }),
            'no secret in the output';
    };
    return $out;
}

# One passing case: nginx -t exits 0.
sub passes ($name, %c) {
    my ($rc, $out) = nginx_for(%c)->test_config;
    is $rc, 0, $name or diag $out;
}

sub warns ($name, $re, %c) {
    my $ngx = nginx_for(%c);
    my ($rc, $out) = $ngx->test_config;
    my @warn = grep { /\[warn\]/ } split /\n/, $out;
    subtest $name => sub {
        is $rc, 0, 'nginx -t passes' or diag $out;
        is scalar(grep { $_ =~ $re } @warn), 1, 'one [warn] about it'
            or diag $out;
        ok !find_secret($out, @secrets), 'no secret in the output';
    };
}

# --- the valid configuration ----------------------------------------------

{
    my $ngx = nginx_for();
    my ($rc, $out) = $ngx->test_config;
    is $rc, 0, 'the complete configuration passes nginx -t' or diag $out;
    unlike $out, qr/\[(warn|emerg|alert|crit)\]/, '... without a warning'
        or diag $out;
    assert_no_secret('nginx -t output', $out, @secrets);

    ($rc, $out) = $ngx->test_config(dump => 1);
    is $rc, 0, 'nginx -T passes';
    like $out, qr/ocdz_card_key k1 \Q$dir\E\/k1\.key;/,
        'nginx -T shows the configuration';
    assert_no_secret('nginx -T output', $out, @secrets);

    passes 'two keys, one current',
        KEYS => "    ocdz_card_key k1 $dir/k1.key;\n"
              . "    ocdz_card_key k2 $dir/k2.key current;";

    write_key_file("$dir/k3.key", hex => $hex{k3}, newline => 1);
    passes 'a key file with a trailing newline',
        KEYS => "    ocdz_card_key k1 $dir/k3.key;";

    passes 'ocdz_db takes a URI',
        DB => "    ocdz_db \"postgresql://ocdz_module\@"
            . "127.0.0.1:5/postgres?sslmode=disable\";";

    passes 'a poller configuration',
        POLLER => "    ocdz_poller on;\n"
                . "    ocdz_api_base https://127.0.0.1:9/;\n"
                . "    ocdz_api_ca_file " . pki()->{ca_cert} . ";\n"
                . "    ocdz_api_timeout 5s;\n    ocdz_poller_lease 30s;";

    for my $proxy ('http://proxy.example:3128', 'HTTPS://127.0.0.1:8443/',
                   'socks4://p', 'socks4a://p:1080', 'socks5://[::1]:1080',
                   'socks5h://egress-1.example:1') {
        passes "ocdz_api_proxy $proxy", HTTP => "    ocdz_api_proxy $proxy;";
    }

    passes 'CORS origins with ports and addresses',
        LOCATION => '            ocdz_cors_origins '
            . 'https://shop.example.dz http://127.0.0.1:8080 '
            . 'HTTPS://[::1]:8443 https://a-b_c.example:65535;';

    # a name is resolved by nginx -t itself, never by a worker
    passes 'ocdz_db with a host name (localhost)',
        DB => "    ocdz_db \"host=localhost port=5432 dbname=x user=y\";";

    passes 'ocdz_db with two hosts, hostaddrs and a default port',
        DB => "    ocdz_db \"host=a.example,b.example "
            . "hostaddr=127.0.0.1,::1 port=5432, dbname=x user=y\";";
}

# --- card keys ------------------------------------------------------------

fails 'missing key file', qr/card key file .*(No such file|cannot open)/i,
    KEYS => "    ocdz_card_key k1 $dir/nope.key;", at => qr/nope\.key/;
fails 'key file is a directory', qr/adir.*(not a (regular )?file|cannot)/i,
    KEYS => "    ocdz_card_key k1 $dir/adir;", at => qr/adir/;
fails 'empty key file', qr/empty/i,
    KEYS => "    ocdz_card_key k1 $dir/empty;", at => qr/empty;/;
fails 'blank key file', qr/empty/i,
    KEYS => "    ocdz_card_key k1 $dir/blank;", at => qr/blank;/;
fails 'key of 62 hex digits', qr/64 hex/,
    KEYS => "    ocdz_card_key k1 $dir/short.key;", at => qr/short\.key/;
fails 'key of 66 hex digits', qr/64 hex/,
    KEYS => "    ocdz_card_key k1 $dir/long.key;", at => qr/long\.key/,
    secrets => [$long];
fails 'key with a non-hex character', qr/hex/,
    KEYS => "    ocdz_card_key k1 $dir/nonhex.key;", at => qr/nonhex\.key/,
    secrets => [$nonhex];
fails 'key file with a NUL byte', qr/card key file .*NUL byte/,
    KEYS => "    ocdz_card_key k1 $dir/nul.key;", at => qr/nul\.key/;
fails 'duplicate key id', qr/duplicate/i,
    KEYS => "    ocdz_card_key k1 $dir/k1.key;\n"
          . "    ocdz_card_key k1 $dir/k2.key current;",
    at => qr/k2\.key/;
fails 'several keys, none current', qr/current/i,
    KEYS => "    ocdz_card_key k1 $dir/k1.key;\n"
          . "    ocdz_card_key k2 $dir/k2.key;";
fails 'two current keys', qr/current/i,
    KEYS => "    ocdz_card_key k1 $dir/k1.key current;\n"
          . "    ocdz_card_key k2 $dir/k2.key current;",
    at => qr/k2\.key/;
fails 'invalid key id', qr/key id/i,
    KEYS => "    ocdz_card_key \"bad id!\" $dir/k1.key;", at => qr/bad id/;
fails 'unknown key flag', qr/current/,
    KEYS => "    ocdz_card_key k1 $dir/k1.key latest;", at => qr/latest/;
warns 'key file readable by others', qr/open\.key/,
    KEYS => "    ocdz_card_key k1 $dir/open.key;";

# --- the database ---------------------------------------------------------

fails 'inline password in conninfo', qr/password/i,
    DB => "    ocdz_db \"$conninfo password=s3cr3t_inline\";",
    at => qr/ocdz_db /, secrets => ['s3cr3t_inline'];
fails 'password in a URI', qr/password/i,
    DB => "    ocdz_db \"postgresql://ocdz_module:s3cr3t_uri\@127.0.0.1:5/"
        . "postgres\";",
    at => qr/ocdz_db /, secrets => ['s3cr3t_uri'];
fails 'empty conninfo', qr/ocdz_db|conn/i,
    DB => '    ocdz_db "";', at => qr/ocdz_db /;
fails 'blank conninfo', qr/ocdz_db.*blank/,
    DB => "    ocdz_db \" \t \";", at => qr/ocdz_db /;
fails 'a pg_service.conf service', qr/ocdz_db.*does not take "service"/,
    DB => "    ocdz_db \"service=ocdz dbname=x\";", at => qr/ocdz_db /;
fails 'a service in a URI', qr/ocdz_db.*does not take "service"/,
    DB => "    ocdz_db \"postgresql:///x?service=ocdz\";",
    at => qr/ocdz_db /;
fails 'a host name that does not resolve',
    qr/PostgreSQL host "no-such-host\.invalid" not found/,
    DB => "    ocdz_db \"host=no-such-host.invalid dbname=x\";",
    at => qr/ocdz_db /;
fails 'hostaddr not an address', qr/hostaddr "999\.1\.1\.1".*numeric/,
    DB => "    ocdz_db \"hostaddr=999.1.1.1 dbname=x\";", at => qr/ocdz_db /;
fails 'hostaddr a host name', qr/hostaddr "db\.example".*numeric/,
    DB => "    ocdz_db \"hostaddr=127.0.0.1,db.example\";",
    at => qr/ocdz_db /;
fails 'empty hostaddr in a list', qr/hostaddr "".*numeric/,
    DB => "    ocdz_db \"host=a,b hostaddr=127.0.0.1,\";",
    at => qr/ocdz_db /;
fails 'conninfo port out of range', qr/ocdz_db.*port "99999".*1 to 65535/,
    DB => "    ocdz_db \"host=127.0.0.1 port=99999\";", at => qr/ocdz_db /;
fails 'conninfo port 0', qr/ocdz_db.*port "0"/,
    DB => "    ocdz_db \"hostaddr=127.0.0.1 port=0\";", at => qr/ocdz_db /;
fails 'conninfo port not a number', qr/ocdz_db.*port "5432x"/,
    DB => "    ocdz_db \"host=127.0.0.1,127.0.0.2 port=5432,5432x\";",
    at => qr/ocdz_db /;
fails 'URI port out of range', qr/ocdz_db.*port "70000"/,
    DB => "    ocdz_db \"postgresql://127.0.0.1:70000/x\";",
    at => qr/ocdz_db /;
fails 'more ports than hosts', qr/3 ports for 2 host/,
    DB => "    ocdz_db \"hostaddr=127.0.0.1,::1 port=1,2,3\";",
    at => qr/ocdz_db /;
fails 'hostaddrs not matching hosts', qr/2 hostaddr values for 1 host/,
    DB => "    ocdz_db \"host=a hostaddr=127.0.0.1,::1\";",
    at => qr/ocdz_db /;
fails 'unknown conninfo keyword', qr/bogus_keyword/,
    DB => "    ocdz_db \"$conninfo bogus_keyword=1\";", at => qr/ocdz_db /;
fails 'duplicate ocdz_db', qr/duplicate/,
    DB => "    ocdz_db \"$conninfo\";\n    ocdz_db \"$conninfo\";";
fails 'missing password file', qr/password file .*(No such file|cannot)/i,
    DB => "    ocdz_db \"$conninfo\";\n"
        . "    ocdz_db_password_file $dir/nope.pw;",
    at => qr/nope\.pw/;
fails 'password file with a NUL byte', qr/password file .*NUL byte/,
    DB => "    ocdz_db \"$conninfo\";\n"
        . "    ocdz_db_password_file $dir/nul.pw;",
    at => qr/nul\.pw/, secrets => [$nulpw];
fails 'password file without ocdz_db', qr/ocdz_db/,
    DB => "    ocdz_db_password_file $dir/dbpass;", CARD => '';
fails 'card location without ocdz_db', qr/ocdz_db/, DB => '';
fails 'card location without a key', qr/ocdz_card_key/, KEYS => '';
# a number out of range: the message names the directive, the range and
# the value given
for my $r (['ocdz_db_pool_size', 1, 1024], ['ocdz_db_queue', 0, 65536],
           ['ocdz_db_batch', 1, 256], ['ocdz_poller_concurrency', 1, 1024],
           ['ocdz_poller_db_connections', 1, 1024],
           ['ocdz_poller_backoff_after', 0, 1000000],
           ['ocdz_poller_not_found_retries', 0, 1000000],
           ['ocdz_card_wait_limit', 1, 1000000])
{
    my ($name, $low, $high) = @$r;
    for my $v ($low ? ($low - 1) : (), $high + 1) {
        fails "$name $v",
            qr/"\Q$name\E" directive must be between $low and $high, not $v /,
            HTTP => "    $name $v;", at => qr/\Q$name\E/;
    }
}
fails 'pool size not a number', qr/invalid number/,
    HTTP => '    ocdz_db_pool_size many;', at => qr/pool_size/;
fails 'bad timeout', qr/invalid value|invalid/,
    HTTP => '    ocdz_db_query_timeout 5parsecs;', at => qr/query_timeout/;
fails 'ocdz_db_prepared maybe', qr/invalid value "maybe"/,
    HTTP => '    ocdz_db_prepared maybe;', at => qr/prepared/;
fails 'ocdz_card_wait not a time', qr/invalid/,
    HTTP => '    ocdz_card_wait forever;', at => qr/ocdz_card_wait/;
fails 'ocdz_card_wait over 24h', qr/ocdz_card_wait must be at most 24h/,
    HTTP => '    ocdz_card_wait 2d;';
fails 'ocdz_card_wait_recheck under 100ms',
    qr/ocdz_card_wait_recheck must be at least 100ms/,
    HTTP => '    ocdz_card_wait_recheck 10ms;';
fails 'ocdz_card_wait_recheck not a time', qr/invalid/,
    HTTP => '    ocdz_card_wait_recheck often;', at => qr/recheck/;
fails 'ocdz_card_wait_limit twice', qr/duplicate/,
    HTTP => "    ocdz_card_wait_limit 5;\n    ocdz_card_wait_limit 6;";
fails 'more poller connections than the pool',
    qr/ocdz_poller_db_connections/,
    HTTP => "    ocdz_db_pool_size 2;\n    ocdz_poller_db_connections 3;";

# --- the OneClickDz API ---------------------------------------------------

fails 'missing token file', qr/token file .*(No such file|cannot)/i,
    TOKEN => "    ocdz_api_token_file $dir/nope.token;", at => qr/nope\.token/;
fails 'missing secondary token file', qr/token file/i,
    TOKEN => "    ocdz_api_token_file $dir/token $dir/nope2.token;",
    at => qr/nope2\.token/;
fails 'empty token file', qr/empty/i,
    TOKEN => "    ocdz_api_token_file $dir/empty;", at => qr/empty;/;
fails 'token with a space', qr/token/i,
    TOKEN => "    ocdz_api_token_file $dir/spaced.token;",
    at => qr/spaced/, secrets => [$spaced];
warns 'token file readable by others', qr/open\.token/,
    TOKEN => "    ocdz_api_token_file $dir/open.token;";
fails 'http:// API base', qr/ocdz_api_base.*https/,
    HTTP => '    ocdz_api_base http://api.oneclickdz.com;', at => qr/api_base/;
fails 'malformed API base', qr/ocdz_api_base/,
    HTTP => '    ocdz_api_base "https://";', at => qr/api_base/;
fails 'API base with a query', qr/ocdz_api_base/,
    HTTP => '    ocdz_api_base "https://api.oneclickdz.com/?x=1";',
    at => qr/api_base/;
fails 'API base on a unix socket', qr/ocdz_api_base.*unix socket/,
    HTTP => '    ocdz_api_base https://unix:/tmp/api.sock;', at => qr/api_base/;
fails 'API base not a URL', qr/ocdz_api_base/,
    HTTP => '    ocdz_api_base oneclickdz;', at => qr/api_base/;
fails 'missing CA file', qr/No such file|cannot/i,
    HTTP => "    ocdz_api_ca_file $dir/nope.pem;", at => qr/nope\.pem/;
fails 'CA file without a certificate', qr/nocert\.pem" contains no PEM cert/,
    HTTP => "    ocdz_api_ca_file $dir/nocert.pem;", at => qr/nocert\.pem/;
fails 'empty CA file', qr/CA file .*empty|contains no PEM certificate/,
    HTTP => "    ocdz_api_ca_file $dir/empty;", at => qr/api_ca_file/;
fails 'CA file with a broken certificate', qr/badcert\.pem.*(PEM|certif)/,
    HTTP => "    ocdz_api_ca_file $dir/badcert.pem;", at => qr/badcert/;
fails 'proxy not a URL', qr/ocdz_api_proxy/,
    HTTP => '    ocdz_api_proxy ftp://proxy:21;', at => qr/api_proxy/;
fails 'proxy port out of range', qr/ocdz_api_proxy.*https:\/\/p:99999.*port/,
    HTTP => '    ocdz_api_proxy https://p:99999;', at => qr/api_proxy/;
fails 'proxy without a host', qr/ocdz_api_proxy.*no host/,
    HTTP => '    ocdz_api_proxy https://:3128;', at => qr/api_proxy/;
fails 'proxy with a space', qr/ocdz_api_proxy.*white space/,
    HTTP => '    ocdz_api_proxy "http://a.example/ http://b";',
    at => qr/api_proxy/;
fails 'proxy with a control character', qr/ocdz_api_proxy.*control/,
    HTTP => "    ocdz_api_proxy \"http://a.example\t\";", at => qr/api_proxy/;
fails 'proxy with a query', qr/ocdz_api_proxy.*path/,
    HTTP => '    ocdz_api_proxy "http://p:3128/?x#y";', at => qr/api_proxy/;
fails 'proxy with an unclosed IPv6 address', qr/ocdz_api_proxy.*IPv6/,
    HTTP => '    ocdz_api_proxy "http://[::1:3128";', at => qr/api_proxy/;
fails 'proxy with credentials', qr/ocdz_api_proxy.*credentials/,
    HTTP => '    ocdz_api_proxy "http://u:s3cr3t_proxy@p:3128";',
    at => qr/api_proxy/, secrets => ['s3cr3t_proxy'];
fails 'missing instructions file', qr/instructions file/i,
    HTTP => "    ocdz_instructions_file $dir/nope.txt;", at => qr/nope\.txt/;

# --- the poller -----------------------------------------------------------

my $poller_on = "    ocdz_poller on;\n    ocdz_api_base https://127.0.0.1:9;";
fails 'ocdz_poller maybe', qr/invalid value "maybe"/,
    POLLER => '    ocdz_poller maybe;', at => qr/ocdz_poller maybe/;
fails 'lease not longer than the API timeout', qr/ocdz_poller_lease/,
    POLLER => "$poller_on\n    ocdz_api_timeout 30s;\n"
            . "    ocdz_poller_lease 30s;";
fails 'poller without a token file', qr/ocdz_api_token_file/,
    POLLER => $poller_on, TOKEN => '';
fails 'poller without ocdz_db', qr/ocdz_db/,
    POLLER => $poller_on, DB => '', CARD => '';
fails 'poller without a key', qr/ocdz_card_key/,
    POLLER => $poller_on, KEYS => '', CARD => '';
fails 'poller concurrency 0', qr/must be|between|at least/,
    HTTP => '    ocdz_poller_concurrency 0;', at => qr/concurrency/;
fails 'poller interval not a time', qr/invalid/,
    HTTP => '    ocdz_poller_interval soon;', at => qr/poller_interval/;

# --- the delivery outbox -------------------------------------------------

write_file("$dir/whsecret", 'whsec_' . random_hex(16), 0600);
write_file("$dir/shortwh", 'x' x 15, 0600);
my $wh = "    ocdz_webhook_url http://127.0.0.1:9/hook;\n"
       . "    ocdz_webhook_secret_file $dir/whsecret;";
passes 'outbox with a webhook', HTTP => "    ocdz_outbox on;\n$wh";
passes 'outbox without a webhook', HTTP => '    ocdz_outbox on;';
fails 'outbox maybe', qr/invalid value "maybe"/,
    HTTP => '    ocdz_outbox maybe;', at => qr/ocdz_outbox maybe/;
fails 'outbox without ocdz_db', qr/"ocdz_outbox on" needs "ocdz_db"/,
    HTTP => '    ocdz_outbox on;', DB => '', CARD => '';
fails 'outbox concurrency 0', qr/ocdz_outbox_concurrency must be from 1/,
    HTTP => "    ocdz_outbox on;\n    ocdz_outbox_concurrency 0;";
fails 'outbox concurrency not a number', qr/invalid number/,
    HTTP => '    ocdz_outbox_concurrency many;', at => qr/outbox_concurrency/;
fails 'outbox attempts 0', qr/ocdz_outbox_attempts must be from 1/,
    HTTP => "    ocdz_outbox on;\n    ocdz_outbox_attempts 0;";
fails 'outbox interval too short', qr/ocdz_outbox_interval is too short/,
    HTTP => "    ocdz_outbox on;\n    ocdz_outbox_interval 10ms;";
fails 'outbox interval not a time', qr/invalid/,
    HTTP => '    ocdz_outbox_interval soon;', at => qr/outbox_interval/;
fails 'outbox yield not a time', qr/invalid/,
    HTTP => '    ocdz_outbox_yield politely;', at => qr/outbox_yield/;
fails 'backoff over the max', qr/ocdz_outbox_backoff must be/,
    HTTP => "    ocdz_outbox on;\n    ocdz_outbox_backoff 2h;";
fails 'lease not longer than the webhook timeout',
    qr/ocdz_outbox_lease must be longer than ocdz_webhook_timeout/,
    HTTP => "    ocdz_outbox on;\n$wh\n    ocdz_outbox_lease 10s;";
fails 'webhook URL not http', qr/ocdz_webhook_url must be an http/,
    HTTP => "    ocdz_outbox on;\n    ocdz_webhook_url ftp://x/;\n"
          . "    ocdz_webhook_secret_file $dir/whsecret;";
fails 'webhook URL without a secret', qr/ocdz_webhook_secret_file/,
    HTTP => "    ocdz_outbox on;\n    ocdz_webhook_url http://127.0.0.1:9/;";
fails 'short webhook secret', qr/at least 16 bytes/,
    HTTP => "    ocdz_webhook_secret_file $dir/shortwh;", at => qr/shortwh/;
fails 'missing webhook secret file', qr/webhook secret file .*(No such|cannot)/i,
    HTTP => "    ocdz_webhook_secret_file $dir/nope.wh;", at => qr/nope\.wh/;
write_file("$dir/gwtoken", 'gw_' . random_hex(8), 0600);
my $sms = "    ocdz_outbox on;\n"
        . "    ocdz_sms_gateway_url http://127.0.0.1:9/sms;\n"
        . "    ocdz_sms_gateway_token_file $dir/gwtoken;\n";
passes 'outbox with an SMS gateway',
    HTTP => $sms . "    ocdz_sms_gateway_body form 'to={to}&text={message}';";
fails 'SMS gateway without a body', qr/needs "ocdz_sms_gateway_body"/,
    HTTP => $sms;
fails 'SMS body format', qr/invalid body format "xml"/,
    HTTP => "    ocdz_sms_gateway_body xml 'x';", at => qr/gateway_body xml/;
fails 'SMS body without {message}', qr/ocdz_sms_gateway_body: .*message/,
    HTTP => $sms . "    ocdz_sms_gateway_body form 'to={to}';";
fails 'SMS body with an unknown placeholder', qr/ocdz_sms_gateway_body: .*nope/,
    HTTP => $sms . "    ocdz_sms_gateway_body form 'to={to}&t={message}&x={nope}';";
fails 'SMS JSON body placeholder outside a string', qr/ocdz_sms_gateway_body/,
    HTTP => $sms . "    ocdz_sms_gateway_body json '{\"to\":{to},\"t\":\"{message}\"}';";
fails 'SMS max parts 1 (Arabic needs 2)', qr/Arabic SMS text does not fit ocdz_sms_max_parts 1/,
    HTTP => $sms . "    ocdz_sms_gateway_body form 'to={to}&text={message}';\n"
          . '    ocdz_sms_max_parts 1;';
fails 'SMS max parts 11', qr/ocdz_sms_max_parts must be from 1 to 10/,
    HTTP => $sms . "    ocdz_sms_gateway_body form 'to={to}&text={message}';\n"
          . '    ocdz_sms_max_parts 11;';
fails 'SMS reply id path', qr/invalid ocdz_sms_reply_id/,
    HTTP => $sms . "    ocdz_sms_gateway_body form 'to={to}&text={message}';\n"
          . '    ocdz_sms_reply_id "a..b";';
fails 'SMS without a card key', qr/needs "ocdz_card_key"/,
    HTTP => $sms . "    ocdz_sms_gateway_body form 'to={to}&text={message}';",
    KEYS => '', CARD => '';
fails 'SMS token with a space', qr/SMS gateway token file .* printable ASCII/,
    HTTP => "    ocdz_sms_gateway_token_file $dir/spaced.token;",
    at => qr/spaced\.token/, secrets => [$spaced];
fails 'SMS URL not http', qr/ocdz_sms_gateway_url must be an http/,
    HTTP => "    ocdz_outbox on;\n    ocdz_sms_gateway_url smtp://x/;";
write_file("$dir/smtpcred", "shop:" . random_hex(8), 0600);
write_file("$dir/smtpbad", "no-colon-here", 0600);
my $smtp = "    ocdz_outbox on;\n"
         . "    ocdz_smtp_url smtp://127.0.0.1:9;\n"
         . "    ocdz_smtp_credentials_file $dir/smtpcred;\n";
passes 'outbox with SMTP', HTTP => $smtp . '    ocdz_mail_from cards@shop.example;';
fails 'SMTP without a From', qr/needs "ocdz_mail_from"/, HTTP => $smtp;
fails 'SMTP From not an address', qr/ocdz_mail_from.*: /,
    HTTP => $smtp . '    ocdz_mail_from nobody;';
fails 'SMTP URL with credentials', qr/ocdz_smtp_url must be/,
    HTTP => "    ocdz_outbox on;\n    ocdz_smtp_url smtp://u:p\@h:25;\n"
          . '    ocdz_mail_from cards@shop.example;';
fails 'SMTP URL not smtp', qr/ocdz_smtp_url must be/,
    HTTP => "    ocdz_outbox on;\n    ocdz_smtp_url http://h/;\n"
          . '    ocdz_mail_from cards@shop.example;';
fails 'SMTP credentials without a colon', qr/SMTP credentials file .*user:password/,
    HTTP => "    ocdz_smtp_credentials_file $dir/smtpbad;", at => qr/smtpbad/;
fails 'SMTP CA not PEM', qr/ocdz_smtp_ca_file .*no PEM certificate/,
    HTTP => "    ocdz_smtp_ca_file $dir/smtpbad;", at => qr/smtpbad/;
fails 'outbox CA not PEM', qr/ocdz_outbox_ca_file .*no PEM certificate/,
    HTTP => "    ocdz_outbox_ca_file $dir/smtpbad;", at => qr/smtpbad/;
fails 'SMTP timeout not shorter than the lease', qr/ocdz_smtp_timeout/,
    HTTP => $smtp . "    ocdz_mail_from cards\@shop.example;\n"
          . '    ocdz_smtp_timeout 2m;';
fails 'SMTP without a card key', qr/needs "ocdz_card_key"/,
    HTTP => $smtp . '    ocdz_mail_from cards@shop.example;',
    KEYS => '', CARD => '';
# templates from files, the default channels (t/84 has the bad files)
write_file("$dir/tpl.txt", "Code {card_code}\n");
passes 'a mail text template from a file',
    HTTP => "    ocdz_mail_template fr text $dir/tpl.txt;";
passes 'an SMS template from a file',
    HTTP => "    ocdz_sms_template ar $dir/tpl.txt;";
fails 'mail template language', qr/invalid language "de" in "ocdz_mail_template"/,
    HTTP => "    ocdz_mail_template de text $dir/tpl.txt;", at => qr/template de/;
fails 'mail template part', qr/invalid part "body" in "ocdz_mail_template"/,
    HTTP => "    ocdz_mail_template en body $dir/tpl.txt;", at => qr/en body/;
fails 'SMS template language', qr/invalid language "EN" in "ocdz_sms_template"/,
    HTTP => "    ocdz_sms_template EN $dir/tpl.txt;", at => qr/template EN/;
fails 'mail template without its file',
    qr/invalid number of arguments in "ocdz_mail_template"/,
    HTTP => '    ocdz_mail_template en html;', at => qr/en html/;
warns 'an SMS template without a gateway',
    qr/ocdz_sms_template is used only with "ocdz_outbox on" and "ocdz_sms_gateway_url"/,
    HTTP => "    ocdz_outbox on;\n    ocdz_sms_template en $dir/tpl.txt;";
warns 'a mail template without the outbox',
    qr/ocdz_mail_template is used only with "ocdz_outbox on" and "ocdz_smtp_url"/,
    HTTP => "    ocdz_mail_template en html $dir/tpl.txt;";
passes 'default channels email', HTTP => '    ocdz_delivery_channels email;';
passes 'default channels none', HTTP => '    ocdz_delivery_channels none;';
passes 'default channels sms email',
    HTTP => '    ocdz_delivery_channels sms email;';
fails 'default channel fax', qr/invalid channel "fax" in "ocdz_delivery_channels"/,
    HTTP => '    ocdz_delivery_channels email fax;', at => qr/email fax/;
fails 'default channel twice', qr/channel "sms" given twice/,
    HTTP => '    ocdz_delivery_channels sms sms;', at => qr/sms sms/;
fails 'default channels none and email', qr/"none" .* stands alone/,
    HTTP => '    ocdz_delivery_channels none email;', at => qr/none email/;
fails 'default channels twice', qr/"ocdz_delivery_channels" directive is duplicate/,
    HTTP => "    ocdz_delivery_channels email;\n    ocdz_delivery_channels sms;",
    at => qr/channels sms/;
warns 'webhook without the outbox', qr/used only with "ocdz_outbox on"/,
    HTTP => $wh;

# --- the card location ----------------------------------------------------

fails 'ocdz_card in the http block', qr/"ocdz_card" directive is not allowed/,
    HTTP => '    ocdz_card $arg_id;', at => qr/ocdz_card \$arg_id/;
fails 'duplicate ocdz_card', qr/duplicate/,
    CARD => "            ocdz_card \$1;\n            ocdz_card \$1;";
fails 'unknown session source', qr/session/i,
    LOCATION => '            ocdz_session cookie;', at => qr/ocdz_session /;
fails 'jwt session without a secret', qr/ocdz_jwt_secret_file/,
    LOCATION => '            ocdz_session jwt;';
fails 'short JWT secret', qr/32/,
    LOCATION => "            ocdz_session jwt;\n"
              . "            ocdz_jwt_secret_file $dir/shortjwt;",
    at => qr/shortjwt/;
fails 'JWT secret with a NUL byte', qr/JWT secret file .*NUL byte/,
    LOCATION => "            ocdz_session jwt;\n"
              . "            ocdz_jwt_secret_file $dir/nul.jwt;",
    at => qr/nul\.jwt/, secrets => [$nuljwt];
fails 'missing JWT secret file', qr/JWT secret file .*(No such|cannot)/i,
    LOCATION => "            ocdz_session jwt;\n"
              . "            ocdz_jwt_secret_file $dir/nope.jwt;",
    at => qr/nope\.jwt/;
fails 'session query with two statements', qr/one statement/,
    LOCATION => '            ocdz_session_query "SELECT user_id FROM s '
              . 'WHERE t = $1; DROP TABLE x";', at => qr/session_query/;
fails 'session query without $1', qr/\$1/,
    LOCATION => '            ocdz_session_query "SELECT 1";',
    at => qr/session_query/;
fails 'no token source', qr/session token|ocdz_session_cookie/,
    LOCATION => "            ocdz_session_bearer off;\n"
              . '            ocdz_session_cookie "";';
fails 'session cookie name with a space', qr/invalid "ocdz_session_cookie" name "a b"/,
    LOCATION => '            ocdz_session_cookie "a b";',
    at => qr/session_cookie/;
fails 'session cookie name with a separator', qr/ocdz_session_cookie/,
    LOCATION => '            ocdz_session_cookie "sid;x";',
    at => qr/session_cookie/;
fails 'empty JWT claim name', qr/invalid "ocdz_jwt_user_claim" name/,
    LOCATION => '            ocdz_jwt_user_claim "";',
    at => qr/jwt_user_claim/;
fails 'API base with credentials', qr/ocdz_api_base must not contain credentials/,
    HTTP => '    ocdz_api_base "https://svc:Zq8secretPw@api.example";',
    at => qr/api_base/, secrets => ['Zq8secretPw'];
fails 'bad trusted proxy', qr/invalid address/,
    LOCATION => '            ocdz_trusted_proxies 10.0.0.300;',
    at => qr/trusted_proxies/;
fails 'wildcard CORS origin', qr/origin/,
    LOCATION => '            ocdz_cors_origins *;', at => qr/cors_origins/;
fails 'CORS origin with a path', qr/origin/,
    LOCATION => '            ocdz_cors_origins https://shop.example/x;',
    at => qr/cors_origins/;
fails 'CORS origin with a query', qr/origin "https:\/\/x\?y".*query/,
    LOCATION => '            ocdz_cors_origins "https://x?y";',
    at => qr/cors_origins/;
fails 'CORS origin with a fragment', qr/origin "https:\/\/x#z".*fragment/,
    LOCATION => '            ocdz_cors_origins https://ok.example '
              . '"https://x#z";',
    at => qr/cors_origins/;
fails 'CORS origin with a bad port', qr/origin "https:\/\/x:99999".*port/,
    LOCATION => '            ocdz_cors_origins https://x:99999;',
    at => qr/cors_origins/;
fails 'CORS origin without a host', qr/origin "https:\/\/:8443".*no host/,
    LOCATION => '            ocdz_cors_origins https://:8443;',
    at => qr/cors_origins/;
fails 'CORS origin of another scheme', qr/origin "ftp:\/\/x".*scheme/,
    LOCATION => '            ocdz_cors_origins ftp://x;',
    at => qr/cors_origins/;
fails 'ocdz_https_only maybe', qr/invalid value "maybe"/,
    LOCATION => '            ocdz_https_only maybe;', at => qr/https_only/;
# ocdz_status (issue 14): a location's, without arguments
fails 'ocdz_status with an argument', qr/invalid number of arguments/,
    LOCATION => '            ocdz_status on;', at => qr/ocdz_status/;
fails 'ocdz_status at http level', qr/"ocdz_status" directive is not allowed here/,
    HTTP => '    ocdz_status;', at => qr/ocdz_status/;
warns 'session from a request header', qr/\$http_x_user.*client/,
    LOCATION => '            ocdz_session $http_x_user;';
warns 'session from a cookie', qr/\$cookie_uid/,
    LOCATION => '            ocdz_session $cookie_uid;';
warns 'session from an argument', qr/\$arg_user/,
    LOCATION => '            ocdz_session $arg_user;';

# a trusted variable (set by auth_request, say) is fine
{
    my $ngx = nginx_for(LOCATION => '            ocdz_session $remote_user;');
    my ($rc, $out) = $ngx->test_config;
    ok $rc == 0 && $out !~ /\[warn\]/, 'session from $remote_user: no warning'
        or diag $out;
}

# --- the shipped examples -------------------------------------------------

# conf-examples/ with its files made here: a full nginx.conf, or location
# blocks, which go into a server of a minimal http block
{
    my $e = "$dir/examples";
    write_key_file("$e/ocdz/card-key-$_") for 2025, 2026;
    write_file("$e/ocdz/$_", 'tok_' . random_hex(8), 0600)
        for qw(api-token api-token-2);
    write_file("$e/ocdz/db-password", $dbpass, 0600);
    write_file("$e/ocdz/jwt-secret", $jwt, 0600);
    my $pki = pki();
    for my $f (glob repo_root() . '/conf-examples/*.conf') {
        my $t = slurp($f);
        $t =~ s{/etc/nginx/ocdz/}{$e/ocdz/}g;
        $t =~ s{/etc/nginx/tls/\w+\.crt}{$pki->{server_cert}}g;
        $t =~ s{/etc/nginx/tls/\w+\.key}{$pki->{server_key}}g;
        $t =~ s/^(load_module|\s*#).*$//mg;
        $t =~ s/^events \{.*?^\}//ms;
        $t =~ s/\blisten\s+\d+/listen 127.0.0.1:%%PORT%%/;
        # nginx -t resolves the API host (the default one needs the
        # network): an address instead
        $t =~ s/^(\s*ocdz_poller\s+on;)/$1 ocdz_api_base https:\/\/127.0.0.1:9;/m
            if $t !~ /ocdz_api_base/;
        $t = "http {\n    ocdz_db \"$conninfo\";\n"
           . "    ocdz_card_key k1 $dir/k1.key;\n"
           . "    server {\n        listen 127.0.0.1:%%PORT%%;\n"
           . "        location = /auth { return 204; }\n$t    }\n}\n"
            if $t !~ /^http \{/m;
        my $ngx = Ocdz::Test::Nginx->new(conf => $t);
        my ($rc, $out) = $ngx->test_config;
        is $rc, 0, 'conf-examples/' . basename($f) . ' passes nginx -t'
            or diag $out;
    }
}

done_testing;

# Every command of README.md's runbook ("## Runbook: a Debian server"),
# read from README.md and run as it is written, in its order, as root on
# the fresh root's Debian nginx and PostgreSQL services (ports 80 and
# 5432 of the network namespace t/fresh/inside.sh made for them).
#
# The blocks are the fenced ones whose info string is "sh runbook:NAME"
# (run with bash -e -x) or "sql runbook:NAME" (run with psql as the
# postgres user in the storefront's database, shop). A block the test
# does not know, or one it expects and does not find, fails the test:
# README and test cannot drift apart. Besides the blocks the test only
# does what the runbook says in italics: the storefront's database
# exists, the access token is typed in, the include line goes into
# Debian's default site. OneClickDz is the mock API, reached as
# https://api.oneclickdz.com (the root's /etc/hosts and a test CA in its
# trust store): the runbook's configuration uses the default
# ocdz_api_base and the system's CAs, as on a real server.

use v5.36;
use Test::More;
use File::Basename qw(dirname);
use POSIX qw(:sys_wait_h);
use Ocdz::Test qw(repo_root slurp write_file append_file run_cmd tmpdir
                  random_hex wait_until json_decode assert_no_secret);
use Ocdz::Fresh qw(:all);

fresh_root_only();
my $deb = $ENV{OCDZ_FRESH_DEB}
    or plan skip_all => 'OCDZ_FRESH_DEB: the package the runbook installs';
my $debdir = dirname($deb);

my $topup = '690161a3e9e88196b4eb6545';
my $session = 'c2Vzc2lvbi10b2tlbi1leGFtcGxlLTQy';
my $card_url = "http://127.0.0.1/api/internet-orders/$topup/card";
my $site = '/etc/nginx/sites-available/default';
my $include = 'include snippets/ocdz-card.conf;';

# --- the runbook, from README.md -------------------------------------------

my $readme = slurp(repo_root() . '/README.md');
my ($section) = $readme =~ /^## Runbook: a Debian server\n(.*?)^## (?!#)/ms;
ok $section, 'README.md has the runbook' or BAIL_OUT('no runbook');
my @blocks;
while ($section =~ /^```(\S+)(?: runbook:(\S+))?\n(.*?)^```\n/msg) {
    push @blocks, { lang => $1, name => $2, code => $3 };
}
my @unmarked = grep { !defined $_->{name} && $_->{lang} =~ /^(sh|sql)$/ }
               @blocks;
is scalar(@unmarked), 0, 'every sh and sql block of the runbook is marked '
    . 'runbook:NAME';
@blocks = grep { defined $_->{name} } @blocks;

my @order = qw(install schema db-password card-key api-token nginx-conf
               reload storefront-order storefront-session check rotate-add
               rotate-reencrypt rotate-retire upgrade restart logs watch
               remove-conf remove);
is_deeply [map { $_->{name} } @blocks], \@order,
    'the runbook\'s blocks, in the order this test runs them';

# --- the mock OneClickDz API as api.oneclickdz.com -----------------------------

my $pki = tmpdir();
my $token = 'tok_' . random_hex(16);
write_file("$pki/token", "$token\n", 0600);
{
    my @ec = qw(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes);
    my ($rc) = sh(join ' ',
        "openssl req -x509 @ec -days 1 -subj '/CN=ocdz runbook test CA'",
        "-addext basicConstraints=critical,CA:TRUE",
        "-addext keyUsage=critical,keyCertSign,cRLSign",
        "-keyout $pki/ca.key -out $pki/ca.crt",
        "&& openssl req -new @ec -subj /CN=api.oneclickdz.com",
        "-keyout $pki/api.key -out $pki/api.csr",
        "&& printf 'subjectAltName=DNS:api.oneclickdz.com\\nextendedKeyUsage=serverAuth\\n' >$pki/api.ext",
        "&& openssl x509 -req -in $pki/api.csr -CA $pki/ca.crt -CAkey $pki/ca.key",
        "-CAcreateserial -days 1 -out $pki/api.crt -extfile $pki/api.ext",
        "&& cp $pki/ca.crt /usr/local/share/ca-certificates/ocdz-runbook-test.crt",
        "&& update-ca-certificates",
        "&& echo '127.0.0.1 api.oneclickdz.com' >>/etc/hosts");
    is $rc, 0, 'api.oneclickdz.com: a test CA the system trusts, /etc/hosts';
}
my $mock_pid = fork // die "fork: $!";
if (!$mock_pid) {
    POSIX::setsid();
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', "$pki/mock.log";
    open STDERR, '>&', \*STDOUT;
    { no warnings 'exec';
      exec '/usr/bin/python3', repo_root() . '/t/lib/mock_oneclickdz.py',
          '--host', '127.0.0.1', '--port', 443, '--cert', "$pki/api.crt",
          '--key', "$pki/api.key", '--token-file', "$pki/token",
          '--auto-fulfil', 1, '--ready-file', "$pki/ready"; }
    POSIX::_exit(127);
}
END { kill 'TERM', $mock_pid if $mock_pid }
ok wait_until(sub { -s "$pki/ready" }, timeout => 20),
    'the mock API listens on 127.0.0.1:443' or diag slurp("$pki/mock.log");
my $control = json_decode(slurp("$pki/ready"))->{control_port};

sub mock_order ($id) {
    my ($rc, $out) = run_cmd(['curl', '-s',
        "http://127.0.0.1:$control/order/$id"]);
    return json_decode($out) // {};
}

# --- the storefront's database, and helpers ------------------------------------

{
    my ($rc) = sh('runuser -u postgres -- createdb shop');
    is $rc, 0, 'the storefront\'s database, shop, exists';
}

sub db_value ($sql) {
    my ($rc, $out) = run_cmd(['runuser', '-u', 'postgres', '--', 'psql',
        '-X', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', 'shop', '-c', $sql],
        cwd => '/tmp');
    chomp $out;
    return $rc ? undef : $out;
}

sub reveal () {
    my ($rc, $out) = run_cmd(['curl', '-s', '--max-time', '10', '-H',
        "Authorization: Bearer $session", $card_url]);
    return json_decode($out) // {};
}

my @codes;          # card codes seen, never to be found in a log

# Runs a block; returns (exit code, its standard output), and shows the
# block, its output and bash's trace.
sub run_block ($b, %o) {
    my ($rc, $out, $err);
    if ($b->{lang} eq 'sql') {
        ($rc, $out, $err) = run_cmd(['runuser', '-u', 'postgres', '--',
            'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', 'shop'],
            stdin => $b->{code}, timeout => 120, cwd => '/tmp');
        show("psql -d shop <<SQL\n$b->{code}SQL", $rc, $out . $err);
    } else {
        ($rc, $out, $err) = run_cmd(['bash', '-e', '-x', '-c', $b->{code}],
                                    timeout => 300, %o);
        show("bash -e -x <<SH\n$b->{code}SH", $rc, "$err$out");
    }
    return ($rc, $out);
}

my $master = nginx_master_pid();
ok alive($master), "Debian's nginx runs (master $master)";

# --- what the test checks after each block ---------------------------------------

my %stdin = (install => "y\n", upgrade => "y\n", remove => "y\n",
             'api-token' => "$token\n");

# the package, where postgres may read; for the upgrade, the same with a
# higher version (the files a new version would replace are replaced)
my $pkgdir = tmpdir();
my $newdir = tmpdir();
chmod 0755, $pkgdir, $newdir;
my $new_version;
{
    my ($rc) = sh("cp $deb $pkgdir/ && dpkg-deb -R $deb $newdir/pkg && "
        . "sed -i 's/^Version: .*/&+runbook1/' $newdir/pkg/DEBIAN/control && "
        . "dpkg-deb -b $newdir/pkg $newdir/ && rm -r $newdir/pkg");
    is $rc, 0, 'the package, and a higher version of it for the upgrade';
    ($new_version) = map { /_([^_]+)_[^_]+\.deb$/ } glob("$newdir/*.deb");
}
my %cwd = (install => $pkgdir, upgrade => $newdir);  # else /tmp

# nginx's workers, and the module file they run ("(deleted)" once
# replaced on disk)
my $workers_before = '';

sub workers () {
    my (undef, $out) = run_cmd(['pgrep', '-P', nginx_master_pid() // 0]);
    return join ' ', sort split ' ', $out;
}

sub worker_modules () {
    my %seen;
    for my $w (split ' ', workers()) {
        for (split /\n/, slurp("/proc/$w/maps")) {
            $seen{$1} = 1 if m{\s(/\S*ngx_http_ocdz_module\.so(?: \(deleted\))?)$};
        }
    }
    return join ', ', sort keys %seen;
}

my %before = (
    'reload' => sub {
        my $text = slurp($site);
        ok $text =~ s/^(\s*server_name _;\n)/$1\t$include\n/m,
            "the include line, in the default site's server block";
        write_file($site, $text);
    },
    'upgrade' => sub {
        is worker_modules(), '/usr/lib/nginx/modules/ngx_http_ocdz_module.so',
            'the workers run the installed module';
        $workers_before = workers();
    },
    'remove' => sub {
        my $text = slurp($site);
        ok $text =~ s/^\s*\Q$include\E\n//m,
            'the include line, out of the default site';
        write_file($site, $text);
    },
);

my %after = (
    install => sub ($out) {
        is readlink('/etc/nginx/modules-enabled/50-mod-http-ocdz.conf'),
            '/usr/share/nginx/modules-available/mod-http-ocdz.conf',
            'the module is enabled in /etc/nginx/modules-enabled';
        ok -f '/usr/lib/nginx/modules/ngx_http_ocdz_module.so',
            'the module is in /usr/lib/nginx/modules';
        ok -x '/usr/bin/ocdz-card', 'ocdz-card is in /usr/bin';
        is nginx_master_pid(), $master, 'nginx was not stopped or restarted';
        ok alive($master), '... it runs';
        is http_get_status('http://127.0.0.1/'), 200, '... and answers';
    },
    schema => sub ($out) {
        is db_value('SELECT max(version) >= 1 FROM ocdz.schema_version'), 't',
            'the schema is in shop';
    },
    'db-password' => sub ($out) {
        my @st = stat '/etc/nginx/ocdz/db-password';
        is sprintf('%o %d', $st[2] & 07777, $st[4]), '600 0',
            'the password file: 0600, root';
        is sprintf('%o', (stat '/etc/nginx/ocdz')[2] & 07777), '700',
            'its directory: 0700';
        my $pw = slurp('/etc/nginx/ocdz/db-password');
        chomp $pw;
        my ($rc) = run_cmd(['psql', '-X', '-tA', '-c', 'SELECT 1',
            'host=127.0.0.1 dbname=shop user=ocdz_module'],
            env => { PGPASSWORD => $pw });
        is $rc, 0, 'ocdz_module logs in over TCP with that password';
        unlike $out, qr/\Q$pw\E/, 'the password was not printed';
    },
    'card-key' => sub ($out) {
        my @st = stat '/etc/nginx/ocdz/card-key-2025';
        is sprintf('%o %d %d', $st[2] & 07777, $st[4], $st[5]), '600 0 0',
            'the card key: 0600, root:root';
        like slurp('/etc/nginx/ocdz/card-key-2025'), qr/^[0-9a-f]{64}\n\z/,
            '... 64 hex digits';
    },
    'api-token' => sub ($out) {
        is slurp('/etc/nginx/ocdz/api-token'), "$token\n", 'the token file';
        is sprintf('%o', (stat '/etc/nginx/ocdz/api-token')[2] & 07777),
            '600', '... 0600';
    },
    reload => sub ($out) {
        is nginx_master_pid(), $master, 'the same nginx master';
        ok wait_until(sub {
            http_get_status($card_url) == 401 }, timeout => 20),
            'the card location answers (401 without a session)';
    },
    'storefront-session' => sub ($out) {
        ok wait_until(sub {
            (db_value("SELECT status FROM ocdz.orders WHERE topup_id = "
                      . "'$topup'") // '') eq 'FULFILLED' },
            timeout => 90, interval => 0.5),
            'the poller fulfilled the order from the API';
    },
    check => sub ($out) {
        like $out, qr/\Q$topup\E \| FULFILLED/, 'psql shows the order FULFILLED';
        my ($json) = $out =~ /^(\{"success".*\})\s*\z/ms;
        my $card = json_decode($json // '') // {};
        my $code = mock_order($topup)->{card_code};
        push @codes, $code if $code;
        ok $card->{success}, 'curl got the card';
        is $card->{cardCode}, $code, '... the one OneClickDz gave';
        is db_value("SELECT count(*) FROM ocdz.audit WHERE event = "
                    . "'CARD_REVEALED' AND topup_id = '$topup'"), 1,
            'the reveal is audited';
    },
    'rotate-add' => sub ($out) {
        is reveal()->{cardCode}, $codes[0], 'still revealed, two keys';
    },
    'rotate-reencrypt' => sub ($out) {
        like $out, qr/would convert: 1, already current: 0, failed: 0/,
            'the dry run would convert the card';
        like $out, qr/^converted: 1, already current: 0, failed: 0$/m,
            'the card was sealed anew';
        like db_value("SELECT card_enc FROM ocdz.orders WHERE topup_id = "
                      . "'$topup'"), qr/^ocdz1\.k2026\./,
            '... with k2026';
    },
    'rotate-retire' => sub ($out) {
        ok !-e '/etc/nginx/ocdz/card-key-2025', 'k2025 left nginx\'s files';
        ok -f '/root/ocdz-retired-keys/card-key-2025', '... kept offline';
        unlike slurp('/etc/nginx/ocdz/card-keys.conf'), qr/k2025/,
            'nginx knows k2026 only';
        is reveal()->{cardCode}, $codes[0], 'still revealed, with k2026 alone';
    },
    upgrade => sub ($out) {
        my (undef, $v) = run_cmd(['dpkg-query', '-W', '-f', '${Version}',
                                  'libnginx-mod-http-ocdz']);
        is $v, $new_version, "the package is at $new_version";
        is nginx_master_pid(), $master, 'the same nginx master';
        ok wait_until(sub {
            my $w = workers();
            $w && $w ne $workers_before
                && worker_modules() eq '/usr/lib/nginx/modules/'
                                       . 'ngx_http_ocdz_module.so (deleted)' },
            timeout => 20),
            'after the reload, new workers still run the old module file '
            . '(deleted)';
        is reveal()->{cardCode}, $codes[0], 'still revealed';
    },
    restart => sub ($out) {
        my $new_master = nginx_master_pid();
        isnt $new_master, $master, 'nginx was restarted';
        $master = $new_master;
        ok alive($master), '... it runs';
        ok wait_until(sub {
            worker_modules() eq '/usr/lib/nginx/modules/'
                                . 'ngx_http_ocdz_module.so' }, timeout => 20),
            'the workers run the new module file';
        ok wait_until(sub { (reveal()->{cardCode} // '') eq $codes[0] },
                      timeout => 20), 'still revealed';
    },
    logs => sub ($out) {
        ok wait_until(sub { -f '/var/log/nginx/error.log' }, timeout => 10),
            'nginx reopened its error log';
        ok -f '/var/log/nginx/error.log.1', 'the old one moved away';
    },
    remove => sub ($out) {
        ok !-e '/usr/lib/nginx/modules/ngx_http_ocdz_module.so',
            'the module is gone';
        ok !-e '/etc/nginx/modules-enabled/50-mod-http-ocdz.conf',
            '... and not enabled';
        is nginx_master_pid(), $master, 'nginx was not stopped or restarted';
        ok alive($master), '... it runs';
        my ($rc) = sh('nginx -t');
        is $rc, 0, '... its configuration is valid';
        is http_get_status('http://127.0.0.1/'), 200, '... it answers';
        is http_get_status($card_url), 404, '... the card location is gone';
    },
);

for my $b (@blocks) {
    my $name = $b->{name};
    $before{$name}->() if $before{$name};
    my ($rc, $out) = run_block($b,
        stdin => $stdin{$name} // '', cwd => $cwd{$name} // '/tmp');
    is $rc, 0, "runbook:$name ran" or last;
    $after{$name}->($out) if $after{$name};
}

# nothing of a card, a key or a token in nginx's logs
my $logs = join '', map { slurp($_) } glob('/var/log/nginx/*.log*');
my @keys = map { my $k = slurp($_); chomp $k; $k }
    grep { -f } ('/etc/nginx/ocdz/card-key-2026',
                 '/root/ocdz-retired-keys/card-key-2025');
assert_no_secret('nginx\'s logs', $logs, @codes, @keys, $token, $session);

kill 'TERM', $mock_pid;
waitpid $mock_pid, 0;
$mock_pid = 0;

done_testing;

# The package make deb built (OCDZ_FRESH_DEB), before it is installed:
# its metadata (name, version = NGX_HTTP_OCDZ_VERSION, architecture, the
# nginx ABI it was built against and the libraries), its exact contents,
# the load file, maintainer scripts that only link the load file into
# modules-enabled and ask Debian's trigger for a reload (no service
# started or stopped), a module this nginx loads, and nginx -t on the
# packaged example configurations.

use v5.36;
use Test::More;
use File::Basename qw(dirname);
use Ocdz::Test qw(repo_root slurp write_file run_cmd tmpdir random_hex);
use Ocdz::Fresh qw(:all);

fresh_root_only();
my $deb = $ENV{OCDZ_FRESH_DEB}
    or plan skip_all => 'OCDZ_FRESH_DEB: the package to check';

my $pkg = 'libnginx-mod-http-ocdz';
my ($version) = slurp(repo_root() . '/ngx_http_ocdz_module.h')
    =~ /^#define NGX_HTTP_OCDZ_VERSION\s+"([^"]+)"/m;

sub field ($name) {
    my ($rc, $out) = run_cmd(['dpkg-deb', '-f', $deb, $name]);
    chomp $out;
    return $out;
}

my ($rc, $out) = sh("dpkg-deb -I $deb");
is $rc, 0, 'dpkg-deb -I reads it';
is field('Package'), $pkg, "Package: $pkg";
like field('Version'), qr/^\Q$version\E-\d+$/,
    "Version: $version (NGX_HTTP_OCDZ_VERSION), a Debian revision";
my (undef, $arch) = run_cmd(['dpkg', '--print-architecture']);
chomp $arch;
is field('Architecture'), $arch, "Architecture: $arch";
like $deb, qr{/\Q${pkg}_$version\E-\d+_\Q$arch\E\.deb$},
    'the file is named package_version_arch.deb';

my ($abi) = slurp('/usr/share/nginx/src/debian/libnginx-mod.abisubstvars')
    =~ /^nginx:abi=(\S+)$/m;
my @depends = split /\s*,\s*/, field('Depends');
ok scalar(grep { $_ eq $abi } @depends),
    "Depends on the nginx ABI it was built against: $abi";
my (undef, $provides) = run_cmd(['dpkg-query', '-W', '-f', '${Provides}',
                                 'nginx']);
like $provides, qr/(^|, )\Q$abi\E(,|$)/, "the installed nginx provides $abi";
for my $lib (qw(libpq5 libcurl4 libyajl2 libssl3)) {
    ok scalar(grep { /^\Q$lib\E( |$)/ } @depends), "Depends on $lib";
}

($rc, $out) = sh("dpkg-deb -c $deb");
my (%files, %mode);
for (split /\n/, $out) {
    my ($m, $owner, $path) = m{^(\S+)\s+(\S+)\s+\d+\s+\S+\s+\S+\s+(\S+)}
        or next;
    next if $m =~ /^d/;
    $files{$path} = 1;
    $mode{$path} = "$m $owner";
}
my $doc = "./usr/share/doc/$pkg";
my $docdir = "usr/share/doc/$pkg";
is_deeply [sort keys %files], [sort(
    './usr/bin/ocdz-card',
    './usr/lib/nginx/modules/ngx_http_ocdz_module.so',
    './usr/share/nginx/modules-available/mod-http-ocdz.conf',
    "./usr/share/$pkg/ocdz.sql",
    "$doc/README.md.gz", "$doc/changelog.Debian.gz", "$doc/copyright",
    "$doc/examples/nginx-ocdz.conf", "$doc/examples/session-sources.conf",
)], 'exactly the module, its load file, ocdz-card, the schema, the docs '
    . 'and the examples (nothing under /etc)';
is $mode{'./usr/bin/ocdz-card'}, '-rwxr-xr-x root/root', 'ocdz-card 0755 root';
is $mode{'./usr/lib/nginx/modules/ngx_http_ocdz_module.so'},
    '-rw-r--r-- root/root', 'the module 0644 root';

my $x = tmpdir();
($rc) = sh("dpkg-deb -x $deb $x/fs && dpkg-deb -e $deb $x/control");
is $rc, 0, 'extracted';
is slurp("$x/fs/usr/share/nginx/modules-available/mod-http-ocdz.conf"),
    "load_module modules/ngx_http_ocdz_module.so;\n", 'the load file';

my $postinst = slurp("$x/control/postinst");
like $postinst, qr{mod-http-ocdz\.conf:50-mod-http-ocdz\.conf},
    'postinst enables it as 50-mod-http-ocdz.conf';
like $postinst, qr{ln -sf /usr/share/nginx/modules-available/\$from\s*\\?\s*/etc/nginx/modules-enabled/\$to},
    '... a link into /etc/nginx/modules-enabled, as Debian\'s modules';
like $postinst, qr/dpkg-trigger --no-await nginx-reload/,
    '... and asks Debian\'s nginx-reload trigger (a reload if nginx runs)';
for my $s (qw(postinst prerm postrm)) {
    my $text = -f "$x/control/$s" ? slurp("$x/control/$s") : '';
    unlike $text, qr/\b(invoke-rc\.d|systemctl|service|start-stop-daemon|deb-systemd-invoke)\b/,
        "$s starts and stops nothing";
}

# the module loads into this nginx
write_file("$x/load.conf", "load_module $x/fs/usr/lib/nginx/modules/"
    . "ngx_http_ocdz_module.so;\nevents {}\n");
($rc, $out) = sh("nginx -t -q -e stderr -g 'pid $x/load.pid;' -c $x/load.conf");
is $rc, 0, 'this nginx loads the packaged module' or diag $out;

# nginx -t with the packaged examples, their files made where they say,
# under a prefix of their own
my $p = "$x/prefix";
mkdir $p;
mkdir "$p/$_" for qw(conf ocdz tls logs);
symlink "$x/fs/usr/lib/nginx/modules", "$p/modules";
write_file("$p/ocdz/$_", random_hex(32) . "\n", 0600)
    for qw(card-key-2025 card-key-2026 jwt-secret);
write_file("$p/ocdz/$_", 'tok_' . random_hex(16) . "\n", 0600)
    for qw(api-token api-token-2);
write_file("$p/ocdz/db-password", random_hex(16) . "\n", 0600);
($rc) = sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
    . "-nodes -days 1 -subj /CN=shop.example.dz -keyout $p/tls/shop.key "
    . "-out $p/tls/shop.crt");
is $rc, 0, 'a certificate for the example';
for my $f (qw(nginx-ocdz.conf session-sources.conf)) {
    my $text = slurp("$x/fs/$docdir/examples/$f");
    $text =~ s{/etc/nginx/(ocdz|tls)/}{$p/$1/}g;
    write_file("$p/conf/$f", $text);
}
write_file("$p/conf/sessions.conf", <<"EOF");
load_module modules/ngx_http_ocdz_module.so;
events {}
http {
    ocdz_db        "host=127.0.0.1 dbname=shop user=ocdz_module";
    ocdz_card_key  k1 $p/ocdz/card-key-2025;
    server {
        listen 127.0.0.1:8080;
        include $p/conf/session-sources.conf;
        location = /auth { return 204; }
    }
}
EOF
# nginx -t resolves the API host of ocdz_api_base, as on a server with
# DNS; this root's network namespace has none
($rc, $out) = sh("grep -q ' api.oneclickdz.com\$' /etc/hosts "
                 . "|| echo '127.0.0.1 api.oneclickdz.com' >>/etc/hosts");
is $rc, 0, 'api.oneclickdz.com named in /etc/hosts' or diag $out;
for my $c (qw(nginx-ocdz.conf sessions.conf)) {
    ($rc, $out) = sh("nginx -t -e stderr -p $p/ -g 'pid $p/$c.pid;' "
                     . "-c $p/conf/$c");
    is $rc, 0, "nginx -t passes with the packaged $c" or diag $out;
    unlike $out, qr/\[(warn|emerg|alert|crit)\]/, '... without a warning';
}

done_testing;

# make install, for systems without the Debian package: under DESTDIR
# the files land where PREFIX and the *DIR variables say, the load file
# names the module by its installed path; installed for real under a
# PREFIX, nginx loads the module through that load file and ocdz-card
# runs. (In the fresh root: it writes outside the build tree.)

use v5.36;
use Test::More;
use Ocdz::Test qw(repo_root slurp write_file tmpdir);
use Ocdz::Fresh qw(:all);

fresh_root_only();

my $repo = repo_root();
my $stage = tmpdir();

my ($rc, $out) = sh("make -C $repo install DESTDIR=$stage");
is $rc, 0, 'make install DESTDIR=...' or diag $out;
my %want = (
    'usr/local/lib/nginx/modules/ngx_http_ocdz_module.so' => '644',
    'usr/local/bin/ocdz-card' => '755',
    'usr/local/share/ngx_http_ocdz_module/ocdz.sql' => '644',
    'usr/local/share/doc/ngx_http_ocdz_module/README.md' => '644',
    'usr/local/share/doc/ngx_http_ocdz_module/examples/nginx-ocdz.conf' => '644',
    'usr/local/share/doc/ngx_http_ocdz_module/examples/session-sources.conf'
        => '644',
    'usr/local/share/nginx/modules-available/mod-http-ocdz.conf' => '644',
);
my %got;
for my $f (split /\n/, `cd $stage && find . -type f | sort`) {
    $f =~ s{^\./}{};
    $got{$f} = sprintf '%o', (stat "$stage/$f")[2] & 07777;
}
is_deeply \%got, \%want, 'the module, the tool, the schema, the docs, the '
    . 'examples and the load file, with their modes';
is slurp("$stage/usr/local/share/nginx/modules-available/mod-http-ocdz.conf"),
    "load_module /usr/local/lib/nginx/modules/ngx_http_ocdz_module.so;\n",
    'the load file names the installed module (without DESTDIR)';

my $other = tmpdir();
($rc) = sh("make -C $repo install DESTDIR=$other "
           . "MODULESDIR=/usr/lib/nginx/modules");
is slurp("$other/usr/local/share/nginx/modules-available/mod-http-ocdz.conf"),
    "load_module /usr/lib/nginx/modules/ngx_http_ocdz_module.so;\n",
    'MODULESDIR moves the module, and the load file follows';
ok -f "$other/usr/lib/nginx/modules/ngx_http_ocdz_module.so", '... there';

my $prefix = '/opt/ocdz-install-test';
($rc, $out) = sh("make -C $repo install PREFIX=$prefix");
is $rc, 0, "make install PREFIX=$prefix" or diag $out;
my $d = tmpdir();
write_file("$d/nginx.conf", <<"EOF");
include $prefix/share/nginx/modules-available/mod-http-ocdz.conf;
events {}
http {
    ocdz_db_pool_size 2;
}
EOF
($rc, $out) = sh("nginx -t -e stderr -g 'pid $d/nginx.pid;' -c $d/nginx.conf");
is $rc, 0, 'nginx loads the installed module through its load file '
    . '(an ocdz directive is known)' or diag $out;
($rc) = sh("$prefix/bin/ocdz-card --help >/dev/null");
is $rc, 0, 'the installed ocdz-card runs';
sh("rm -rf $prefix");

done_testing;

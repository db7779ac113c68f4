# make deps on a server that runs Debian's nginx and PostgreSQL services
# (started by t/fresh/inside.sh, in a network namespace of their own):
# with a package to install, it installs it and leaves both services
# running (the same processes) and enabled at boot; neither it nor
# anything it runs calls a service manager (stand-ins for systemctl,
# service, invoke-rc.d, update-rc.d and deb-systemd-* come first in PATH:
# they record each call and do what the real ones would; this root has
# no systemd, so a real `systemctl ... || true` would fail silently, and
# the stand-in acts on the init scripts instead). With nothing to install
# it runs no apt at all.

use v5.36;
use Test::More;
use Ocdz::Test qw(repo_root slurp write_file run_cmd);
use Ocdz::Fresh qw(:all);

fresh_root_only();
my $netns = $ENV{OCDZ_FRESH_NETNS}
    or plan skip_all => 'OCDZ_FRESH_NETNS: the services\' network namespace';

my $repo = repo_root();
my $log = '/var/log/ocdz-service-calls.log';
my @managers = qw(systemctl service invoke-rc.d update-rc.d
                  deb-systemd-invoke deb-systemd-helper);

sub answers () {
    my ($rc, $out) = run_cmd(['nsenter', "--net=$netns", 'curl', '-s', '-o',
        '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1/']);
    my ($prc, $pout, $perr) = run_cmd(['runuser', '-u', 'postgres', '--',
        'psql', '-X', '-tA', '-c', 'SELECT 1'], cwd => '/');
    diag "psql: $prc $pout$perr" if $prc;
    return ($out, $prc == 0 ? 'ok' : 'down');
}

my $before = services_state();
ok alive($before->{nginx}), "nginx runs (master $before->{nginx})";
ok alive($before->{postgresql}),
    "PostgreSQL runs (postmaster $before->{postgresql})";
ok scalar(grep { /nginx/ } @{ $before->{boot} }), 'nginx starts at boot';
ok scalar(grep { /postgresql/ } @{ $before->{boot} }),
    'postgresql starts at boot';
is_deeply [answers()], [200, 'ok'], 'both answer';

# a package make deps has to install
my ($rc) = sh('apt-get remove -y -q libyajl-dev');
is $rc, 0, 'libyajl-dev removed, for make deps to install';

# Each records its call and does what the real one would: this root has
# no systemd, so systemctl acts on the init scripts (a stop stops, a
# disable removes the boot links), as it would on a server.
for my $m (grep { $_ ne 'systemctl' } @managers) {
    write_file("/usr/local/sbin/$m", <<"EOF", 0755);
#!/bin/sh
echo "$m \$*" >>$log
real=\$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v $m)
[ -n "\$real" ] && exec "\$real" "\$@"
exit 0
EOF
}
write_file('/usr/local/sbin/systemctl', <<"EOF", 0755);
#!/bin/sh
echo "systemctl \$*" >>$log
now= act= units=
for a in "\$@"; do
    case \$a in
    --now) now=1 ;;
    -*) ;;
    *) if [ -z "\$act" ]; then act=\$a; else units="\$units \${a%.service}"; fi ;;
    esac
done
for u in \$units; do
    case \$act in
    start|stop|restart|reload|try-restart|force-reload)
        /usr/sbin/service "\$u" "\$act" ;;
    enable)
        /usr/sbin/update-rc.d "\$u" enable
        [ -n "\$now" ] && /usr/sbin/service "\$u" start ;;
    disable)
        /usr/sbin/update-rc.d "\$u" disable
        [ -n "\$now" ] && /usr/sbin/service "\$u" stop ;;
    esac
done
exit 0
EOF
unlink $log;

my $out;
($rc, $out) = sh('make deps', cwd => $repo);
is $rc, 0, 'make deps: exit 0';
like $out, qr/installing libyajl-dev/, '... it installed the missing package';
($rc) = run_cmd(['dpkg-query', '-W', 'libyajl-dev']);
is $rc, 0, '... and it is installed';

my $after = services_state();
is_deeply $after, $before,
    'the same nginx and PostgreSQL processes, started at boot as before';
ok alive($after->{nginx}) && alive($after->{postgresql}), 'both still run';
is_deeply [answers()], [200, 'ok'], 'both still answer';
my $calls = -f $log ? slurp($log) : '';
is $calls, '', 'no service manager was called' or diag $calls;

($rc, $out) = sh('time make deps', cwd => $repo);
is $rc, 0, 'make deps with everything installed: exit 0';
unlike $out, qr/installing|apt/i, '... installs nothing, runs no apt';
is((-f $log ? slurp($log) : ''), '', '... calls no service manager');

unlink map { "/usr/local/sbin/$_" } @managers;
unlink $log;

done_testing;

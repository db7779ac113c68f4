# .ci/install-deps (make deps) against stand-ins for dpkg-query and
# apt-get that record their calls: nothing missing, no apt at all;
# something missing, apt-get update and one install of exactly the
# missing packages; a plan that only upgrades libraries the new packages
# need (a machine behind Debian's point releases), installed with them;
# a plan that would remove a package or upgrade one that runs a service
# (nginx-dev of a newer nginx, a library whose postinst restarts
# services), no install at all, exit 1, and a message naming the
# packages and the command to run by hand.

use v5.36;
use Test::More;
use Ocdz::Test qw(repo_root tmpdir write_file slurp run_cmd);

plan skip_all => 'as root (install-deps checks it is root before apt)'
    if $> != 0;

my $bin = tmpdir();
my $log = "$bin/calls";

# dpkg-query: the packages in $INSTALLED are installed; those in
# $UNITS ship a systemd unit; those in $RESTARTS have a postinst that
# restarts services
write_file("$bin/restarting.postinst", "#!/bin/sh\ninvoke-rc.d cron restart\n",
           0755);
write_file("$bin/quiet.postinst", "#!/bin/sh\nldconfig\n", 0755);
write_file("$bin/dpkg-query", <<"EOF", 0755);
#!/bin/sh
case "\$1" in
-L)
    echo /usr/share/doc/\$2
    case " \$UNITS " in *" \$2 "*) echo /lib/systemd/system/\$2.service ;; esac
    exit 0 ;;
--control-path)
    case " \$RESTARTS " in
    *" \$2 "*) echo $bin/restarting.postinst ;;
    *) echo $bin/quiet.postinst ;;
    esac
    exit 0 ;;
esac
for p in "\$@"; do last=\$p; done
case " \$INSTALLED " in
*" \$last "*) printf 'install ok installed' ;;
*) exit 1 ;;
esac
EOF
# apt-get: records the call; a simulation prints $PLAN
write_file("$bin/apt-get", <<"EOF", 0755);
#!/bin/sh
echo "apt-get \$*" >>$log
case " \$* " in
*" -s "*) printf '%b' "\$PLAN" ;;
esac
exit 0
EOF

sub deps ($installed, $plan, @pkgs) {
    unlink $log;
    my ($rc, $out, $err) = run_cmd([repo_root() . '/.ci/install-deps', @pkgs],
        env => { PATH => "$bin:/usr/bin:/bin", INSTALLED => $installed,
                 PLAN => $plan, UNITS => 'cron', RESTARTS => 'libc6' });
    my @calls = -f $log ? split /\n/, slurp($log) : ();
    return ($rc, "$out$err", \@calls);
}

{
    my ($rc, $out, $calls) = deps('nginx curl', '', qw(nginx curl));
    is $rc, 0, 'all installed: exit 0';
    is $out, '', '... nothing said';
    is_deeply $calls, [], '... no apt-get at all';
}

{
    my ($rc, $out, $calls) = deps('nginx',
        "Inst libyajl-dev (2.1.0-3 Debian:12 [amd64])\\n"
        . "Conf libyajl-dev (2.1.0-3 Debian:12 [amd64])\\n",
        qw(nginx libyajl-dev));
    is $rc, 0, 'one missing: exit 0';
    like $out, qr/installing libyajl-dev/, '... says what it installs';
    is_deeply $calls, ['apt-get update -qq',
        'apt-get -s install --no-install-recommends libyajl-dev',
        'apt-get install -y -qq --no-install-recommends libyajl-dev'],
        '... update, a simulation, and the install of that package alone';
}

{
    my ($rc, $out, $calls) = deps('nginx libcurl4',
        "Inst libcurl4 [7.88.1-10+deb12u14] (7.88.1-10+deb12u15 Debian:12 [amd64])\\n"
        . "Inst libcurl4-openssl-dev (7.88.1-10+deb12u15 Debian:12 [amd64])\\n",
        qw(nginx libcurl4-openssl-dev));
    is $rc, 0, 'a library upgrade the new package needs: exit 0';
    like $out, qr/also upgrading.*\blibcurl4\b/, '... says it upgrades it';
    is $calls->[-1],
        'apt-get install -y -qq --no-install-recommends libcurl4-openssl-dev',
        '... and installs the missing package (apt upgrades the library)';
}

for my $case (['cron', 'ships a systemd unit'],
              ['libc6', 'has a postinst that restarts services'],
              ['postgresql-15', 'is PostgreSQL']) {
    my ($pkg, $why) = @$case;
    my ($rc, $out, $calls) = deps("nginx $pkg",
        "Inst $pkg [1.0] (1.1 Debian:12 [amd64])\\n"
        . "Inst libyajl-dev (2.1.0-3 Debian:12 [amd64])\\n",
        qw(nginx libyajl-dev));
    is $rc, 1, "an upgrade of a package that $why: exit 1";
    like $out, qr/\Q$pkg\E: 1\.0 -> 1\.1 \(upgrade of a package that runs a service\)/,
        '... names it';
    ok !grep({ /install -y/ } @$calls), '... and installs nothing';
}

{
    my ($rc, $out, $calls) = deps('nginx curl',
        "Inst nginx [1.22.1-9+deb12u9] (1.22.1-9+deb12u12 Debian-Security:12/stable-security [amd64])\\n"
        . "Inst nginx-dev (1.22.1-9+deb12u12 Debian-Security:12/stable-security [amd64])\\n"
        . "Remv old-thing [1.0]\\n",
        qw(nginx nginx-dev curl));
    is $rc, 1, 'a plan that upgrades nginx: exit 1';
    like $out, qr/nginx: 1\.22\.1-9\+deb12u9 -> 1\.22\.1-9\+deb12u12 \(upgrade of a package that runs a service\)/,
        '... names the upgrade';
    like $out, qr/old-thing \(removal\)/, '... and the removal';
    like $out, qr/apt-get install --no-install-recommends nginx-dev/,
        '... gives the command to run by hand';
    ok !grep({ /install -y/ } @$calls), '... and installs nothing';
}

done_testing;

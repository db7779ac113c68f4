package Ocdz::Fresh;

# Helpers of the t/fresh tests, which run inside the throwaway Debian
# root of make test-fresh (t/fresh/inside.sh), never elsewhere: they
# install packages and drive Debian's nginx and PostgreSQL services.
#
#   use Ocdz::Fresh qw(:all);
#   fresh_root_only();                 # skip_all outside such a root
#   my ($rc, $out) = sh('nginx -t');   # bash -c, shown in the TAP output
#   my $pid = nginx_master_pid();

use v5.36;
use Exporter qw(import);
use Test::More ();
use Ocdz::Test qw(run_cmd slurp wait_until);

our @EXPORT_OK = qw(
    fresh_root_only sh show nginx_master_pid postmaster_pid alive
    http_get_status services_state
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# prove's -I lib: the Perl programs run as other users (psql's wrapper
# as postgres) cannot read the clone under /root
delete $ENV{PERL5LIB};

# The mark .ci/test-fresh.sh leaves in the roots it bootstraps.
sub fresh_root_only () {
    Test::More::plan(skip_all => 'only inside the root of make test-fresh')
        unless -f '/etc/ocdz-fresh-root' && $> == 0;
}

# Prints a command and its output as TAP comments (CI keeps them).
sub show ($cmd, $rc, $out) {
    Test::More::note("\$ $cmd");
    Test::More::note($out) if length $out;
    Test::More::note("(exit $rc)") if $rc;
}

# bash -c CMD (options of run_cmd: stdin, cwd (default /tmp: the clone
# under /root is closed to other users), env, timeout); returns (exit
# code, stdout and stderr together).
sub sh ($cmd, %o) {
    my ($rc, $out, $err) = run_cmd(['bash', '-c', "exec 2>&1; $cmd"],
                                   timeout => 300, cwd => '/tmp', %o);
    show($cmd, $rc, $out . $err);
    return ($rc, $out . $err);
}

sub alive ($pid) { $pid && kill(0, $pid) }

sub nginx_master_pid () {
    my $p = -f '/run/nginx.pid' ? slurp('/run/nginx.pid') : '';
    return $p =~ /(\d+)/ ? $1 : undef;
}

sub postmaster_pid () {
    my $f = '/var/lib/postgresql/15/main/postmaster.pid';
    my $p = -f $f ? slurp($f) : '';
    return $p =~ /\A(\d+)/ ? $1 : undef;
}

# HTTP status of a GET (curl, in this network namespace), 0 on failure.
sub http_get_status ($url, @headers) {
    my ($rc, $out) = run_cmd(['curl', '-s', '-o', '/dev/null', '-w',
        '%{http_code}', '--max-time', '10',
        (map { ('-H', $_) } @headers), $url]);
    return $out =~ /^(\d+)$/ ? $1 : 0;
}

# What the machine's owner sees of the nginx and postgresql services:
# their main processes, and whether they start at boot (the init
# scripts' rc.d links, systemd's wants links).
sub services_state () {
    my @links;
    for my $l (sort(glob('/etc/rc[0-6S].d/*'),
                    glob('/etc/systemd/system/*.wants/*')))
    {
        next unless $l =~ /nginx|postgresql/;
        push @links, "$l -> " . (readlink($l) // '?');
    }
    return { nginx => nginx_master_pid(), postgresql => postmaster_pid(),
             boot => \@links };
}

1;

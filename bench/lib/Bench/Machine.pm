package Bench::Machine;

# The machine the benchmark runs on: what it is (CPU, memory, versions
# of everything measured), how busy it is, and the CPU each of our
# services and load generators used over a run. Before each measured
# section wait_quiet() waits for other people's work to calm down and
# records how quiet it was.

use v5.36;
use Exporter qw(import);
use List::Util qw(sum);
use POSIX ();
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(slurp run_cmd json_decode nginx_bin);
use Bench::Common;

our @EXPORT = qw(cpu_busy loadavg wait_quiet cpu_snapshot cpu_delta
                 cpu_of machine_info);

sub cpu_sample {
    open my $fh, '<', '/proc/stat' or die "/proc/stat: $!";
    my $l = <$fh>;
    my (undef, @f) = split ' ', $l;
    my $idle = $f[3] + ($f[4] // 0);
    return (sum(@f[0 .. 7]), $idle, $f[7] // 0);
}

# share of all cores busy over $secs seconds
sub cpu_busy ($secs = 2) {
    my ($t0, $i0) = cpu_sample();
    sleep $secs;
    my ($t1, $i1) = cpu_sample();
    return 0 if $t1 == $t0;
    return 1 - ($i1 - $i0) / ($t1 - $t0);
}

sub loadavg {
    my ($l) = split ' ', slurp('/proc/loadavg');
    return 0 + $l;
}

# Waits until the machine is quiet: our own services are idle here, so
# what keeps the CPU busy is someone else's. Records what it saw.
my $QUIET_SPENT = 0;

sub wait_quiet ($label) {
    my $start = time;
    my $busy;
    while (1) {
        $busy = cpu_busy(2);
        last if $busy <= $C{quiet};
        if (time - $start > $C{quiet_wait}
            || $QUIET_SPENT + time - $start > $C{quiet_budget})
        {
            push @{ $R{notes} }, sprintf('%s: the machine was not quiet '
                . '(%.0f%% of the CPU busy with other work after waiting '
                . '%.0f s); measured anyway', $label, 100 * $busy,
                time - $start);
            last;
        }
        printf "    waiting for a quiet machine: %.0f%% busy, load %.2f\n",
               100 * $busy, loadavg();
        sleep 5;
    }
    $QUIET_SPENT += time - $start - 2;
    my $q = { label => $label, busy => $busy, load1 => loadavg(),
              waited => time - $start - 2, at => time };
    push @{ $R{quiet} }, $q;
    printf "    quiet check: %.0f%% of the CPU busy, load average %.2f\n",
           100 * $busy, $q->{load1};
    return $q;
}

# CPU seconds used so far by each of our services (a process, its live
# children and the children it reaped), the load generators (children
# this script reaped) and the whole machine; cpu_delta() turns two of
# these into cores used over the time between them.
my $TCK = POSIX::sysconf(POSIX::_SC_CLK_TCK());

sub cpu_snapshot {
    my %proc;
    opendir my $dh, '/proc' or die "/proc: $!";
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $st = slurp("/proc/$pid/stat") or next;
        $st =~ s/^.*\) //s;
        my @f = split ' ', $st;
        $proc{$pid} = [$f[1], $f[11] + $f[12], $f[13] + $f[14]];
    }
    my %kids;
    push @{ $kids{ $proc{$_}[0] } }, $_ for keys %proc;
    my $tree = sub ($root) {
        return 0 unless $root && $proc{$root};
        my $t = $proc{$root}[1] + $proc{$root}[2];
        $t += $proc{$_}[1] for @{ $kids{$root} // [] };
        return $t / $TCK;
    };
    my ($tot, $idle, $steal) = cpu_sample();
    my @t = times;
    my %s = (busy => ($tot - $idle) / $TCK, loadgen => $t[2] + $t[3],
             steal => $steal / $TCK,
             self => $t[0] + $t[1], wall => time);
    $s{$_} = $tree->($R{pids}{$_}) for keys %{ $R{pids} // {} };
    return \%s;
}

sub cpu_delta ($a, $b) {
    my $wall = $b->{wall} - $a->{wall} or return {};
    my %d = map { $_ => ($b->{$_} - ($a->{$_} // 0)) / $wall }
            grep { $_ ne 'wall' } keys %$b;
    $d{others} = $d{busy} - sum(map { $d{$_} } grep { $_ ne 'busy' } keys %d);
    $d{others} = 0 if $d{others} < 0;
    return \%d;
}

sub machine_info {
    my %m;
    my $cpuinfo = slurp('/proc/cpuinfo');
    ($m{cpu}) = $cpuinfo =~ /^model name\s*:\s*(.+)$/m;
    ($m{mhz}) = $cpuinfo =~ /^cpu MHz\s*:\s*(.+)$/m;
    $m{cores} = () = $cpuinfo =~ /^processor\s*:/mg;
    my ($mem) = slurp('/proc/meminfo') =~ /^MemTotal:\s*(\d+)/m;
    $m{mem_gb} = sprintf '%.1f', $mem / 1024 / 1024;
    $m{kernel} = (run_cmd(['uname', '-r']))[1] =~ s/\s+$//r;
    my ($os) = slurp('/etc/os-release') =~ /^PRETTY_NAME="?([^"\n]+)/m;
    $m{os} = $os;
    my $ver = sub (@cmd) {
        my ($rc, $out, $err) = run_cmd(\@cmd);
        my $s = "$out$err";
        $s =~ s/\s+$//;
        return (split /\n/, $s)[0] // '?';
    };
    $m{nginx} = $ver->(nginx_bin(), '-v');
    $m{postgres} = $ver->("$PGBIN/postgres", '--version');
    $m{pgbench} = $ver->("$PGBIN/pgbench", '--version');
    $m{wrk} = $ver->('wrk', '-v');
    $m{node} = $ver->('node', '--version');
    $m{openssl} = $ver->('openssl', 'version');
    $m{python} = $ver->($PY, '--version');
    for my $p (qw(express pg)) {
        my $j = json_decode(slurp("$BENCH/node/node_modules/$p/package.json"));
        $m{"npm_$p"} = $j ? $j->{version} : '?';
    }
    my ($rc, $out) = run_cmd(['dpkg-query', '-W', '-f',
        '${Package} ${Version}\n', 'libpq5', 'libcurl4', 'libyajl2',
        'libssl3']);
    $m{libs} = join ', ', split /\n/, $out;
    ($rc, $out) = run_cmd(['git', '-C', $ROOT, 'rev-parse', '--short',
                           'HEAD']);
    $m{commit} = $out =~ s/\s+$//r;
    ($rc, $out) = run_cmd(['git', '-C', $ROOT, 'status', '--porcelain',
                           '--', 'src', 'ngx_http_ocdz_module.c']);
    $m{dirty} = length($out) ? 1 : 0;
    return \%m;
}

sub cpu_of ($pid) {
    my $s = slurp("/proc/$pid/stat");
    $s =~ s/^.*\) //s;
    my @f = split ' ', $s;
    return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

1;

# Card codes do not stay in a worker's memory, and workers that hold the
# card keys are not dumpable (issue #6).
#
# nginx runs with "user nobody" here. The kernel makes /proc/PID/* of a
# process owned by root once it is not dumpable (prctl PR_SET_DUMPABLE
# 0), and by the process's own user otherwise; nginx makes its workers
# dumpable again after setuid, so a worker running as nobody whose
# /proc entries belong to root is one the module made non-dumpable. A
# process of nobody that is dumpable (sleep) shows the difference.
#
# After a burst of reveals over plain HTTP has finished, every readable
# mapping of each worker is read through /proc/PID/mem (root may) and
# searched for the codes revealed: none may be there. A code held in a
# request that is still being read (an unfinished header) is found by
# the same scan, so the scan does see what a worker holds.
#
# Under AddressSanitizer the heap is a reserved range of terabytes: the
# memory scan is skipped there (the dumpable check still runs); under
# valgrind there are no workers.

use v5.36;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use POSIX ();

require_module();
plan skip_all => 'no worker processes under valgrind' if single_process();
plan skip_all => 'needs root (reads /proc/PID/mem)' if $>;

my (undef, undef, $nobody) = getpwnam('nobody')
    or plan skip_all => 'no user nobody';
my $group = getgrnam('nogroup') ? 'nogroup' : 'nobody';

my $env = card_env(pg => { log_statement => 'none' });
my $pg = $env->{pg};

my $ngx = Ocdz::Test::Nginx->new(pg => $pg, header => 0, workers => 2,
    vars => { DIR => $env->{dir} }, conf => <<"EOF" . card_conf());
daemon off;
master_process on;
worker_processes 2;
user nobody $group;
error_log %%PREFIX%%/logs/error.log debug;
pid %%PREFIX%%/logs/nginx.pid;
events { worker_connections 256; }
EOF
push @{ $env->{nginx} }, $ngx;

my $tok = $pg->add_session(random_token(), 'u1');
my @cards = map { [new_card($env, user => 'u1')] } 1 .. 40;
$ngx->start;
my @workers = $ngx->worker_pids;
is(scalar @workers, 2, 'two workers');

sub uid_of ($pid) {
    my ($uid) = slurp("/proc/$pid/status") =~ /^Uid:\s+(\d+)/m;
    return $uid;
}

sub proc_owner ($pid, $entry = 'mem') {
    my @st = stat("/proc/$pid/$entry");
    return $st[4];
}

# --- not dumpable -----------------------------------------------------------

{
    # a process of nobody that is dumpable: its /proc entries are nobody's
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDERR, '>', '/dev/null';
        { no warnings 'exec'; exec 'runuser', '-u', 'nobody', '--', 'sleep',
                                   '30'; }
        POSIX::_exit(127);
    }
    my $sleeper;
    wait_until(sub {
        for my $f (glob('/proc/[0-9]*/stat')) {
            next unless slurp($f) =~ /^(\d+) \(sleep\) \S (\d+) /;
            return $sleeper = $1 if $1 == $pid || $2 == $pid;
        }
        return 0;
    }, timeout => 10);
    ok(defined $sleeper, 'a dumpable process of nobody runs');
    if (defined $sleeper) {
        is(uid_of($sleeper), $nobody, '... as nobody');
        is(proc_owner($sleeper), $nobody,
           '... and its /proc/PID/mem belongs to nobody (dumpable)');
    }
    kill 'TERM', $pid;
    kill 'TERM', $sleeper if $sleeper;
    waitpid($pid, 0);
}
for my $w (@workers) {
    is(uid_of($w), $nobody, "worker $w runs as nobody");
    is(proc_owner($w), 0, "worker $w: /proc/PID/mem belongs to root: "
                          . 'not dumpable');
    is(proc_owner($w, 'status'), 0, "worker $w: /proc/PID/status too");
}

# --- a burst of reveals -----------------------------------------------------

my $n200 = 0;
for my $round (1 .. 2) {
    for my $c (@cards) {
        my ($s, $h, $j) = card_get($ngx, $c->[0], token => $tok);
        $n200++ if $s == 200 && ($j->{cardCode} // '') eq $c->[1];
    }
}
is($n200, 2 * @cards, 'every card revealed twice over plain HTTP');
ok(wait_until(sub {
       (() = $ngx->access_log =~ /"GET [^"]*\/card HTTP\/1\.1" 200/g)
       >= 2 * @cards }, timeout => 10),
   'the burst has finished (every answer logged)');

# --- the scan ---------------------------------------------------------------

SKIP: {
    skip 'the memory scan needs a build without AddressSanitizer', 6
        if under_asan();

    # a request still being read: its bytes sit in a worker's buffers
    my $marker = random_card_code();
    my @held;
    for (1 .. 4) {     # on every worker, whichever accepts
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ngx->port, Proto => 'tcp') or next;
        syswrite($s, "GET /api/internet-orders/$cards[0][0]/card HTTP/1.1\r\n"
                     . "Host: localhost\r\nX-Held: $marker\r\n");
        push @held, $s;
    }
    ok(wait_until(sub { $ngx->error_log =~ /X-Held: $marker/ },
                  timeout => 10), 'the held requests were read');

    my @codes = map { $_->[1] } @cards;
    my (%found, $bytes, $regions);
    for my $w (@workers) {
        my ($b, $r) = scan($w, [@codes, $marker], \%found);
        $bytes += $b;
        $regions += $r;
    }
    ok($bytes > 1_000_000, "read $bytes bytes in $regions mappings of the "
                           . 'workers');
    ok($found{$marker}, 'the scan finds a code a worker still holds');
    my @left = grep { $found{$_} } @codes;
    is(scalar @left, 0, 'none of the ' . scalar(@codes) . ' revealed codes '
                        . 'is left in the workers\' memory')
        or diag scalar(@left) . ' found, e.g. ' . substr($left[0], 0, 4)
                . '...';
    close $_ for @held;
    is_deeply([$ngx->worker_pids], \@workers, 'the workers are still there');
}

# Reads every readable mapping of $pid; counts in %$found the needles
# seen. Returns (bytes read, mappings read).
sub scan ($pid, $needles, $found) {
    no warnings 'portable';         # 64-bit addresses
    open my $maps, '<', "/proc/$pid/maps" or return (0, 0);
    open my $mem, '<:raw', "/proc/$pid/mem" or return (0, 0);
    my ($bytes, $regions) = (0, 0);
    my $chunk = 1 << 22;
    my $overlap = 64;
    while (my $l = <$maps>) {
        my ($from, $to, $perm, $name) =
            $l =~ /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/ or next;
        next unless $perm =~ /^r/;
        next if $name =~ /^\[(vvar|vsyscall|vdso)\]$/;
        my ($a, $b) = (hex $from, hex $to);
        next if $b - $a > (1 << 30);
        $regions++;
        my $tail = '';
        for (my $off = $a; $off < $b; $off += $chunk) {
            my $len = $b - $off < $chunk ? $b - $off : $chunk;
            sysseek($mem, $off, 0) or last;
            my $n = sysread($mem, my $buf, $len);
            last unless $n;
            $bytes += $n;
            my $hay = $tail . $buf;
            for (@$needles) {
                $found->{$_}++ if index($hay, $_) >= 0;
            }
            $tail = substr($buf, -$overlap);
        }
    }
    return ($bytes, $regions);
}

$ngx->quit;
hygiene($env);
done_testing;

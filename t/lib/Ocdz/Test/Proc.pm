package Ocdz::Test::Proc;

# Processes: every server a test starts (nginx, the mock, PostgreSQL)
# registers here and is stopped at done_testing, in an END block or on
# a signal, even when the test dies; commands run to completion with a
# timeout; waits poll a condition; free ports on loopback.

use v5.36;
use Carp qw(croak);
use Exporter qw(import);
use File::Path ();
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(weaken blessed);
use Test2::API ();
use Time::HiRes qw(time sleep);
use Ocdz::Test::Env qw(under_valgrind slow_factor);
use Ocdz::Test::Files qw(tmpdir write_file slurp);

our @EXPORT_OK = qw(run_cmd wait_until free_port register_cleanup
                    exit_status spawn);
our %EXPORT_TAGS = (all => [qw(run_cmd wait_until free_port)]);

my $OWNER = $$;          # only this process cleans up (not forked kids)
my @LIVE;                # [weak ref, rank] of every live server
my %PORTS_GIVEN;

# A server object to stop at the end: its _shutdown($why) is called
# ($why: 'done', 'END'). Lower ranks go first (nginx, 0, talks to the
# others), the newest first within a rank.
sub register_cleanup ($obj, $rank) {
    push @LIVE, [$obj, $rank];
    weaken($LIVE[-1][0]);
}

sub _cleanup_all ($why) {
    return if $$ != $OWNER;
    my %ranks = map { $_->[1] => 1 } @LIVE;
    for my $rank (sort { $a <=> $b } keys %ranks) {
        for my $l (reverse @LIVE) {
            my $o = $l->[0];
            next unless defined $o && blessed($o) && $l->[1] == $rank;
            eval { $o->_shutdown($why); 1 } or warn "cleanup: $@";
        }
    }
    @LIVE = grep { defined $_->[0] } @LIVE;
}

# Assertions on the nginx error logs belong to the test: run them at
# done_testing (a follow-up of the root hub), not at global destruction.
Test2::API::test2_add_callback_testing_done(sub { _cleanup_all('done') });

END {
    local $?;
    _cleanup_all('END');
}

# A signal should still run the END blocks; a hung test should die.
# (SIGPIPE: prove or a pipe reading the output went away.)
for my $sig (qw(INT TERM HUP PIPE)) {
    $SIG{$sig} = sub {
        $SIG{PIPE} = 'IGNORE';
        print STDERR "# Ocdz::Test: caught SIG$sig, cleaning up\n";
        exit 128 + 1;
    } if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
}
if (!$SIG{ALRM} || $SIG{ALRM} eq 'DEFAULT') {
    $SIG{ALRM} = sub {
        print STDERR "# Ocdz::Test: test timed out, cleaning up\n";
        exit 142;
    };
    alarm($ENV{OCDZ_TEST_TIMEOUT} // 900 * (under_valgrind() ? 3 : 1));
}

# Run a command (array ref): returns (exit code, stdout, stderr).
# Options: stdin => STRING, env => {K => V (undef deletes)},
# timeout => SECONDS (default 120; killed: exit code 124), cwd => DIR.
sub run_cmd ($cmd, %o) {
    my $dir = tmpdir();
    my ($in, $out, $err) = map { "$dir/run.$_" } qw(in out err);
    write_file($in, $o{stdin} // '');
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        open STDIN, '<', $in;
        open STDOUT, '>', $out;
        open STDERR, '>', $err;
        chdir $o{cwd} if $o{cwd};
        while (my ($k, $v) = each %{ $o{env} // {} }) {
            if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
        }
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }
    my $deadline = time + ($o{timeout} // 120);
    my $rc;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) { $rc = exit_status($?); last }
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $rc = 124;
            last;
        }
        sleep 0.01;
    }
    my @r = ($rc, slurp($out), slurp($err));
    File::Path::remove_tree($dir);
    return @r;
}

# Starts a server in the background, in a process group of its own (a
# signal to -pid reaches all of it), standard input from /dev/null and
# both outputs appended to $o{log}. Options: log => FILE (required),
# env => {K => V (undef deletes)}. Returns the pid.
sub spawn ($cmd, %o) {
    my $log = $o{log} // croak 'spawn: no log';
    my $pid = fork // croak "fork: $!";
    return $pid if $pid;
    POSIX::setsid();
    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', $log;
    open STDERR, '>&', \*STDOUT;
    while (my ($k, $v) = each %{ $o{env} // {} }) {
        if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
    }
    { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
    print STDERR "exec $cmd->[0]: $!\n";
    POSIX::_exit(127);
}

sub exit_status ($st) {
    return $st & 127 ? 128 + ($st & 127) : $st >> 8;
}

# Polls $cond until it returns true (returned) or timeout * slow_factor
# seconds pass (returns 0).
sub wait_until ($cond, %o) {
    my $deadline = time + ($o{timeout} // 10) * slow_factor();
    while (1) {
        my $r = $cond->();
        return $r if $r;
        return 0 if time > $deadline;
        sleep($o{interval} // 0.05);
    }
}

sub free_port {
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => 0, Proto => 'tcp',
                                      Listen => 1, ReuseAddr => 1)
            or croak "bind 127.0.0.1:0: $!";
        my $p = $s->sockport;
        close $s;
        next if $PORTS_GIVEN{$p}++;
        return $p;
    }
    croak 'no free port';
}

1;

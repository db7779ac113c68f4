package Bench::Common;

# What every step of the benchmark shares: the settings (from the
# environment; listed at the top of bench/run), the results of the run
# (%R, which the RESULTS.md writer reads), progress lines, the command
# lines recorded for the report, medians and number formats, and the
# services started in the background with their cleanups.

use v5.36;
use Exporter qw(import);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time);
use Ocdz::Test qw(repo_root wait_until);
use Ocdz::Test::Proc ();

our @EXPORT = qw(
    %C %R @PROFILES %SECTIONS %PROFILE_SETTINGS %COMMON_PG @STOP
    $ROOT $BENCH $PGBIN $PY $OUT $T0
    env_num say_step note_cmd median spawn stop_group
    f0 f2 pct ms met
);

our $ROOT = repo_root();
our $BENCH = "$ROOT/bench";
our $PGBIN = '/usr/lib/postgresql/15/bin';
our $PY = '/usr/bin/python3';

our %C = (
    runs        => env_num('BENCH_RUNS', 3),
    duration    => env_num('BENCH_DURATION', 10),
    warmup      => env_num('BENCH_WARMUP', 5),
    users       => env_num('BENCH_USERS', 1000),
    orders      => env_num('BENCH_ORDERS', 10000),
    pending     => env_num('BENCH_PENDING', 10000),
    mem_reveals => env_num('BENCH_MEM_REVEALS', 1000000),
    mem_checks  => env_num('BENCH_MEM_CHECKS', 100000),
    quiet       => env_num('BENCH_QUIET', 0.25),
    quiet_wait  => env_num('BENCH_QUIET_WAIT', 120),
    quiet_budget => env_num('BENCH_QUIET_BUDGET', 600),
    workers     => 2,
    pool        => 4,             # connections per worker
    poller_conc => 64,            # checks in flight per worker
    conns       => [32, 256],     # wrk connections, headline
    paced_conns => 128,           # wrk connections, paced runs
    threads     => 2,             # wrk and pgbench threads
    pgb_pairs   => 8,             # (session, order) pairs a pgbench client
    pgb_reload  => 500,           # holds, for about so many reveals
    batch_max   => 16,            # ocdz_db_batch (the module's default)
    capture_conns => 64,          # wrk connections that make the module
                                  # batch, to capture the array form
    busy_delay  => 200,           # ms, mock answer time, poller busy
    poller_delay => 100,          # ms, mock answer time, throughput
);
$C{pool_total} = $C{workers} * $C{pool};


our @PROFILES = split /,/, $ENV{BENCH_PROFILES} // 'defaults,fsync_off';
our %SECTIONS = map { $_ => 1 }
               split /,/, $ENV{BENCH_SECTIONS}
                     // 'headline,busy,poller,memory,status,outbox';
our $OUT = $ENV{BENCH_OUT} // "$BENCH/RESULTS.md";

our %PROFILE_SETTINGS = (
    # PostgreSQL's own defaults: every commit waits for its WAL flush
    defaults  => { fsync => 'on', synchronous_commit => 'on',
                   full_page_writes => 'on' },
    fsync_off => { fsync => 'off', synchronous_commit => 'on',
                   full_page_writes => 'on' },
);
our %COMMON_PG = (
    log_statement => "'none'",
    track_activity_query_size => 16384,
    max_connections => 100,
);


our %R = (started => time, config => \%C, profiles => {}, commands => [],
         quiet => [], notes => []);
our $T0 = time;

sub env_num ($name, $def) {
    my $v = $ENV{$name};
    return $def unless defined $v && length $v;
    die "$name must be a number\n" unless $v =~ /^\d+(?:\.\d+)?$/;
    return 0 + $v;
}

sub say_step ($text) {
    printf "\n[%6.1fs] == %s\n", time - $T0, $text;
}

sub note_cmd ($label, @cmd) {
    my $line = join ' ', map { /[\s"'*\$]/ ? "'$_'" : $_ } @cmd;
    push @{ $R{commands} }, [$label, $line]
        unless grep { $_->[0] eq $label } @{ $R{commands} };
}

sub median (@v) {
    @v = sort { $a <=> $b } grep { defined } @v;
    return undef unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

# --- services in the background ------------------------------------------

# A service in the background (its own process group, output to $log).
sub spawn ($log, $env, @cmd) {
    return Ocdz::Test::Proc::spawn(\@cmd, log => $log, env => $env);
}

sub stop_group ($pid) {
    return unless $pid;
    kill 'TERM', -$pid;
    my $ok = wait_until(sub { waitpid($pid, WNOHANG) == $pid }, timeout => 10);
    if (!$ok) {
        kill 'KILL', -$pid;
        waitpid($pid, 0);
    }
}

our @STOP;     # cleanups, newest first
END { $_->() for splice @STOP }

# --- RESULTS.md formats ----------------------------------------------------

sub f0 ($v) { defined $v ? sprintf('%.0f', $v) : '-' }
sub f2 ($v) { defined $v ? sprintf('%.2f', $v) : '-' }
sub pct ($v) { defined $v ? sprintf('%.0f%%', 100 * $v) : '-' }
sub ms ($v) { defined $v ? sprintf('%.2f', $v) : '-' }

sub met ($ok) { !defined $ok ? 'not measured' : $ok ? '**met**' : '**missed**' }

1;

package Bench::Wrk;

# The HTTP load generator: wrk runs of bench/reveal.lua (every request a
# random (session, order) pair of the data set) against the module, the
# HTTP ceiling or Node.js, with the CPU each part used meanwhile and,
# against a service that writes, its reveals per commit; and one reveal
# with curl.

use v5.36;
use Exporter qw(import);
use Ocdz::Test qw(run_cmd json_decode);
use Bench::Common;
use Bench::Machine qw(cpu_snapshot cpu_delta);

our @EXPORT = qw(wrk wrk_counted db_counts reveal_once);

sub wrk (%o) {
    my $d = $o{duration} // $C{duration};
    my @cmd = ('wrk', '-t', $C{threads}, '-c', $o{conns}, '-d', "${d}s",
               '--timeout', '10s', '-s', "$BENCH/reveal.lua",
               "http://127.0.0.1:$o{port}");
    my %env = (BENCH_TARGETS => $R{targets_file});
    $env{BENCH_DELAY_MS} = $o{delay_ms} if $o{delay_ms};
    note_cmd($o{label}, (map { "$_=$env{$_}" } sort keys %env), @cmd)
        if $o{label};
    my $c0 = cpu_snapshot();
    my ($rc, $out, $err) = run_cmd(\@cmd, env => \%env,
                                   timeout => $d + 120);
    my $cpu = cpu_delta($c0, cpu_snapshot());
    die "wrk failed ($rc): $err$out\n" if $rc;
    my ($j) = $out =~ /^BENCH_JSON (\{.*\})$/m;
    my $r = json_decode($j // '') or die "no result from wrk:\n$out$err\n";
    $r->{rps} = $r->{requests} / ($r->{duration_us} / 1e6);
    $r->{errors} = $r->{errors_status} + $r->{errors_timeout}
                 + $r->{errors_connect} + $r->{errors_read}
                 + $r->{errors_write};
    $r->{$_} = $r->{"${_}_us"} / 1000 for qw(p50 p90 p99 p999 max);
    $r->{cpu} = $cpu;
    printf "    %-28s %6d conns  %9.0f req/s  p50 %6.2f  p99 %7.2f  "
         . "p99.9 %7.2f ms%s\n", $o{what} // $o{label} // '?', $o{conns},
         $r->{rps}, $r->{p50}, $r->{p99}, $r->{p999},
         $r->{errors} ? "  ERRORS $r->{errors}" : '';
    return $r;
}

# One pgbench run. batch => B (default 1): 1 runs the single form, one
# reveal per transaction; B > 1 the array form with B reveals per

# Reveals per commit, over a wrk run: the reveals the database made (audit
# rows: every reveal here writes one, in the statement that reveals; the
# audit id sequence's last value counts them) divided by the transactions
# that wrote something (every one of the module's commits writes, so
# takes one transaction id; the next id to be given out, pg_snapshot_xmax
# of a snapshot, which takes none itself, counts them). Both are exact at
# once, and count the reveals still in flight when wrk stops (its
# completed requests do not: up to one per connection fewer).
# pg_stat_database's xact_commit is read too, for the record only: it
# counts read-only transactions too (these queries, the poller's idle
# ticks, Node.js's separate reads) and lags, an idle backend sending its
# counts up to 10 s late (PGSTAT_IDLE_INTERVAL).
sub db_counts ($pg) {
    my ($row) = $pg->psql(q{SELECT pg_snapshot_xmax(pg_current_snapshot()),
        (SELECT last_value FROM ocdz.audit_id_seq),
        (SELECT xact_commit FROM pg_stat_database
         WHERE datname = 'postgres')});
    return { xid => 0 + $row->[0], audit => 0 + $row->[1],
             xact_commit => 0 + $row->[2] };
}

# wrk, with the transactions the service committed meanwhile
sub wrk_counted ($pg, %o) {
    my $c0 = db_counts($pg);
    my $r = wrk(%o);
    my $c1 = db_counts($pg);
    $r->{$_} = $c1->{$_} - $c0->{$_} for qw(xid audit xact_commit);
    $r->{per_commit} = $r->{xid} ? $r->{audit} / $r->{xid} : undef;
    printf "    %-28s %d requests, %d reveals (audit rows) in %d writing "
         . "transactions: %.2f per commit (xact_commit moved %d)\n", '',
         $r->{requests}, $r->{audit}, $r->{xid}, $r->{per_commit} // 0,
         $r->{xact_commit};
    return $r;
}

# The module's statements as PostgreSQL saw it run them: pg_stat_activity
# keeps each connection's last statement. The single form, one reveal, is
# what a lone reveal on an idle pool runs (verify()'s reveals, one after

sub reveal_once ($port, $t) {
    my ($rc, $out, $err) = run_cmd(['curl', '-sS', '-H',
        "Authorization: Bearer $t->{token}", '-H',
        'User-Agent: ocdz-bench/wrk',
        "http://127.0.0.1:$port/api/internet-orders/$t->{id}/card"]);
    die "curl failed: $err\n" if $rc;
    return ($out, json_decode($out));
}

1;

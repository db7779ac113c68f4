package Bench::Pgbench;

# The database ceiling: pgbench running the module's own reveal
# statements, captured from pg_stat_activity while the module runs them
# (the single form and the array form), prepared, with the data set's
# (session, order) pairs loaded from tables of their own.

use v5.36;
use Exporter qw(import);
use List::Util qw(max min);
use Ocdz::Test qw(run_cmd wait_until write_file sha256_hex);
use Bench::Common;
use Bench::Machine qw(cpu_snapshot cpu_delta);
use Bench::Wrk qw(reveal_once);

our @EXPORT = qw(pgbench pgbench_label pgbench_pairs capture_statements
                 pgbench_script_for batch_of);

# (session hash, top-up id) pairs for pgbench: rows of $k pairs that
# cover every order once, in table ocdz_bench.$table. "pairs" has
# pgb_pairs a row (one reveal per transaction), "pairs_batch" batch_max
# a row (the array form: a transaction takes B <= batch_max of them)
sub pgbench_pairs ($pg, $targets, $table, $k) {
    my @cols = map { ("h$_ text", "t$_ text") } 1 .. $k;
    my $sql = "CREATE SCHEMA IF NOT EXISTS ocdz_bench;\n"
        . "DROP TABLE IF EXISTS ocdz_bench.$table;\n"
        . "CREATE TABLE ocdz_bench.$table (row_id integer PRIMARY KEY, "
        . join(', ', @cols) . ");\n"
        . "COPY ocdz_bench.$table FROM STDIN;\n";
    my $rows = int(@$targets / $k);
    for my $row (0 .. $rows - 1) {
        $sql .= join("\t", $row, map {
            my $t = $targets->[$row * $k + $_];
            (sha256_hex($t->{token}), $t->{id}) } 0 .. $k - 1) . "\n";
    }
    $sql .= "\\.\n"
          . "GRANT USAGE ON SCHEMA ocdz_bench TO ocdz_module;\n"
          . "GRANT SELECT ON ocdz_bench.$table TO ocdz_module;\n";
    $pg->psql($sql);
    $R{pgb_rows}{$table} = $rows;
}

# One pgbench run. batch => B (default 1): 1 runs the single form, one
# reveal per transaction; B > 1 the array form with B reveals per
# transaction. tps counts transactions; rps, reveals a second (tps * B),
# is what compares with wrk's requests a second.
sub pgbench ($pg, %o) {
    my $d = $o{duration} // $C{duration};
    my $nb = $o{batch} // 1;
    my $script = pgbench_script_for($nb);
    my @cmd = ("$PGBIN/pgbench", '-h', '127.0.0.1', '-p', $pg->port,
               '-U', 'ocdz_module', '-n', '-M', 'prepared',
               '-c', $C{pool_total}, '-j', $C{threads}, '-T', $d,
               '-D', 'loaded=0', '-D', 'ip=127.0.0.1',
               '-D', 'ua=ocdz-bench/wrk', '-D', 'm=GET',
               '-f', $script, 'postgres');
    note_cmd(pgbench_label($nb), @cmd) unless $o{warmup};
    my $c0 = cpu_snapshot();
    my ($rc, $out, $err) = run_cmd(\@cmd, timeout => $d + 120);
    my $cpu = cpu_delta($c0, cpu_snapshot());
    die "pgbench failed ($rc): $err$out\n" if $rc;
    my ($tps) = $out =~ /^tps = ([\d.]+) \(without initial/m;
    my ($lat) = $out =~ /^latency average = ([\d.]+) ms/m;
    my ($failed) = $out =~ /^number of failed transactions: (\d+)/m;
    my ($txns) = $out =~ /^number of transactions actually processed: (\d+)/m;
    die "no tps from pgbench:\n$out$err\n" unless defined $tps;
    printf "    %-28s %6d clients %8.0f tps  %8.0f reveals/s  mean %6.2f "
         . "ms%s\n", "pgbench, $nb per transaction",
           $C{pool_total}, $tps, $tps * $nb, $lat,
           $failed ? "  FAILED $failed" : '';
    return { tps => 0 + $tps, rps => $tps * $nb, batch => $nb,
             latency_ms => 0 + $lat, cpu => $cpu,
             requests => 0 + ($txns // 0), failed => 0 + ($failed // 0) };
}

sub pgbench_label ($nb) {
    return $nb == 1 ? 'pgbench, reveal SQL, one reveal per transaction'
                   : "pgbench, reveal SQL (array form), $nb reveals per "
                     . 'transaction';
}

# together or wait for a connection run: capture_conns wrk connections
# for a few seconds make some.
my $ACTIVITY = q{SELECT query FROM pg_stat_activity
    WHERE application_name = 'ngx_http_ocdz_module'
    AND query LIKE '%ocdz.sessions%' AND query LIKE '%ocdz.audit%'};

sub activity_dump ($pg) {
    return join "\n", map { join ' | ', map { $_ // '' } @$_ } $pg->psql(
        q{SELECT application_name, state, left(query, 80)
          FROM pg_stat_activity});
}

sub capture_statements ($pg, $ngx, $targets) {
    my $single;
    for my $try (1 .. 3) {
        last if wait_until(sub {
            $single = $pg->value("$ACTIVITY AND query LIKE "
                                 . q{'%ARRAY[$1::text]%' LIMIT 1});
        }, timeout => 5);
        reveal_once($ngx->port, $targets->[$try + $_]) for 0 .. 3;
    }
    die "the module's reveal statement (single form) is not in "
        . "pg_stat_activity:\n" . activity_dump($pg) . "\n" unless $single;

    my $batch;
    for my $try (1 .. 3) {
        my @cmd = ('wrk', '-t', $C{threads}, '-c', $C{capture_conns},
                   '-d', '4s', '--timeout', '10s', '-s',
                   "$BENCH/reveal.lua", 'http://127.0.0.1:' . $ngx->port);
        note_cmd('capturing the array form (pg_stat_activity, while it '
                 . 'runs)', "BENCH_TARGETS=$R{targets_file}", @cmd);
        my $pid = spawn("$R{dir}/capture-wrk.log",
                        { BENCH_TARGETS => $R{targets_file} }, @cmd);
        wait_until(sub {
            $batch = $pg->value("$ACTIVITY AND query LIKE "
                                . q{'%$1::text[]%' LIMIT 1});
        }, timeout => 8, interval => 0.1);
        stop_group($pid);
        last if $batch;
    }
    die "the module's reveal statement (array form) is not in "
        . "pg_stat_activity:\n" . activity_dump($pg) . "\n" unless $batch;
    for my $sql ($single, $batch) {
        my %seen = map { $_ => 1 } $sql =~ /\$(\d+)/g;
        die "unexpected parameters in the reveal statement: "
            . join(', ', sort keys %seen) . "\n$sql\n"
            unless join(',', sort keys %seen) eq '1,2,3,4,5';
    }
    $R{reveal_sql} = $single;
    $R{reveal_batch_sql} = $batch;
    $R{pgbench_scripts} = {};
}

# The reveal statement as pgbench scripts, prepared like the module's
# (-M prepared). pgbench variables are numbers unless a query sets them,
# so each client loads (session hash, top-up id) pairs with \gset, on its
# first transaction and then again once in about pgb_reload reveals (a
# random row each time: over a run every client meets every order).
#
# B = 1, the single form: the row has pgb_pairs pairs (ocdz_bench.pairs)
# and every transaction runs the statement for one pair picked at random
# by a balanced tree of \if. The pgb_pairs copies of the statement are
# prepared once per connection and reach their steady plan after a few
# dozen transactions.
#
# B > 1, the array form: the row has batch_max pairs (ocdz_bench.
# pairs_batch, so B <= batch_max distinct pairs always exist), and every
# transaction reveals B of them: B consecutive pairs from a random offset
# (wrapping round the row), one \if leaf per offset. $1 and $2 become
# ARRAY[:hO, ..., :hO+B-1] and ARRAY[:tO, ...]; $3, $4 and $5 (the same
# address, user agent and method for every reveal, as in wrk's requests)
# ARRAY[:ip, ...] and so on, B times. The statement casts them ::text[],
# as it does the module's text arrays. pgbench sends each variable as one
# parameter: 5 * B of them, at most 255.
#
# The load costs one indexed read per pgb_reload reveals.
sub pgbench_script_for ($nb) {
    return $R{pgbench_scripts}{$nb} if $R{pgbench_scripts}{$nb};
    die "batch $nb out of 1 .. $C{batch_max}\n"
        if $nb < 1 || $nb > $C{batch_max} || 5 * $nb > 255;
    my ($sql, $k, $table) = $nb == 1
        ? ($R{reveal_sql}, $C{pgb_pairs}, 'pairs')
        : ($R{reveal_batch_sql}, $C{batch_max}, 'pairs_batch');
    my %var = (1 => 'h%d', 2 => 't%d', 3 => 'ip', 4 => 'ua', 5 => 'm');
    my $leaf = sub ($i) {
        (my $s = $sql) =~ s/\$(\d+)/
            my $v = $var{$1} or die "unexpected parameter \$$1\n";
            my @v = map { ':' . ($v =~ m{%d}
                                 ? sprintf($v, ($i - 1 + $_) % $k + 1) : $v) }
                    0 .. $nb - 1;
            $nb == 1 ? $v[0] : 'ARRAY[' . join(', ', @v) . ']'/ge;
        $s =~ s/\s+/ /g;
        return "$s;\n";
    };
    my $tree;
    $tree = sub ($lo, $hi) {
        return $leaf->($lo) if $lo == $hi;
        my $mid = int(($lo + $hi) / 2);
        return "\\if :r <= $mid\n" . $tree->($lo, $mid) . "\\else\n"
             . $tree->($mid + 1, $hi) . "\\endif\n";
    };
    my $reload = max(2, int($C{pgb_reload} / $nb + 0.5));
    my $script = "\\set reload random(1, $reload)\n"
        . "\\if :loaded = 0 or :reload = 1\n"
        . "\\set row random(0, " . ($R{pgb_rows}{$table} - 1) . ")\n"
        . 'SELECT ' . join(', ', map { "h$_, t$_" } 1 .. $k)
        . " FROM ocdz_bench.$table WHERE row_id = :row \\gset\n"
        . "\\set loaded 1\n\\endif\n"
        . "\\set r random(1, $k)\n"
        . $tree->(1, $k);
    my $file = "$R{dir}/reveal" . ($nb == 1 ? '' : "-batch$nb") . '.pgbench';
    write_file($file, $script);
    return $R{pgbench_scripts}{$nb} = $file;
}

# the pgbench batch for so many reveals per commit: rounded, 2 .. batch_max
sub batch_of ($per_commit) {
    return min($C{batch_max}, max(2, int(($per_commit // 0) + 0.5)));
}

1;

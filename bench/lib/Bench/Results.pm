package Bench::Results;

# bench/RESULTS.md, rewritten after each profile: the machine, versions
# and settings; the targets table (a row or more from each section);
# each section's report; the quiet checks, notes, command lines and the
# reveal statements pgbench ran. The hand-written analysis between the
# ANALYSIS markers of the old file is kept.

use v5.36;
use List::Util qw(max);
use POSIX qw(strftime);
use Time::HiRes qw(time);
use Ocdz::Test qw(slurp write_file);
use Bench::Common;

use Exporter qw(import);
our @EXPORT = qw(write_results);

# @sections: the section modules, in the order of the report.
sub write_results (@sections) {
    my $m = $R{machine};
    my @o;
    push @o, '# Benchmark results', '',
        'Produced by `make bench` (`bench/run`); every number below comes '
        . 'from the run it describes. Only the section between the '
        . 'ANALYSIS markers is written by hand, and the script keeps it '
        . 'when it rewrites this file.', '';
    push @o, '## Machine, versions, settings', '',
        "- run: " . strftime('%Y-%m-%d %H:%M UTC', gmtime $R{started})
        . sprintf(', %.0f minutes', (time - $R{started}) / 60)
        . ", commit $m->{commit}" . ($m->{dirty} ? ' (with local changes '
        . 'to the module)' : ''),
        "- CPU: $m->{cpu}, $m->{cores} cores; memory $m->{mem_gb} GiB; "
        . "$m->{os}, Linux $m->{kernel}",
        "- load average before the run: $R{load_before}; the same machine "
        . 'is shared with other work: see the quiet checks below',
        "- $m->{nginx}, module built with `-O2 -g`; $m->{postgres}; "
        . "$m->{pgbench}; $m->{wrk}; Node.js $m->{node}, Express "
        . "$m->{npm_express}, pg $m->{npm_pg}; $m->{openssl}; $m->{python}",
        "- libraries: $m->{libs}",
        "- nginx: $C{workers} workers, `ocdz_db_pool_size $C{pool}` "
        . "($C{pool_total} connections in all), `ocdz_db_queue 1024`, "
        . "`ocdz_db_batch $C{batch_max}` (reveals that arrive together or "
        . 'wait for a connection go as one statement, one commit), '
        . "poller on (`ocdz_poller_concurrency $C{poller_conc}`, interval "
        . '1s), `access_log off`, `error_log warn`',
        "- Node.js: $C{workers} processes (`cluster`), a `pg` pool of "
        . ($C{pool_total} / $C{workers}) . " each ($C{pool_total} in all), "
        . 'named (prepared) statements, NODE_ENV=production, no ETag',
        "- pgbench: $C{pool_total} clients, $C{threads} threads, "
        . "`-M prepared`, the module's reveal statements as PostgreSQL "
        . 'recorded them (pg_stat_activity; both are at the end). One '
        . 'reveal per transaction: the single form, for one of '
        . "$C{pgb_pairs} (session, order) pairs picked at random. B "
        . 'reveals per transaction: the array form, for B consecutive '
        . "pairs from a random offset among $C{batch_max}, B the module's "
        . 'reveals per commit at 32 connections (rounded, at least 2; '
        . 'from the warm-up run), and B = ' . $C{batch_max} . ' (the '
        . 'largest batch). Each client loads other pairs every '
        . "$C{pgb_reload} reveals on average (one indexed read; see the "
        . 'script\'s comments). Its reveals a second are transactions a '
        . 'second × B',
        '- reveals per commit, over each wrk run: audit rows written (one '
        . 'per reveal) / transactions committed (every reveal writes, so '
        . 'the transaction ids given out: '
        . '`pg_snapshot_xmax(pg_current_snapshot())` before and after). '
        . '`pg_stat_database.xact_commit` would count read-only '
        . 'transactions too and lags by up to 10 s',
        "- data: $C{orders} fulfilled orders of $C{users} users (cards in "
        . 'the module\'s AES-256-GCM record), one session each, already '
        . 'delivered once; every request picks a random (session, order) '
        . 'pair; each reveal writes an audit row',
        "- wrk: $C{threads} threads, `bench/reveal.lua`; runs of "
        . "$C{duration} s, $C{runs} rounds, warm-up $C{warmup} s per service",
        "- PostgreSQL: a fresh cluster per profile, `shared_buffers` and "
        . 'the rest at their defaults, on the machine\'s disk', '';
    for my $p (@PROFILES) {
        my $s = $R{profiles}{$p}{pg_settings} or next;
        push @o, "- profile `$p`: " . join(', ', map { "$_=$s->{$_}" }
            grep { $_ ne 'server_version' } sort keys %$s);
    }
    push @o, '';

    # targets first
    my $d = $PROFILES[0];
    push @o, "## Targets (profile `$d`)", '',
        '| target | measured | |', '|---|---|---|',
        (map { $_->targets } @sections), '';
    push @o, map { $_->report } @sections;

    push @o, '## Quiet checks', '',
        'Before each measured section the script samples the CPU for 2 s '
        . 'while its own services are idle, and waits (up to '
        . "$C{quiet_wait} s, $C{quiet_budget} s in all) until at most "
        . pct($C{quiet}) . ' of it is busy with other work.', '',
        '| section | CPU busy | load average (1 min) | waited (s) |',
        '|---|---|---|---|',
        (map { "| $_->{label} | " . pct($_->{busy}) . ' | '
               . f2($_->{load1}) . ' | ' . f0(max(0, $_->{waited})) . ' |' }
         @{ $R{quiet} }), '';
    push @o, '## Notes', '', (map { "- $_" } @{ $R{notes} }), ''
        if @{ $R{notes} };

    push @o, '## Command lines', '', '```';
    push @o, map { "# $_->[0]\n$_->[1]" } @{ $R{commands} };
    push @o, '```', '';
    if ($R{reveal_sql}) {
        push @o, 'The reveal statement, single form (one reveal; pgbench '
            . 'runs it with one reveal per transaction):', '', '```sql',
            $R{reveal_sql}, '```', '';
    }
    if ($R{reveal_batch_sql}) {
        push @o, 'The reveal statement, array form (one element per '
            . 'reveal, up to ' . $C{batch_max} . '; pgbench runs it with '
            . '$1 and $2 as ARRAY[:h1, ...] and ARRAY[:t1, ...] of B '
            . 'pairs, and $3, $4, $5 as arrays of B copies of its '
            . 'address, user agent and method):', '', '```sql',
            $R{reveal_batch_sql}, '```', '';
    }

    # the hand-written analysis survives
    my $old = slurp($OUT);
    my ($analysis) = $old =~ /(<!-- ANALYSIS -->.*<!-- \/ANALYSIS -->)/s;
    $analysis //= "<!-- ANALYSIS -->\n## Analysis (written by hand)\n\n"
        . "(none yet)\n<!-- /ANALYSIS -->";
    push @o, $analysis, '';
    write_file($OUT, join "\n", @o);
    say "    results written to $OUT";
}


1;

package Bench::Headline;

# Sections 1-3 of RESULTS.md, for every profile: the module's reveals
# against the HTTP ceiling (nginx answering the same JSON from memory),
# the Node.js service and pgbench running the module's own statements,
# at 32 and 256 connections, in rounds; with the targets "≥ 80% of the
# pgbench ceiling" and "≥ 5 × Node.js".

use v5.36;
use List::Util qw(sum max min);
use Bench::Common;
use Bench::Machine qw(wait_quiet);
use Bench::Wrk qw(wrk wrk_counted);
use Bench::Pgbench qw(pgbench batch_of);

sub name { 'headline' }

sub every_profile { 1 }

# The module batches the reveals that arrive together or wait for a
# connection, so what it runs is told by its reveals per commit, counted
# in every run against the module (and Node.js, for comparison). The
# database ceiling it is held to is pgbench running that: the array form
# with B reveals per transaction, B the module's reveals per commit at 32
# connections, rounded, at least 2. B is taken from the warm-up run (32
# connections, its commits counted like the rounds') so that every round
# compares within itself; the rounds' own median is reported beside it,
# with a note when it rounds to another B. pgbench also runs the single
# form, one reveal per transaction (the ceiling before batching), and the
# largest batch (batch_max), for information.
sub run ($class, $p, $s) {
    my ($pg, $ngx, $node) = @$s{qw(pg ngx node)};
    my @targets = (
        [module  => $ngx->port],
        [ceiling => $ngx->port(2)],
        [node    => $node->{port}],
    );
    my $run = sub ($t, %o) {
        return $t->[0] eq 'ceiling'
            ? wrk(port => $t->[1], %o)
            : wrk_counted($pg, port => $t->[1], %o);
    };
    my $h = $R{profiles}{$p}{headline} = { rounds => [] };
    say_step "$p: warm-up";
    for my $t (@targets) {
        my $w = $run->($t, conns => 32, duration => $C{warmup},
                       what => "warm-up $t->[0]");
        $h->{warmup_per_commit} = $w->{per_commit} if $t->[0] eq 'module';
    }
    my $nb = $h->{batch} = batch_of($h->{warmup_per_commit});
    printf "    the module's reveals per commit at 32 connections: %.2f: "
         . "pgbench in batches of %d\n", $h->{warmup_per_commit} // 0, $nb;
    my @pgb = ([pgbench => 1], [pgbench_batch => $nb]);
    push @pgb, [pgbench_max => $C{batch_max}] if $nb != $C{batch_max};
    pgbench($pg, duration => $C{warmup}, warmup => 1, batch => $_->[1])
        for @pgb;

    for my $round (1 .. $C{runs}) {
        say_step "$p: headline round $round of $C{runs}";
        my $q = wait_quiet("$p headline round $round");
        my %r = (quiet => $q);
        for my $c (@{ $C{conns} }) {
            for my $t (@targets) {
                $r{"$t->[0]_$c"} = $run->($t, conns => $c,
                                          label => "$t->[0] ${c}c",
                                          what => $t->[0]);
            }
        }
        $r{ $_->[0] } = pgbench($pg, batch => $_->[1]) for @pgb;
        $r{pgbench_max} //= $r{pgbench_batch};
        push @{ $h->{rounds} }, \%r;
    }
    $h->{rounds_per_commit} = median(map { $_->{module_32}{per_commit} }
                                     @{ $h->{rounds} });
    my $rb = batch_of($h->{rounds_per_commit});
    push @{ $R{notes} }, sprintf('profile %s: the module made %.2f reveals '
        . 'per commit at 32 connections in the warm-up, so pgbench ran '
        . 'batches of %d, but %.2f (batches of %d) in the rounds (median)',
        $p, $h->{warmup_per_commit} // 0, $nb, $h->{rounds_per_commit} // 0,
        $rb) if $rb != $nb;
}

# The target rows: ratios of the first profile, medians of the rounds'.
sub targets ($class) {
    my $d = $PROFILES[0];
    my $hd = $R{profiles}{$d}{headline};
    my ($pgb_ratio, $pgb1_ratio, $node_ratio);
    if ($hd && @{ $hd->{rounds} // [] }) {
        $pgb_ratio = median(map { $_->{module_32}{rps}
                                  / $_->{pgbench_batch}{rps} }
                            @{ $hd->{rounds} });
        $pgb1_ratio = median(map { $_->{module_32}{rps}
                                   / $_->{pgbench}{rps} }
                             @{ $hd->{rounds} });
        $node_ratio = min(map { my $c = $_;
            median(map { $_->{"module_$c"}{rps} / $_->{"node_$c"}{rps} }
                   @{ $hd->{rounds} }) } @{ $C{conns} });
    }
    return (
        '| reveals ≥ 80% of the pgbench ceiling (32 connections; pgbench '
        . 'runs the statement of one reveal, prepared, one reveal per '
        . 'transaction, 8 clients) | ' . pct($pgb1_ratio) . ' | '
        . met(defined $pgb1_ratio ? $pgb1_ratio >= 0.8 : undef) . ' |',
        '| (for information) reveals / pgbench running the array form, '
        . ($hd ? "$hd->{batch} reveals per transaction (the module's "
                 . 'batch)' : 'in the module\'s batches')
        . ', 8 clients (32 connections; see the analysis) | '
        . pct($pgb_ratio) . ' | information |',
        '| reveals ≥ 5 × the Node.js service (worst of 32 and 256 '
        . 'connections) | ' . (defined $node_ratio
                               ? sprintf('%.2f ×', $node_ratio) : '-')
        . ' | ' . met(defined $node_ratio ? $node_ratio >= 5 : undef) . ' |',
    );
}

sub report ($class) {
    my $m = $R{machine};
    my @o;
    for my $p (@PROFILES) {
        my $h = $R{profiles}{$p}{headline} or next;
        my @r = @{ $h->{rounds} // [] } or next;
        my $hb = $h->{batch};
        my $bmax = $C{batch_max};
        # the pgbench runs: key, label, reveals per transaction
        my @pgb = (['pgbench', 'pgbench, reveal SQL, one reveal per '
                    . 'transaction', 1],
                   ['pgbench_batch', "pgbench, reveal SQL (array form), $hb "
                    . 'reveals per transaction: the module\'s batch '
                    . ($hb == $bmax ? 'and the largest ' : '')
                    . '(database ceiling)', $hb]);
        push @pgb, ['pgbench_max', "pgbench, reveal SQL (array form), $bmax "
                    . 'reveals per transaction: the largest batch', $bmax]
            if $hb != $bmax;
        my $pc = sub ($key) {
            my $v = median(map { $_->{$key}{per_commit} } @r);
            defined $v ? f2($v) : '-';
        };
        push @o, "## 1-3. Reveals against their limits, profile `$p`", '',
            'Medians of ' . @r . ' rounds. Latencies in milliseconds, as '
            . 'wrk measured them (request written to response read). '
            . 'For pgbench, req/s is reveals a second (transactions a '
            . 'second, in brackets, × reveals per transaction) and the '
            . 'latency its mean per transaction. Reveals per commit: '
            . 'audit rows / writing transactions, over the run. ' . sprintf(
            'The module made %.2f reveals per commit at 32 connections in '
            . 'the warm-up, so the batched pgbench runs B = %d reveals per '
            . 'transaction (the rounds\' median at 32 connections: %s).',
            $h->{warmup_per_commit} // 0, $hb, $pc->('module_32')), '',
            '| service | conns | req/s | p50 | p99 | p99.9 | errors | '
            . 'reveals per commit |', '|---|---|---|---|---|---|---|---|';
        for my $c (@{ $C{conns} }) {
            for my $s (['module', 'module (card endpoint)'],
                       ['ceiling', 'nginx `return 200` (HTTP ceiling)'],
                       ['node', 'Node.js (Express 5, pg 8)'])
            {
                my @x = map { $_->{"$s->[0]_$c"} } @r;
                push @o, "| $s->[1] | $c | " . f0(median(map { $_->{rps} } @x))
                    . ' | ' . ms(median(map { $_->{p50} } @x))
                    . ' | ' . ms(median(map { $_->{p99} } @x))
                    . ' | ' . ms(median(map { $_->{p999} } @x))
                    . ' | ' . sum(map { $_->{errors} } @x) . ' | '
                    . ($s->[0] eq 'ceiling' ? '-' : $pc->("$s->[0]_$c"))
                    . ' |';
            }
        }
        for my $g (@pgb) {
            my ($key, $label, $n) = @$g;
            push @o, "| $label | $C{pool_total} clients | "
                . f0(median(map { $_->{$key}{rps} } @r)) . ' ('
                . f0(median(map { $_->{$key}{tps} } @r)) . ' tps) | mean '
                . ms(median(map { $_->{$key}{latency_ms} } @r))
                . ' | | | ' . sum(map { $_->{$key}{failed} } @r)
                . " | $n |";
        }
        push @o, '',
            'Ratios, each taken within a round, median over the rounds:', '',
            '| ratio | 32 conns | 256 conns |', '|---|---|---|';
        my $ratio = sub ($den_key, $c) {
            median(map { $_->{"module_$c"}{rps}
                         / ($den_key =~ /^pgbench/ ? $_->{$den_key}{rps}
                                                   : $_->{"${den_key}_$c"}{rps})
                       } @r);
        };
        # at each connection count, the pgbench run whose batch is nearest
        # the module's reveals per commit there
        my %near = map { my $c = $_;
            my $pcm = median(map { $_->{"module_$c"}{per_commit} } @r) // 1;
            my ($g) = sort { abs($a->[2] - $pcm) <=> abs($b->[2] - $pcm) }
                      @pgb;
            ($c => $g) } @{ $C{conns} };
        push @o, '| module / pgbench with the batch nearest the module\'s '
            . 'reveals per commit | ' . join(' | ', map { my $c = $_;
                pct($ratio->($near{$c}[0], $c)) . " (×$near{$c}[2])" }
                @{ $C{conns} }) . ' |';
        push @o, map { my ($label, $den) = @$_;
            "| module / $label | " . join(' | ', map {
                my $v = $ratio->($den, $_);
                $den eq 'node' ? sprintf('%.2f ×', $v) : pct($v) }
                @{ $C{conns} }) . ' |' }
            (["pgbench ceiling ($hb reveals per transaction, the module's "
              . 'batch at 32 connections)', 'pgbench_batch'],
             ['pgbench, one reveal per transaction', 'pgbench'],
             ($hb != $bmax ? (["pgbench, $bmax reveals per transaction",
                              'pgbench_max']) : ()),
             ['HTTP ceiling', 'ceiling'], ['Node.js', 'node']);
        push @o, '', 'Every round (req/s; pgbench: reveals a second; '
            . 'rev/commit: the module\'s reveals per commit):', '',
            '| round | busy before | module 32 | module 256 | ceiling 32 | '
            . 'ceiling 256 | node 32 | node 256 | rev/commit 32 | '
            . 'rev/commit 256 | ' . join(' | ', map {
                "pgbench ×$_->[2]" } @pgb) . ' |',
            '|---|---|---|---|---|---|---|---|---|---|'
            . ('---|' x @pgb);
        my $i = 0;
        for my $x (@r) {
            $i++;
            push @o, "| $i | " . pct($x->{quiet}{busy}) . sprintf(' (load %.2f)',
                $x->{quiet}{load1}) . ' | ' . join(' | ', (map {
                f0($x->{$_}{rps}) } qw(module_32 module_256 ceiling_32
                ceiling_256 node_32 node_256)),
                (map { f2($x->{$_}{per_commit}) } qw(module_32 module_256)),
                (map { f0($x->{ $_->[0] }{rps}) } @pgb)) . ' |';
        }
        push @o, '', 'CPU used during the runs, in cores (the machine has '
            . "$m->{cores}), medians; \"rest\" is everything else on the "
            . 'machine (other people\'s work included); the last column is '
            . 'PostgreSQL\'s CPU time per request or pgbench reveal:', '',
            '| run | PostgreSQL | nginx | Node.js | wrk or pgbench | rest | '
            . 'PostgreSQL µs per reveal |', '|---|---|---|---|---|---|---|';
        my @runs = ((map { my $c = $_; map { ["$_ $c", "${_}_$c"] }
                         qw(module ceiling node) } @{ $C{conns} }),
                    (map { ["pgbench, $_->[2] per transaction", $_->[0]] }
                     @pgb));
        for my $run (@runs) {
            my @x = grep { $_ && $_->{cpu} && %{ $_->{cpu} } }
                    map { $_->{ $run->[1] } } @r;
            next unless @x;
            my $med = sub ($k) { median(map { $_->{cpu}{$k} // 0 } @x) };
            my $rest = median(map { my $c = $_->{cpu};
                ($c->{busy} // 0) - sum(map { $c->{$_} // 0 }
                                        qw(pg nginx node loadgen)) } @x);
            my $per = median(map { $_->{cpu}{pg} * 1e6
                                   / ($_->{rps} // $_->{tps}) } @x);
            push @o, "| $run->[0] | " . join(' | ', map { f2($_) }
                $med->('pg'), $med->('nginx'), $med->('node'),
                $med->('loadgen'), ($rest < 0 ? 0 : $rest)) . ' | '
                . f0($per) . ' |';
        }
        my $lc = $R{profiles}{$p}{nginx_log} // {};
        push @o, '', "nginx error log over the profile: "
            . (join(', ', map { "$lc->{$_} [$_]" } sort keys %$lc)
               || 'nothing at warn or above')
            . "; audit rows written: $R{profiles}{$p}{audit_rows} ("
            . join(', ', map { "$_ $R{profiles}{$p}{audit_events}{$_}" }
                   sort keys %{ $R{profiles}{$p}{audit_events} // {} })
            . ').', '';
    }
    return @o;
}

1;

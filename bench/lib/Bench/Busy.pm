package Bench::Busy;

# Section 4 of RESULTS.md (first profile): reveals paced at half the
# module's maximum rate, with the poller idle and then busy with
# thousands of checks the mock answers slowly; the target "p99 with the
# poller busy ≤ 1.5 × idle".

use v5.36;
use Bench::Common;
use Bench::Machine qw(wait_quiet);
use Bench::Stack qw(mock_ctl pending_orders open_count wait_poller_done);
use Bench::Wrk qw(wrk);
use Ocdz::Test qw(wait_until);
use Time::HiRes qw(time);

sub name { 'busy' }

sub every_profile { 0 }

# cores each part used during a run, as one line
sub cores_line ($c) {
    return join '  ', map { sprintf '%s %.2f', $_->[1], $c->{ $_->[0] } // 0 }
        [nginx => 'nginx'], [pg => 'postgres'], [mock => 'mock'],
        [loadgen => 'wrk'], [others => 'others'], [steal => 'stolen'];
}

# reveals at a fixed rate, poller idle and poller busy
sub run ($class, $p, $s) {
    my ($pg, $ngx, $mock) = @$s{qw(pg ngx mock)};
    # no autovivification: the report reads "headline ran" from the key
    my $hr = $R{profiles}{$p}{headline};
    my $max = $hr ? median(map { $_->{module_32}{rps} }
                           @{ $hr->{rounds} // [] }) : undef;
    if (!$max) {
        say_step "$p: measuring the maximum reveal rate for the paced runs";
        $max = wrk(port => $ngx->port, conns => 32, what => 'module max')->{rps};
    }
    my $rate = $max / 2;
    my $delay = $C{paced_conns} * 1000 / $rate;
    my $b = $R{profiles}{$p}{busy} = { max => $max, rate => $rate,
        delay_ms => $delay, rounds => [] };
    mock_ctl($mock, 'POST', "/delay/$C{busy_delay}");
    for my $round (1 .. $C{runs}) {
        say_step "$p: poller idle/busy round $round of $C{runs}"
               . sprintf(' (%.0f req/s)', $rate);
        wait_poller_done($pg, 120);
        my $q = wait_quiet("$p poller idle/busy round $round");
        my %r = (quiet => $q);
        $r{idle} = wrk(port => $ngx->port, conns => $C{paced_conns},
                       delay_ms => sprintf('%.2f', $delay),
                       label => 'paced reveals', what => 'reveals, poller idle');
        say '    cores: ', cores_line($r{idle}{cpu});
        my $tag = substr(sprintf('b%015x', $round + 16 * time), 0, 16);
        pending_orders($pg, $C{pending}, $tag);
        # the poller claims at its next tick: wait until it is at work
        wait_until(sub {
            mock_ctl($mock, 'GET', '/stats')->{inflight}
                >= $C{workers} * $C{poller_conc} * 0.5
        }, timeout => 10, interval => 0.05);
        my $open0 = open_count($pg);
        $r{busy} = wrk(port => $ngx->port, conns => $C{paced_conns},
                       delay_ms => sprintf('%.2f', $delay),
                       what => 'reveals, poller busy');
        say '    cores: ', cores_line($r{busy}{cpu});
        $r{open_before} = $open0;
        $r{open_after} = open_count($pg);
        $r{checks_during} = $open0 - $r{open_after};
        $r{ratio} = $r{busy}{p99} / $r{idle}{p99};
        printf "    poller: %d orders done during the run, %d still open;"
             . " p99 busy/idle %.2f\n", $r{checks_during}, $r{open_after},
             $r{ratio};
        push @{ $b->{rounds} }, \%r;
        wait_poller_done($pg, 300)
            or push @{ $R{notes} }, "busy round $round: the poller did not "
                                  . 'finish within 300 s';
    }
    mock_ctl($mock, 'POST', "/delay/$C{poller_delay}");
}


sub _ratio ($bd) {
    return median(map { $_->{ratio} } @{ $bd->{rounds} });
}

sub targets ($class) {
    my $bd = $R{profiles}{ $PROFILES[0] }{busy};
    my $busy_ratio = $bd ? _ratio($bd) : undef;
    return (
        '| p99 with the poller busy ≤ 1.5 × idle | '
        . (defined $busy_ratio ? sprintf('%.2f ×', $busy_ratio) : '-')
        . ' | ' . met(defined $busy_ratio ? $busy_ratio <= 1.5 : undef) . ' |',
    );
}

sub report ($class) {
    my $d = $PROFILES[0];
    my $bd = $R{profiles}{$d}{busy};
    return () unless $bd && @{ $bd->{rounds} };
    my $busy_ratio = _ratio($bd);
    my @o;
    my @r = @{ $bd->{rounds} };
    push @o, "## 4. Reveals while the poller is busy (profile `$d`)", '',
        sprintf('Reveals paced at %.0f req/s (half of %.0f, the median '
        . 'maximum at 32 connections) over %d connections (a pause of '
        . '%.1f ms on average before each request). Busy: %d pending '
        . 'orders inserted, the mock answering each check after %d ms, '
        . 'the reveals measured once the poller has %d checks in '
        . 'flight.', $bd->{rate}, $bd->{max}, $C{paced_conns},
        $bd->{delay_ms}, $C{pending}, $C{busy_delay},
        $C{workers} * $C{poller_conc}), '',
        '| round | idle req/s | idle p50 | idle p99 | idle p99.9 | '
        . 'busy req/s | busy p50 | busy p99 | busy p99.9 | orders '
        . 'finished during the busy run | p99 busy / idle |',
        '|---|---|---|---|---|---|---|---|---|---|---|';
    my $i = 0;
    for my $x (@r) {
        $i++;
        push @o, "| $i | " . join(' | ', f0($x->{idle}{rps}),
            ms($x->{idle}{p50}), ms($x->{idle}{p99}),
            ms($x->{idle}{p999}), f0($x->{busy}{rps}),
            ms($x->{busy}{p50}), ms($x->{busy}{p99}),
            ms($x->{busy}{p999}), $x->{checks_during},
            sprintf('%.2f', $x->{ratio})) . ' |';
    }
    push @o, '| median | ' . join(' | ',
        f0(median(map { $_->{idle}{rps} } @r)),
        ms(median(map { $_->{idle}{p50} } @r)),
        ms(median(map { $_->{idle}{p99} } @r)),
        ms(median(map { $_->{idle}{p999} } @r)),
        f0(median(map { $_->{busy}{rps} } @r)),
        ms(median(map { $_->{busy}{p50} } @r)),
        ms(median(map { $_->{busy}{p99} } @r)),
        ms(median(map { $_->{busy}{p999} } @r)),
        f0(median(map { $_->{checks_during} } @r)),
        sprintf('%.2f', $busy_ratio)) . ' |', '';
    push @o, 'Cores used during each run (of ' . ($R{machine}{cores} // '?')
        . '), poller idle → busy; "stolen" is CPU time the virtual '
        . "machine's host took:", '',
        '| round | nginx | PostgreSQL | mock | wrk | stolen |',
        '|---|---|---|---|---|---|';
    $i = 0;
    for my $x (@r) {
        $i++;
        push @o, "| $i | " . join(' | ', map {
            my $k = $_;
            sprintf('%.2f → %.2f', $x->{idle}{cpu}{$k} // 0,
                    $x->{busy}{cpu}{$k} // 0)
        } qw(nginx pg mock loadgen steal)) . ' |';
    }
    push @o, '';
    return @o;
}

1;

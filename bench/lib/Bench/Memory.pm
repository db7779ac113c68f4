package Bench::Memory;

# Section 6 of RESULTS.md (first profile): the workers' RSS before and
# after a million reveals and a hundred thousand checks run together;
# the target "growth < 1 MB".

use v5.36;
use List::Util qw(max min);
use Bench::Common;
use Bench::Machine qw(wait_quiet);
use Bench::Stack qw(mock_ctl worker_rss pending_orders wait_poller_done);
use Bench::Wrk qw(wrk);
use Time::HiRes qw(time sleep);

sub name { 'memory' }

sub every_profile { 0 }

sub run ($class, $p, $s) {
    my ($pg, $ngx, $mock) = @$s{qw(pg ngx mock)};
    my $m = $R{profiles}{$p}{memory} = {};
    mock_ctl($mock, 'POST', "/delay/$C{poller_delay}");
    wait_poller_done($pg, 120);
    say_step "$p: memory: $C{mem_reveals} reveals and $C{mem_checks} checks";
    wait_quiet("$p memory");
    $m->{before} = worker_rss($ngx);
    $m->{workers} = [sort { $a <=> $b } keys %{ $m->{before} }];
    printf "    worker RSS before: %s\n",
           join(', ', map { "$m->{before}{$_} kB" } @{ $m->{workers} });

    # the checks, worked through while the reveals run
    my $c0 = mock_ctl($mock, 'GET', '/stats')->{requests};
    my $t0 = time;
    pending_orders($pg, $C{mem_checks},
                   substr(sprintf('d%015x', 16 * time), 0, 16));

    my $reveals = 0;
    my $errors = 0;
    my $chunk = max(5, min(30, $C{duration} * 3));
    while ($reveals < $C{mem_reveals}) {
        my $w = wrk(port => $ngx->port, conns => 32, duration => $chunk,
                    what => 'memory run reveals');
        $reveals += $w->{requests};
        $errors += $w->{errors};
        printf "    %d of %d reveals, %d of %d checks\n", $reveals,
               $C{mem_reveals},
               mock_ctl($mock, 'GET', '/stats')->{requests} - $c0,
               $C{mem_checks};
    }
    wait_poller_done($pg, 900) or die "the poller did not finish\n";
    $m->{secs} = time - $t0;
    $m->{reveals} = $reveals;
    $m->{reveal_errors} = $errors;
    $m->{checks} = mock_ctl($mock, 'GET', '/stats')->{requests} - $c0;
    sleep 2;
    $m->{after} = worker_rss($ngx);
    $m->{growth_kb} = max(map { ($m->{after}{$_} // 0) - $m->{before}{$_} }
                          @{ $m->{workers} });
    printf "    worker RSS after: %s; largest growth %d kB\n",
           join(', ', map { ($m->{after}{$_} // '?') . ' kB' }
                      @{ $m->{workers} }), $m->{growth_kb};
}

sub targets ($class) {
    my $md = $R{profiles}{ $PROFILES[0] }{memory};
    my $growth;
    $growth = $md->{growth_kb} if $md && defined $md->{growth_kb};
    return (
        '| worker RSS growth < 1 MB over the memory run | '
        . (defined $growth ? "$growth kB" : '-') . ' | '
        . met(defined $growth ? $growth < 1024 : undef) . ' |',
    );
}

sub report ($class) {
    my $d = $PROFILES[0];
    my $md = $R{profiles}{$d}{memory};
    return () unless $md && $md->{after};
    my @o;
    push @o, "## 6. Memory (profile `$d`)", '',
        "Worker RSS (VmRSS) after everything above (the warm-up), then "
        . "after $md->{reveals} more reveals ($md->{reveal_errors} "
        . "errors) and $md->{checks} more checks, run together in "
        . sprintf('%.0f s.', $md->{secs}) . (($C{mem_reveals} != 1000000
        || $C{mem_checks} != 100000) ? " **Reduced counts** "
        . "(BENCH_MEM_REVEALS=$C{mem_reveals}, BENCH_MEM_CHECKS="
        . "$C{mem_checks})." : ''), '',
        '| worker | before (kB) | after (kB) | growth (kB) |',
        '|---|---|---|---|';
    for my $w (@{ $md->{workers} }) {
        push @o, "| $w | $md->{before}{$w} | "
            . ($md->{after}{$w} // 'gone') . ' | '
            . (defined $md->{after}{$w}
               ? $md->{after}{$w} - $md->{before}{$w} : '-') . ' |';
    }
    push @o, '';
    return @o;
}

1;

package Bench::Poller;

# Section 5 of RESULTS.md (first profile): how fast the poller works
# through thousands of pending orders against its bound (checks in
# flight × 1000 / the mock's answer time), beside the mock driven alone
# by wrk; the target "≥ 80% of its concurrency bound".

use v5.36;
use Bench::Common;
use Bench::Machine qw(wait_quiet cpu_of);
use Bench::Stack qw(mock_ctl pending_orders wait_poller_done);
use Ocdz::Test qw(run_cmd wait_until write_file);
use Time::HiRes qw(time);

sub name { 'poller' }

sub every_profile { 0 }

# poller throughput against its concurrency bound; the mock alone first
sub run ($class, $p, $s) {
    my ($pg, $mock) = @$s{qw(pg mock)};
    my $conc = $C{workers} * $C{poller_conc};
    my $bound = $conc * 1000 / $C{poller_delay};
    my $pp = $R{profiles}{$p}{poller} = { bound => $bound, rounds => [],
        conc => $conc, delay => $C{poller_delay} };
    mock_ctl($mock, 'POST', "/delay/$C{poller_delay}");
    wait_poller_done($pg, 120);

    say_step "$p: the mock alone, $conc connections, $C{poller_delay} ms";
    wait_quiet("$p mock alone");
    my $ids = "$R{dir}/mock-ids.lua";
    write_file($ids, <<'EOF');
local n = 0
function setup(thread) thread:set("base", math.random(1, 2^20) * 2^20) end
function request()
   n = n + 1
   return wrk.format("GET", string.format("/v3/internet/check-id/%024x",
                                          base + n))
end
EOF
    my @cmd = ('wrk', '-t', $C{threads}, '-c', $conc, '-d',
               "$C{duration}s", '-s', $ids, $mock->{base});
    note_cmd('mock alone', @cmd);
    my $t0 = [cpu_of($mock->{pid})];
    my ($rc, $out, $err) = run_cmd(\@cmd, timeout => $C{duration} + 60);
    die "wrk (mock) failed: $err\n" if $rc;
    my ($rps) = $out =~ /^Requests\/sec:\s*([\d.]+)/m;
    my $cpu = (cpu_of($mock->{pid}) - $t0->[0]) / $C{duration};
    $pp->{mock_alone} = { rps => 0 + $rps, cpu => $cpu };
    printf "    mock alone: %.0f req/s (bound %.0f), mock CPU %.0f%% of a "
         . "core\n", $rps, $bound, 100 * $cpu;

    for my $round (1 .. $C{runs}) {
        say_step "$p: poller throughput round $round of $C{runs}";
        wait_poller_done($pg, 120);
        my $q = wait_quiet("$p poller round $round");
        my $tag = substr(sprintf('c%015x', $round + 16 * time), 0, 16);
        my $mock_cpu0 = cpu_of($mock->{pid});
        my $m0 = mock_ctl($mock, 'GET', '/stats')->{requests};
        my $t_insert = time;
        pending_orders($pg, $C{pending}, $tag);
        my $t_inserted = time;
        my $t_first;
        wait_until(sub {
            return 0 if mock_ctl($mock, 'GET', '/stats')->{requests} == $m0;
            $t_first = time;
        }, timeout => 10, interval => 0.01);
        wait_poller_done($pg, 600) or die "the poller did not finish\n";
        my ($first_db, $last_db, $n, $done) = @{ ($pg->psql(<<"EOF"))[0] };
SELECT extract(epoch FROM min(fulfilled_at)), extract(epoch FROM max(fulfilled_at)),
       count(*), count(*) FILTER (WHERE status = 'FULFILLED')
FROM ocdz.orders WHERE topup_id LIKE '%$tag';
EOF
        my $checks = mock_ctl($mock, 'GET', '/stats')->{requests} - $m0;
        my $secs = $last_db - ($t_first // $t_inserted);
        my %r = (quiet => $q, orders => $n, fulfilled => $done,
                 checks => $checks, secs => $secs,
                 from_insert => $last_db - $t_insert,
                 rate => $n / $secs,
                 mock_cpu => (cpu_of($mock->{pid}) - $mock_cpu0) / $secs);
        $r{of_bound} = $r{rate} / $bound;
        $r{of_mock} = $r{rate} / $pp->{mock_alone}{rps};
        printf "    %d orders (%d fulfilled, %d checks) in %.2f s from the "
             . "first check: %.0f/s, %.0f%% of the bound, %.0f%% of the "
             . "mock alone\n", $n, $done, $checks, $secs, $r{rate},
             100 * $r{of_bound}, 100 * $r{of_mock};
        push @{ $pp->{rounds} }, \%r;
    }
}

sub _ratio ($pd) {
    return median(map { $_->{of_bound} } @{ $pd->{rounds} });
}

sub targets ($class) {
    my $pd = $R{profiles}{ $PROFILES[0] }{poller};
    my $poll_ratio = $pd ? _ratio($pd) : undef;
    return (
        '| poller ≥ 80% of its concurrency bound | ' . pct($poll_ratio)
        . ' | ' . met(defined $poll_ratio ? $poll_ratio >= 0.8 : undef) . ' |',
    );
}

sub report ($class) {
    my $d = $PROFILES[0];
    my $pd = $R{profiles}{$d}{poller};
    return () unless $pd && @{ $pd->{rounds} };
    my $poll_ratio = _ratio($pd);
    my @o;
    my @r = @{ $pd->{rounds} };
    push @o, "## 5. Poller throughput (profile `$d`)", '',
        sprintf('%d pending orders; %d workers × %d checks in flight = '
        . '%d; the mock answers FULFILLED after %d ms, so the bound is '
        . '%d × 1000 / %d = **%.0f checks/s**. The mock alone, driven by '
        . 'wrk with the same %d connections: **%.0f req/s** using %.0f%% '
        . 'of a core: it is not the bottleneck.', $C{pending},
        $C{workers}, $C{poller_conc}, $pd->{conc}, $pd->{delay},
        $pd->{conc}, $pd->{delay}, $pd->{bound}, $pd->{conc},
        $pd->{mock_alone}{rps}, 100 * $pd->{mock_alone}{cpu}), '',
        'Time runs from the first check the mock sees to the last card '
        . 'stored (`max(fulfilled_at)`).', '',
        '| round | orders | fulfilled | checks | seconds | from the '
        . 'insert | orders/s | of the bound | of the mock alone | mock '
        . 'CPU |', '|---|---|---|---|---|---|---|---|---|---|';
    my $i = 0;
    for my $x (@r) {
        $i++;
        push @o, "| $i | $x->{orders} | $x->{fulfilled} | $x->{checks} | "
            . f2($x->{secs}) . ' | ' . f2($x->{from_insert}) . ' | '
            . f0($x->{rate}) . ' | ' . pct($x->{of_bound}) . ' | '
            . pct($x->{of_mock}) . ' | ' . pct($x->{mock_cpu}) . ' |';
    }
    push @o, '| median | | | | ' . f2(median(map { $_->{secs} } @r))
        . ' | ' . f2(median(map { $_->{from_insert} } @r)) . ' | '
        . f0(median(map { $_->{rate} } @r)) . ' | ' . pct($poll_ratio)
        . ' | ' . pct(median(map { $_->{of_mock} } @r)) . ' | |', '';
    return @o;
}

1;

package Bench::Status;

# Section 7 of RESULTS.md (first profile): what ocdz_status costs the
# reveals. Each round runs reveals twice at 32 connections: with no
# ocdz_status location at all (no zone: the hooks return at once), and
# with one scraped every second meanwhile (the counters' atomics, the
# per-worker gauges, a scrape a second); the order alternates between
# rounds. The target: "reveals with the status location scraped every
# second ≥ 98% of reveals without it". The stack runs without the
# location otherwise (STATUS empty), so the other sections are as they
# were.

use v5.36;
use POSIX ();
use Bench::Common;
use Bench::Machine qw(wait_quiet);
use Bench::Wrk qw(wrk);
use Ocdz::Test::HTTP qw(http_request);
use Time::HiRes qw(time sleep);

sub name { 'status' }

sub every_profile { 0 }

my $LOCATION = 'location = /ocdz-status { ocdz_status; '
             . 'allow 127.0.0.1; deny all; }';

# a child scraping the location every second; returns its pid
sub scraper ($port) {
    my $pid = fork // die "fork: $!\n";
    return $pid if $pid;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    while (1) {
        my $t = time;
        eval { http_request('GET', '/ocdz-status', port => $port,
                            timeout => 5) };
        sleep(1 - (time - $t)) if time - $t < 1;
    }
}

sub configure ($ngx, $status) {
    $ngx->reload(vars => { STATUS => $status ? $LOCATION : '' },
                 timeout => 30) or die "reload failed\n";
    # the new workers' connections: a short run before measuring
    wrk(port => $ngx->port, conns => 32, duration => 3,
        what => 'warm-up after reload');
}

sub run ($class, $p, $s) {
    my $ngx = $s->{ngx};
    my $st = $R{profiles}{$p}{status} = { rounds => [] };
    for my $round (1 .. $C{runs}) {
        say_step "$p: status location scraped or absent, round $round "
               . "of $C{runs}";
        my $q = wait_quiet("$p status round $round");
        my %r = (quiet => $q);
        my @order = $round % 2 ? (0, 1) : (1, 0);
        for my $with (@order) {
            configure($ngx, $with);
            my $pid = $with ? scraper($ngx->port) : undef;
            $r{ $with ? 'with' : 'without' } = wrk(port => $ngx->port,
                conns => 32, label => $with ? 'reveals, status scraped'
                                            : 'reveals, no status',
                what => $with ? 'reveals, status scraped every 1 s'
                              : 'reveals, no ocdz_status');
            if ($pid) {
                kill 'TERM', $pid;
                waitpid $pid, 0;
            }
        }
        $r{ratio} = $r{with}{rps} / $r{without}{rps};
        printf "    scraped / absent: %.1f%%\n", 100 * $r{ratio};
        push @{ $st->{rounds} }, \%r;
    }
    configure($ngx, 0);
}

sub _ratio ($st) {
    return median(map { $_->{ratio} } @{ $st->{rounds} });
}

sub targets ($class) {
    my $st = $R{profiles}{ $PROFILES[0] }{status};
    my $r = $st && @{ $st->{rounds} } ? _ratio($st) : undef;
    return (
        '| reveals with the status location scraped every second ≥ 98% '
        . 'of reveals without it (32 connections) | '
        . (defined $r ? sprintf('%.1f%%', 100 * $r) : '-') . ' | '
        . met(defined $r ? $r >= 0.98 : undef) . ' |',
    );
}

sub report ($class) {
    my $d = $PROFILES[0];
    my $st = $R{profiles}{$d}{status};
    return () unless $st && @{ $st->{rounds} };
    my @r = @{ $st->{rounds} };
    my @o = ("## 7. Reveals with the status location (profile `$d`)", '',
        'Reveals at 32 connections with no `ocdz_status` location (no '
        . 'zone, the hooks return at once) and with one scraped every '
        . 'second during the run (a reload between the two, then a 3 s '
        . 'warm-up; the order alternates between rounds).', '',
        '| round | absent req/s | absent p99 | scraped req/s | scraped p99 '
        . '| scraped / absent |', '|---|---|---|---|---|---|');
    my $i = 0;
    for my $x (@r) {
        $i++;
        push @o, "| $i | " . join(' | ', f0($x->{without}{rps}),
            ms($x->{without}{p99}), f0($x->{with}{rps}),
            ms($x->{with}{p99}), sprintf('%.1f%%', 100 * $x->{ratio}))
            . ' |';
    }
    push @o, '| median | ' . join(' | ',
        f0(median(map { $_->{without}{rps} } @r)),
        ms(median(map { $_->{without}{p99} } @r)),
        f0(median(map { $_->{with}{rps} } @r)),
        ms(median(map { $_->{with}{p99} } @r)),
        sprintf('%.1f%%', 100 * _ratio($st))) . ' |', '';
    return @o;
}

1;

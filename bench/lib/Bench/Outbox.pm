package Bench::Outbox;

# Section 8 of RESULTS.md (first profile): the delivery outbox (issue
# 15), two measurements against a local receiver (bench/receiver.py, one
# process for the webhook and the SMS gateway, plain HTTP on loopback).
#
# (a) Reveals at 32 connections while the outbox sends at its full rate
#     (the receiver answering at once, tens of thousands of webhook and
#     SMS rows due, so the sender never runs dry), against the same with
#     `ocdz_outbox off` (the rows due, nobody sending); the order
#     alternates between rounds. Target: ≥ 90% of the reveals without.
#     The sender yields to the reveals by its default ocdz_outbox_yield,
#     or BENCH_OUTBOX_YIELD (0: it never yields).
#     Each SMS opens its stored card, renders the text and is audited
#     (CARD_DELIVERED), as in production.
# (b) The sender alone against its bound: the receiver answers after
#     BENCH_OUTBOX_DELAY ms [20], and the sender runs with
#     ocdz_outbox_concurrency 1, 8, 32 (BENCH_OUTBOX_CONC); its rate
#     (deliveries the receiver answered a second, over BENCH_DURATION s
#     once it runs) against workers × concurrency × 1000 / delay.
#
# Select it alone with BENCH_SECTIONS=outbox BENCH_PROFILES=defaults
# (the stack is still set up: PostgreSQL, the data, the mock, nginx).
# The seeded orders queued their outbox rows when they were inserted
# (the triggers of sql/ocdz.sql); this section gives them phones and
# adds webhook rows of every event, and sets rows back to pending
# between runs while no worker sends. The section runs last: it leaves
# the orders with phones and more audit rows.

use v5.36;
use Bench::Common;
use Bench::Machine qw(wait_quiet cpu_snapshot cpu_delta);
use Bench::Stack qw(mock_ctl);
use Bench::Wrk qw(wrk);
use Ocdz::Test qw(wait_until write_file slurp json_decode random_hex);
use Time::HiRes qw(time sleep);

sub name { 'outbox' }

sub every_profile { 0 }

my $DELAY = env_num('BENCH_OUTBOX_DELAY', 20);
my @CONC = split /,/, $ENV{BENCH_OUTBOX_CONC} // '1,8,32';
my $YIELD = $ENV{BENCH_OUTBOX_YIELD};     # (a): ocdz_outbox_yield, or its
                                          # default

sub start_receiver ($dir) {
    my $ready = "$dir/receiver.ready";
    unlink $ready;
    my $pid = spawn("$dir/receiver.log", {}, $PY, "$BENCH/receiver.py",
                    '--ready-file', $ready);
    unshift @STOP, sub { stop_group($pid) };
    wait_until(sub { -f $ready }, timeout => 20)
        or die "receiver did not start:\n" . slurp("$dir/receiver.log");
    # its CPU counted apart in every run (the peer, not the module)
    $R{pids}{receiver} = $pid;
    return { %{ json_decode(slurp($ready)) }, pid => $pid };
}

# the http-level directives: off (''), or the outbox on, sending to the
# receiver; sms => 0 leaves the SMS rows alone (skipped if due)
sub outbox_conf ($recv, %o) {
    my $dir = $R{dir};
    my $url = "http://127.0.0.1:$recv->{port}";
    my $c = "ocdz_outbox on; ocdz_outbox_concurrency $o{conc}; "
          . "ocdz_webhook_url $url/hook; "
          . "ocdz_webhook_secret_file $dir/webhook.secret;";
    $c .= " ocdz_outbox_yield $YIELD;" if defined $YIELD;
    $c .= " ocdz_sms_gateway_url $url/sms; ocdz_sms_gateway_body json "
        . q('{"to":"{to}","text":"{message}","ref":"{idempotency_key}"}';)
        if $o{sms};
    return $c;
}

sub configure ($ngx, $outbox) {
    $ngx->reload(vars => { OUTBOX => $outbox }, timeout => 30)
        or die "reload failed\n";
}

# the rows the runs use: every order a phone, webhook rows of every
# event; email rows out of the way (no SMTP server here)
sub prepare ($pg) {
    $pg->psql(<<'EOF');
UPDATE ocdz.orders SET phone = '+21355' || lpad((abs(hashtext(topup_id))
    % 10000000)::text, 7, '0') WHERE status = 'FULFILLED';
INSERT INTO ocdz.outbox (topup_id, channel, event, subject)
SELECT o.topup_id, 'webhook', e.event, e.subject
FROM ocdz.orders o,
     (VALUES ('order.fulfilled', ''), ('order.refunded', ''),
             ('order.error', ''), ('delivery.sent', 'email'),
             ('delivery.sent', 'sms'), ('delivery.failed', 'email'),
             ('delivery.failed', 'sms')) AS e(event, subject)
WHERE o.status = 'FULFILLED'
ON CONFLICT DO NOTHING;
UPDATE ocdz.outbox SET state = 'skipped', last_error = 'bench'
WHERE channel = 'email';
EOF
}

# rows back to pending, due now (no worker may be sending: outbox off);
# $where picks them, the others due are parked as skipped (not sent: an
# email or SMS "sent" would be audited by the trigger)
sub reset_rows ($pg, $where) {
    $pg->psql(<<"EOF");
UPDATE ocdz.outbox SET state = 'skipped', lease_token = NULL,
    lease_owner = NULL, lease_until = NULL
WHERE state IN ('pending', 'sending');
UPDATE ocdz.outbox SET state = 'pending', attempts = 0,
    next_attempt_at = now(), lease_token = NULL, lease_owner = NULL,
    lease_until = NULL, sent_at = NULL, last_error = NULL
WHERE $where;
EOF
    $pg->psql('VACUUM ANALYZE ocdz.outbox');
    return $pg->value("SELECT count(*) FROM ocdz.outbox "
                      . "WHERE state = 'pending'");
}

sub outbox_counts ($pg) {
    my ($r) = $pg->psql(q{SELECT now()::text,
        count(*) FILTER (WHERE state = 'pending'),
        count(*) FILTER (WHERE state = 'failed')
        FROM ocdz.outbox});
    return { at => $r->[0], pending => 0 + $r->[1], failed => 0 + $r->[2] };
}

sub run ($class, $p, $s) {
    my ($pg, $ngx) = @$s{qw(pg ngx)};
    my $o = $R{profiles}{$p}{outbox} = { reveals => [], rate => [],
        delay => $DELAY, conc => [@CONC] };
    write_file("$R{dir}/webhook.secret", 'whsec_' . random_hex(16), 0600);
    my $recv = start_receiver($R{dir});
    say_step "$p: outbox: phones and webhook rows for the seeded orders";
    prepare($pg);

    # (a) reveals with the outbox at full rate, and off
    mock_ctl($recv, 'POST', '/delay/0');
    my $on = outbox_conf($recv, conc => 8, sms => 1);
    for my $round (1 .. $C{runs}) {
        say_step "$p: reveals with the outbox sending or off, round "
               . "$round of $C{runs}";
        my %r = (quiet => wait_quiet("$p outbox reveals round $round"));
        for my $with ($round % 2 ? (1, 0) : (0, 1)) {
            configure($ngx, '');
            $r{due} = reset_rows($pg, "channel IN ('webhook', 'sms')");
            configure($ngx, $with ? $on : '');
            # the new workers' connections, the sender started
            wrk(port => $ngx->port, conns => 32, duration => 3,
                what => 'warm-up after reload');
            my $c0 = outbox_counts($pg);
            my $r0 = mock_ctl($recv, 'GET', '/stats');
            my $x = wrk(port => $ngx->port, conns => 32,
                label => $with ? 'reveals, outbox sending'
                               : 'reveals, outbox off',
                what => $with ? 'reveals, outbox at full rate'
                              : 'reveals, ocdz_outbox off');
            my $r1 = mock_ctl($recv, 'GET', '/stats');
            my $c1 = outbox_counts($pg);
            $x->{sent} = $pg->value('SELECT count(*) FROM ocdz.outbox '
                . "WHERE sent_at >= '$c0->{at}' AND sent_at <= '$c1->{at}'");
            $x->{answered} = $r1->{requests} - $r0->{requests};
            $x->{send_rate} = $x->{answered} / ($x->{duration_us} / 1e6);
            $x->{pending_end} = $c1->{pending};
            $x->{failed} = $c1->{failed};
            printf "    %-28s %d deliveries answered (%.0f/s), %d rows "
                 . "still due at the end\n", '', $x->{answered},
                 $x->{send_rate}, $x->{pending_end} if $with;
            printf "    %-28s cores: nginx %.2f, PostgreSQL %.2f, "
                 . "receiver %.2f, wrk %.2f\n", '',
                 map { $x->{cpu}{$_} // 0 } qw(nginx pg receiver loadgen);
            $r{ $with ? 'with' : 'without' } = $x;
        }
        $r{ratio} = $r{with}{rps} / $r{without}{rps};
        printf "    outbox sending / off: %.1f%%\n", 100 * $r{ratio};
        push @{ $o->{reveals} }, \%r;
    }

    # (b) the sender's rate against its bound
    mock_ctl($recv, 'POST', "/delay/$DELAY");
    for my $round (1 .. $C{runs}) {
        say_step "$p: the sender's rate, receiver answering after "
               . "$DELAY ms, round $round of $C{runs}";
        my %r = (quiet => wait_quiet("$p outbox rate round $round"));
        for my $conc (@CONC) {
            my $bound = $C{workers} * $conc * 1000 / $DELAY;
            # enough for the run at the bound, and the ramp
            my $n = int($bound * ($C{duration} + 8)) + 100;
            configure($ngx, '');
            my $due = reset_rows($pg, "id IN (SELECT id FROM ocdz.outbox "
                . "WHERE channel = 'webhook' ORDER BY id LIMIT $n)");
            mock_ctl($recv, 'POST', '/reset');
            configure($ngx, outbox_conf($recv, conc => $conc, sms => 0));
            # running: the first answers in, then the window
            wait_until(sub { mock_ctl($recv, 'GET', '/stats')->{requests}
                             >= 2 * $conc }, timeout => 30);
            sleep 1;
            my $c0 = cpu_snapshot();
            my $s0 = mock_ctl($recv, 'GET', '/stats');
            my $t0 = time;
            sleep $C{duration};
            my $s1 = mock_ctl($recv, 'GET', '/stats');
            my $t1 = time;
            my $cpu = cpu_delta($c0, cpu_snapshot());
            my $left = outbox_counts($pg)->{pending};
            my $rate = ($s1->{requests} - $s0->{requests}) / ($t1 - $t0);
            $r{$conc} = { rate => $rate, bound => $bound, due => $due,
                          left => $left, max_inflight => $s1->{max_inflight},
                          cpu => $cpu };
            printf "    concurrency %2d: %6.0f deliveries/s, bound %5.0f: "
                 . "%3.0f%%; at most %d in flight at the receiver; %d rows "
                 . "still due\n", $conc, $rate, $bound, 100 * $rate / $bound,
                 $s1->{max_inflight}, $left;
            push @{ $R{notes} }, "outbox rate, concurrency $conc, round "
                . "$round: the rows ran out before the end of the window"
                unless $left > 0;
        }
        push @{ $o->{rate} }, \%r;
    }
    configure($ngx, '');
    note_cmd('outbox receiver', $PY, 'bench/receiver.py', '--ready-file',
             'F');
}

sub _ratio ($o) { median(map { $_->{ratio} } @{ $o->{reveals} }) }

sub _rate ($o, $conc) { median(map { $_->{$conc}{rate} } @{ $o->{rate} }) }

sub targets ($class) {
    my $o = $R{profiles}{ $PROFILES[0] }{outbox};
    my $r = $o && @{ $o->{reveals} } ? _ratio($o) : undef;
    my @t = ('| reveals with the outbox sending at its full rate ≥ 90% of '
        . 'reveals with `ocdz_outbox off` (32 connections) | '
        . (defined $r ? sprintf('%.1f%%', 100 * $r) : '-') . ' | '
        . met(defined $r ? $r >= 0.9 : undef) . ' |');
    if ($o && @{ $o->{rate} }) {
        push @t, '| (for information) the sender\'s rate against its bound '
            . "(receiver answering after $o->{delay} ms), concurrency "
            . join(', ', @{ $o->{conc} }) . ' | ' . join(', ', map {
                pct(_rate($o, $_) / $o->{rate}[0]{$_}{bound}) }
                @{ $o->{conc} }) . ' | information |';
    }
    return @t;
}

sub report ($class) {
    my $d = $PROFILES[0];
    my $o = $R{profiles}{$d}{outbox};
    return () unless $o && (@{ $o->{reveals} } || @{ $o->{rate} });
    my @out = ("## 8. The delivery outbox (profile `$d`)", '');
    if (my @r = @{ $o->{reveals} }) {
        push @out, '(a) Reveals at 32 connections while the outbox sends '
            . 'at its full rate (2 workers × `ocdz_outbox_concurrency 8`, '
            . 'the receiver answering at once; webhook and SMS rows due, '
            . 'every SMS opening its card, audited; `ocdz_outbox_yield '
            . ($YIELD // '100ms') . '`: while reveals use the database, '
            . 'leases at least so far apart) and with `ocdz_outbox '
            . 'off` (the same rows due, nobody sending). A reload between '
            . 'the two, then a 3 s warm-up; the order alternates between '
            . 'rounds. "Sent" is the deliveries the receiver answered '
            . 'during the run; "left" the rows still due at its end (the '
            . 'sender never ran dry while it is more than 0).', '',
            '| round | busy before | off req/s | off p99 | sending req/s '
            . '| sending p99 | sending / off | deliveries sent | per s '
            . '| left |', '|---|---|---|---|---|---|---|---|---|---|';
        my $i = 0;
        for my $x (@r) {
            $i++;
            push @out, "| $i | " . join(' | ', pct($x->{quiet}{busy}),
                f0($x->{without}{rps}), ms($x->{without}{p99}),
                f0($x->{with}{rps}), ms($x->{with}{p99}),
                sprintf('%.1f%%', 100 * $x->{ratio}), $x->{with}{answered},
                f0($x->{with}{send_rate}), $x->{with}{pending_end}) . ' |';
        }
        push @out, '| median | | ' . join(' | ',
            f0(median(map { $_->{without}{rps} } @r)),
            ms(median(map { $_->{without}{p99} } @r)),
            f0(median(map { $_->{with}{rps} } @r)),
            ms(median(map { $_->{with}{p99} } @r)),
            sprintf('%.1f%%', 100 * _ratio($o)), '',
            f0(median(map { $_->{with}{send_rate} } @r)), '') . ' |', '';
        push @out, 'Where the CPU went (cores, of ' . ($R{machine}{cores}
            // 2) . '; medians of the rounds): the receiver is the '
            . "storefront's and the gateway's work, not the module's.", '',
            '| run | nginx | PostgreSQL | receiver | wrk | others |',
            '|---|---|---|---|---|---|';
        for my $k (qw(without with)) {
            my $c = sub ($n) { f2(median(map { $_->{$k}{cpu}{$n} // 0 }
                                         @r)) };
            push @out, '| ' . ($k eq 'with' ? 'outbox sending' : 'outbox off')
                . ' | ' . join(' | ', map { $c->($_) }
                               qw(nginx pg receiver loadgen others)) . ' |';
        }
        push @out, '';
    }
    if (my @r = @{ $o->{rate} }) {
        push @out, "(b) The sender alone: the receiver answers every "
            . "request after $o->{delay} ms; the bound is workers × "
            . "concurrency × 1000 / $o->{delay}. The rate is the "
            . "deliveries the receiver answered a second over "
            . "$C{duration} s once the sender runs (each delivery: a "
            . 'signed webhook POST and its outcome written with the lease '
            . 'token).', '',
            '| concurrency | bound/s | ' . join(' | ', map { "round $_" }
                1 .. @r) . ' | median | of the bound |',
            '|---|---|' . ('---|' x @r) . '---|---|';
        for my $c (@{ $o->{conc} }) {
            my $b = $r[0]{$c}{bound};
            push @out, "| $c | " . f0($b) . ' | '
                . join(' | ', map { f0($_->{$c}{rate}) } @r) . ' | '
                . f0(_rate($o, $c)) . ' | ' . pct(_rate($o, $c) / $b)
                . ' |';
        }
        push @out, '';
    }
    return @out;
}

1;

# Reveals that reach the database together go as one statement and one
# commit (ocdz_db_batch): each still gets its own answer and its own
# audit row, values with quotes and braces survive the arrays, a reveal
# the database refuses fails alone, clients that leave mid-batch harm no
# one, and ocdz_db_batch 1 turns it off.

use v5.36;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();

my $env = card_env();
my $pg = $env->{pg};
my $dir = $env->{dir};
my $now = time;
my $secret = random_hex(32);
my $run = random_hex(4);
write_file("$dir/jwt.secret", "$secret\n", 0600);

my $jwt_loc = <<'EOF';
        location ~ "^/jwt/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session jwt;
            ocdz_jwt_secret_file %%DIR%%/jwt.secret;
        }
EOF

# One worker and one database connection: whatever arrives while it is
# busy waits, and goes in the next batch.
sub batch_nginx ($batch) {
    return card_nginx($env, nginx => { workers => 1 }, server => $jwt_loc,
                      http => "ocdz_db_pool_size 1; ocdz_db_batch $batch;");
}

# Sends every request on its own connection, all written before any
# answer is read, so that they reach nginx together. A request with
# close => 1 is abandoned right after it is written. Returns, in order,
# { status, headers, json } (undef for the abandoned).
sub burst ($ngx, @reqs) {
    my @socks = map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ngx->port,
                              Proto => 'tcp', Timeout => 10)
            or BAIL_OUT("connect: $!")
    } @reqs;
    for my $i (0 .. $#reqs) {
        my $r = $reqs[$i];
        my %h = %{ $r->{headers} // {} };
        $h{Authorization} = "Bearer $r->{token}" if defined $r->{token};
        my $head = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
        my $path = card_path($r->{id}, $r->{prefix} // '/api/internet-orders');
        syswrite $socks[$i], ($r->{method} // 'GET') . " $path HTTP/1.1\r\n"
            . "Host: localhost\r\nConnection: close\r\n$head\r\n";
    }
    my @out;
    for my $i (0 .. $#reqs) {
        my $s = $socks[$i];
        if ($reqs[$i]{close}) {
            close $s;
            push @out, undef;
            next;
        }
        my $r = raw_answer($s, $reqs[$i]{method} // 'GET', 20);
        push @out, { status => $r->{status}, headers => $r->{headers},
                     json => json_decode($r->{body}), body => $r->{body} };
    }
    return @out;
}

# The transactions that wrote the audit rows of a burst: each row's xmin
# is its transaction (pg_stat_database lags by up to a second).
sub transactions ($tag) {
    return $pg->value('SELECT count(DISTINCT xmin::text) || \' \' || count(*) '
        . "FROM ocdz.audit WHERE user_agent LIKE 'batch-$run-$tag-%'");
}

sub ua_rows ($ua) {
    return $pg->hashes('SELECT event, topup_id, user_id, user_agent '
        . 'FROM ocdz.audit WHERE user_agent = ' . sql_quote($ua));
}

# --- the data ---------------------------------------------------------------

my (%cards, %tok);
for my $u (qw(u1 u2 u3)) {
    $tok{$u} = $pg->add_session(random_token(), $u);
    for (1 .. 4) {
        my ($id, $code, $trans) = new_card($env, user => $u);
        push @{ $cards{$u} }, { id => $id, code => $code, trans => $trans };
    }
}
my $expired = $pg->add_session(random_token(), 'u1', expires_in => -60);
my $pending = new_order($env, user_id => 'u1', status => 'PENDING');
my $refunded = new_order($env, user_id => 'u2', status => 'REFUNDED',
                         refund_message => 'solde rembourse');

# Audit rows the test steers by User-Agent: "poison" is refused (its
# batch runs again one by one), "slow-S-..." sleeps S seconds.
audit_test_hook($pg);

# Every kind of answer, several times, interleaved: each request names
# itself in its User-Agent so its audit row can be found.
sub mixed_requests ($tag) {
    my @r;
    my $n = 0;
    for my $round (1 .. 3) {
        for my $u (qw(u1 u2 u3)) {
            my $other = $u eq 'u1' ? 'u2' : 'u1';
            my $c = $cards{$u}[$round % 4];
            push @r,
                { id => $c->{id}, token => $tok{$u}, want => 200,
                  code => $c->{code}, trans => $c->{trans}, user => $u },
                { id => $cards{$other}[0]{id}, token => $tok{$u}, want => 404,
                  error => 'ORDER_NOT_FOUND', user => $u },
                { id => $c->{id}, token => $tok{$u}, method => 'HEAD',
                  want => 200, user => $u };
        }
        push @r,
            { id => $pending, token => $tok{u1}, want => 409,
              error => 'ORDER_NOT_READY', user => 'u1' },
            { id => $refunded, token => $tok{u2}, want => 410,
              error => 'ORDER_REFUNDED', user => 'u2' },
            { id => $cards{u1}[1]{id}, token => random_token(), want => 401,
              error => 'SESSION_REQUIRED' },
            { id => $cards{u1}[1]{id}, token => $expired, want => 401,
              error => 'SESSION_REQUIRED' },
            { id => $cards{u3}[2]{id}, prefix => '/jwt', want => 200,
              token => jwt_hs256($secret, { sub => 'u3', exp => $now + 300 }),
              code => $cards{u3}[2]{code}, trans => $cards{u3}[2]{trans},
              user => 'u3' },
            { id => $cards{u2}[2]{id}, prefix => '/jwt', want => 404,
              token => jwt_hs256($secret, { sub => 'u3', exp => $now + 300 }),
              error => 'ORDER_NOT_FOUND', user => 'u3' };
    }
    for my $r (@r) {
        $r->{ua} = "batch-$run-$tag-" . $n++;
        $r->{headers} = { 'User-Agent' => $r->{ua} };
    }
    return @r;
}

sub check_answers ($what, $reqs, $answers) {
    my $bad = 0;
    for my $i (0 .. $#$reqs) {
        my ($q, $a) = ($reqs->[$i], $answers->[$i]);
        my $why;
        if ($a->{status} != $q->{want}) {
            $why = "status $a->{status}, want $q->{want}";
        } elsif (($q->{method} // 'GET') eq 'HEAD') {
            $why = 'HEAD has a body' if length $a->{body};
        } elsif ($q->{want} == 200) {
            my $j = $a->{json} // {};
            $why = 'wrong card' if ($j->{cardCode} // '') ne $q->{code};
            $why = 'wrong transaction'
                if ($j->{transactionNumber} // '') ne $q->{trans};
            $why = 'wrong order' if ($j->{topupId} // '') ne $q->{id};
        } else {
            $why = 'wrong error'
                if (($a->{json} // {})->{error} // '') ne $q->{error};
        }
        next unless $why;
        diag "$what: request $i ($q->{ua}, $q->{id}): $why";
        $bad++;
    }
    is($bad, 0, "$what: every one of " . @$reqs . ' answers is its own');
}

sub check_audit ($what, $reqs) {
    my $bad = 0;
    for my $q (@$reqs) {
        my @rows = ua_rows($q->{ua});
        my $want = ($q->{method} // 'GET') eq 'HEAD' || $q->{want} == 401
                 ? 0 : 1;
        my $why;
        if (@rows != $want) {
            $why = scalar(@rows) . " audit rows, want $want";
        } elsif ($want) {
            my $ev = $q->{want} == 200 ? 'CARD_REVEALED' : $q->{error};
            $why = "event $rows[0]{event}" if $rows[0]{event} ne $ev;
            $why = "top-up $rows[0]{topup_id}" if $rows[0]{topup_id} ne $q->{id};
            $why = "user $rows[0]{user_id}"
                if ($rows[0]{user_id} // '') ne $q->{user};
        }
        next unless $why;
        diag "$what: $q->{ua}: $why";
        $bad++;
    }
    is($bad, 0, "$what: each audit row names its own request, order "
       . 'and user; HEAD and 401 write none');
}

# --- batched ---------------------------------------------------------------

{
    my $ngx = batch_nginx(16);
    card_get($ngx, $cards{u1}[0]{id}, token => $tok{u1});   # connected

    my @reqs = mixed_requests('a');
    my @ans = burst($ngx, @reqs);
    check_answers('batched', \@reqs, \@ans);
    check_audit('batched', \@reqs);

    my ($xacts, $rows) = split ' ', transactions('a');
    ok($rows >= 20 && $xacts <= $rows / 3,
       "batched: $rows audited reveals in $xacts transactions");

    # the arrays carry quotes, backslashes, braces, commas and NULL words
    # as they are, and a missing User-Agent stays NULL
    my @odd = ('a"b', 'back\\slash', '{brace}', 'com,ma', 'NULL', 'null',
               "caf\x{e9} \x{627}", '"', '\\', '}', 'inner  spaces');
    my $id = $cards{u2}[1]{id};
    my @oreqs = map { { id => $id, token => $tok{u2}, want => 200,
                        code => $cards{u2}[1]{code},
                        trans => $cards{u2}[1]{trans},
                        headers => { 'User-Agent' => "$run $_" } } } @odd;
    utf8::encode($_->{headers}{'User-Agent'}) for @oreqs;
    push @oreqs, { id => $id, token => $tok{u2}, want => 200 };
    my $before = $pg->value("SELECT max(id) FROM ocdz.audit");
    @ans = burst($ngx, @oreqs);
    is(scalar(grep { $_->{status} == 200 } @ans), scalar @oreqs,
       'odd user agents: every reveal 200');
    my %got = map { ($_->[0] // "\0NULL") => 1 } $pg->psql(
        "SELECT user_agent FROM ocdz.audit WHERE id > $before");
    for my $o (@odd) {
        my $ua = "$run $o";
        utf8::encode($ua);
        ok($got{$ua}, "odd user agent stored as sent: '$o'");
    }
    ok($got{"\0NULL"}, 'no User-Agent: stored as NULL, not as a word');

    # clients that leave: every other request is abandoned once written
    my @lreqs = mixed_requests('leave');
    $lreqs[$_]{close} = 1 for grep { $_ % 2 } 0 .. $#lreqs;
    my $mark = $ngx->log_mark;
    @ans = burst($ngx, @lreqs);
    my @kept = grep { !$lreqs[$_]{close} } 0 .. $#lreqs;
    check_answers('with clients leaving', [@lreqs[@kept]], [@ans[@kept]]);
    my ($s) = card_get($ngx, $cards{u3}[0]{id}, token => $tok{u3});
    is($s, 200, 'after clients left mid-batch: still serving');
    unlike($ngx->error_log($mark), qr/\[(alert|crit|emerg)\]|signal \d+/,
           'after clients left mid-batch: no alert, no crash');

    # a reveal the database refuses: its batch runs again one by one
    my @preqs = mixed_requests('poison');
    my $k = int(@preqs / 2);
    $preqs[$k]{ua} = 'poison';
    $preqs[$k]{headers} = { 'User-Agent' => 'poison' };
    my $victim = $preqs[$k];
    $mark = $ngx->log_mark;
    @ans = burst($ngx, @preqs);
    my @rest = grep { $_ != $k } 0 .. $#preqs;
    # a 401 or HEAD writes no audit row: it cannot be refused
    my $refused = !(($victim->{method} // 'GET') eq 'HEAD'
                    || $victim->{want} == 401);
    if ($refused) {
        is($ans[$k]{status}, 500, 'the refused reveal: 500');
        is(($ans[$k]{json} // {})->{error}, 'INTERNAL_ERROR',
           'the refused reveal: INTERNAL_ERROR');
    }
    check_answers('a batch with a refused reveal', [@preqs[@rest]],
                  [@ans[@rest]]);
    check_audit('a batch with a refused reveal', [@preqs[@rest]]);
    like($ngx->error_log($mark), qr/batch of \d+ queries was refused/,
         'the refused batch is logged and run again one by one');

    $ngx->check_log_clean;
    $ngx->stop;
}

# --- ocdz_db_batch 1: one statement, one commit per reveal ------------------

{
    my $ngx = batch_nginx(1);
    card_get($ngx, $cards{u1}[0]{id}, token => $tok{u1});

    my @reqs = mixed_requests('one');
    my @ans = burst($ngx, @reqs);
    check_answers('ocdz_db_batch 1', \@reqs, \@ans);
    check_audit('ocdz_db_batch 1', \@reqs);
    my ($xacts, $rows) = split ' ', transactions('one');
    ok($rows >= 20 && $xacts == $rows,
       "ocdz_db_batch 1: $rows audited reveals in $xacts transactions");
    $ngx->check_log_clean;
    $ngx->stop;
}

# --- ocdz_db_batch_wait: a batch waits for the one running ----------------

# Sends one request on its own connection and returns the socket, the
# answer still to be read.
sub send_one ($ngx, $r) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ngx->port, Proto => 'tcp',
                                  Timeout => 10) or BAIL_OUT("connect: $!");
    my $path = card_path($r->{id}, '/api/internet-orders');
    syswrite $s, "GET $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\nAuthorization: Bearer $r->{token}\r\n"
        . "User-Agent: $r->{ua}\r\n\r\n";
    return $s;
}

# Reads the answers of the sockets given; returns for each its status,
# card and the time its answer was complete.
sub collect (@socks) {
    my %left = map { (fileno($socks[$_]) => $_) } 0 .. $#socks;
    my @buf = ('') x @socks;
    my @out;
    my $sel = IO::Select->new(@socks);
    my $deadline = time + 30 * slow_factor();
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(0.5)) {
            my $i = $left{fileno $s};
            my $n = sysread $s, my $chunk, 65536;
            if ($n) {
                $buf[$i] .= $chunk;
                next;
            }
            my $r = Ocdz::Test::HTTP::parse_response($buf[$i], 'GET');
            $out[$i] = { status => $r->{status}, at => time,
                         json => json_decode($r->{body}) // {} };
            $sel->remove($s);
            close $s;
        }
    }
    return @out;
}

# A reveal is slow in the database (its own audit row sleeps); five
# more come one by one while it runs, with a second connection idle.
sub wait_round ($wait, $sleep, $tag) {
    my $ngx = card_nginx($env, nginx => { workers => 1 },
        http => "ocdz_db_pool_size 2; ocdz_db_batch 16; "
                . "ocdz_db_batch_wait $wait;");
    card_get($ngx, $cards{u1}[0]{id}, token => $tok{u1});   # connected

    my $c = $cards{u2}[3];
    my $t0 = time;
    my $slow = send_one($ngx, { id => $c->{id}, token => $tok{u2},
                                ua => sprintf('slow-%.1f-%s', $sleep, $run) });
    select undef, undef, undef, 0.15;
    my @socks;
    for my $i (0 .. 4) {
        push @socks, send_one($ngx, { id => $c->{id}, token => $tok{u2},
                                      ua => "batch-$run-$tag-$i" });
        select undef, undef, undef, 0.04;
    }
    my @ans = collect($slow, @socks);
    my $s = shift @ans;
    my $bad = grep { !$_ || $_->{status} != 200
                     || ($_->{json}{cardCode} // '') ne $c->{code} } $s, @ans;
    is($bad, 0, "ocdz_db_batch_wait $wait: every reveal 200 with its card");
    $ngx->check_log_clean;
    $ngx->stop;
    return ($t0, $s, \@ans, split ' ', transactions($tag));
}

{
    # held until the slow one ends: one transaction for all five
    my ($t0, $s, $ans, $xacts, $rows) = wait_round('5s', 1.0, 'hold');
    is("$rows $xacts", '5 1',
       'ocdz_db_batch_wait 5s: five reveals arriving one by one while '
       . 'another runs share one transaction');
    ok(!grep({ $_->{at} < $s->{at} - 0.3 } @$ans),
       'ocdz_db_batch_wait 5s: they were held until the running one ended');

    # not held: each goes on the idle connection when it comes
    ($t0, $s, $ans, $xacts, $rows) = wait_round('0', 1.0, 'nohold');
    ok($rows == 5 && $xacts >= 3,
       "ocdz_db_batch_wait 0: $rows reveals in $xacts transactions");
    ok(!grep({ $_->{at} > $s->{at} - 0.3 } @$ans),
       'ocdz_db_batch_wait 0: none waited for the slow one');

    # never longer than the wait: answered long before the slow one
    ($t0, $s, $ans, $xacts, $rows) = wait_round('200ms', 3.0, 'short');
    my $last = (sort { $b <=> $a } map { $_->{at} } @$ans)[0];
    ok($s->{at} - $t0 > 2.5 && $last < $s->{at} - 1.5,
       sprintf('ocdz_db_batch_wait 200ms: held at most about that long '
               . '(last answer %.2f s, the slow one %.2f s)',
               $last - $t0, $s->{at} - $t0));
    ok($xacts < $rows, "ocdz_db_batch_wait 200ms: $rows reveals in $xacts "
       . 'transactions');
}

# --- nginx -t ------------------------------------------------------------------

for my $bad ('-1ms', 'soon') {
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, vars => { DIR => $dir },
        conf => card_conf(http => "ocdz_db_batch_wait $bad;"));
    my ($rc, $out) = $ngx->test_config;
    ok($rc, "ocdz_db_batch_wait $bad: refused by nginx -t");
    like($out, qr/ocdz_db_batch_wait/, "ocdz_db_batch_wait $bad: named");
}

for my $bad ('0', '257', 'many', '-1') {
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, vars => { DIR => $dir },
        conf => card_conf(http => "ocdz_db_batch $bad;"));
    my ($rc, $out) = $ngx->test_config;
    ok($rc, "ocdz_db_batch $bad: refused by nginx -t");
    like($out, qr/(between 1 and 256|invalid number)/,
         "ocdz_db_batch $bad: the message says what is allowed");
}

hygiene($env);

done_testing;

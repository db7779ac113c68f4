use v5.36;
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
require_module();

# The poller's write-backs and leases (issue 13): a write-back the
# database refuses inside a batch fails alone; a write-back that finds
# its order closed gives the lease back in the same statement, whatever
# becomes of the worker; a graceful shutdown gives back the leases of the
# checks it abandons, so that the next workers check those orders at
# once, not after ocdz_poller_lease.

my $pg   = Ocdz::Test::Pg->start(log_statement => 'none');
my $mock = Ocdz::Test::Mock->start;
my $dir  = tmpdir();
write_key_file("$dir/k1");

my $conf = <<'EOF2';
http {
    ocdz_db "%%PGCONNINFO%%";
    ocdz_card_key k1 %%DIR%%/k1;
    ocdz_api_base %%MOCK_BASE%%;
    ocdz_api_ca_file %%CA_FILE%%;
    ocdz_api_token_file %%TOKEN_FILE%%;
    ocdz_api_timeout 5s;
    ocdz_api_connect_timeout 1s;
    ocdz_poller on;
    ocdz_poller_interval 300ms;
    ocdz_poller_lease %%LEASE%%;
    ocdz_poller_concurrency 16;
    server { listen 127.0.0.1:%%PORT%%; location / { return 204; } }
}
EOF2

sub nginx (%v) {
    my $workers = delete $v{WORKERS} // 2;
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        workers => $workers, vars => { DIR => $dir, LEASE => '30s', %v },
        error_log_level => 'info', conf => $conf);
    $ngx->start;
    return $ngx;
}

sub insert (@ids) {
    $pg->psql(join '', map {
        "INSERT INTO ocdz.orders (topup_id, user_id, type, number, value) "
        . "VALUES ('$_', 'u', 'ADSL', '036362608', 1000);\n" } @ids);
}

sub in_list (@ids) { join ', ', map { "'$_'" } @ids }

sub count_where ($cond, @ids) {
    return $pg->value("SELECT count(*) FROM ocdz.orders WHERE topup_id IN ("
                      . in_list(@ids) . ") AND $cond");
}

# 1. One write-back of a batch refused: the others are stored, the
# refused one alone keeps its lease and is checked again once it expires
{
    $pg->psql('DELETE FROM ocdz.orders; DELETE FROM ocdz.audit');
    $mock->reset;
    my @ids = map { random_topup_id() } 1 .. 8;
    my ($first, $bad) = @ids[0, 3];
    $mock->set_order($_, status => 'FULFILLED') for @ids;
    # the first reply comes first and its write-back takes a second (the
    # poller's one connection): the others come meanwhile and wait for
    # it together, to go as one statement
    $mock->fault('delay', id => $first, delay_ms => 300);
    $mock->fault('delay', delay_ms => 800);
    $pg->psql(<<"SQL");
CREATE OR REPLACE FUNCTION public.refuse_one() RETURNS trigger
LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.topup_id = '$first' AND NEW.status = 'FULFILLED' THEN
        PERFORM pg_sleep(1.5);
    END IF;
    IF NEW.topup_id = '$bad' AND NEW.status = 'FULFILLED' THEN
        RAISE EXCEPTION 'this order may not be stored';
    END IF;
    RETURN NEW;
END \$\$;
CREATE TRIGGER refuse_one BEFORE UPDATE ON ocdz.orders
    FOR EACH ROW EXECUTE FUNCTION public.refuse_one();
SQL
    my $ngx = nginx(LEASE => '8s', WORKERS => 1);
    insert(@ids);
    my @good = grep { $_ ne $bad } @ids;
    ok(wait_until(sub { count_where("status = 'FULFILLED'", @good) == 7 },
                  timeout => 7),
       'refused in a batch: the 7 others stored');
    is($mock->request_count($bad), 1,
       '... while the refused one holds its first lease');
    is($pg->value("SELECT count(*) FROM ocdz.audit WHERE event = "
                  . "'CARD_STORED'"), 7, 'refused in a batch: 7 CARD_STORED');
    my $r = $pg->order($bad);
    is($r->{status}, 'PENDING', 'the refused one: nothing written');
    ok(defined $r->{lease_token}, 'the refused one: its lease is kept');
    ok(!defined $r->{card_enc}, 'the refused one: no card');
    my $log = $ngx->error_log;
    like($log, qr/batch of \d+ queries was refused, running them one by one/,
         'the pool ran the refused batch again query by query');
    my @refused = $log =~ /the database refused the write-back statement/g;
    is(scalar @refused, 1, 'the refusal logged once');
    my $code = $mock->order($bad)->{card_code};
    ok(index($log, $code) < 0, 'no card code in the log');
    my $n = $mock->request_count($bad);
    ok(wait_until(sub { $mock->request_count($bad) > $n }, timeout => 15),
       'the refused one: checked again once its lease expired');
    is($pg->order($bad)->{status}, 'PENDING', '... and still not stored');
    $ngx->stop;
    $pg->psql('DROP TRIGGER refuse_one ON ocdz.orders');
}

# 2. A write-back finds its order closed meanwhile, and the worker is
# gone before it knows: the statement itself gave the lease back
{
    $pg->psql('DELETE FROM ocdz.orders; DELETE FROM ocdz.audit');
    $mock->reset;
    # one order: a second write-back statement would wait for the one
    # waiting on the rows (the poller's share of the pool), and a
    # stopped worker never sends it
    my @ids = (random_topup_id());
    $mock->set_order($_, status => 'FULFILLED') for @ids;
    $mock->fault('delay', delay_ms => 2500);
    my $ngx = nginx(WORKERS => 1);
    insert(@ids);
    ok(wait_until(sub { !grep { $mock->request_count($_) == 0 } @ids }),
       'closed, worker gone: checks started');
    # support staff close them, and hold the rows while the replies come:
    # the write-backs wait for the rows, then find the orders closed
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $pg->psql("BEGIN; UPDATE ocdz.orders SET status = 'ERROR', "
                  . "last_error = 'closed by hand' WHERE topup_id IN ("
                  . in_list(@ids) . "); SELECT pg_sleep(5); COMMIT;");
        POSIX::_exit(0);
    }
    my $activity = sub ($cond) {
        return $pg->value("SELECT count(*) FROM pg_stat_activity WHERE $cond");
    };
    ok(wait_until(sub { $activity->("wait_event = 'PgSleep'") }, timeout => 5),
       'closed, worker gone: closed by hand, rows held');
    ok(wait_until(sub {
        my $st = $mock->stats->{per_id};
        !grep({ ($st->{$_}{inflight} // 1) != 0 } @ids)
        && $activity->("application_name = 'ngx_http_ocdz_module' "
                       . "AND wait_event_type = 'Lock'") }, timeout => 5),
       'closed, worker gone: every reply in, a write-back waits for the rows')
        or diag explain [$mock->stats, $pg->hashes(
            'SELECT application_name, state, wait_event_type, wait_event, '
            . 'left(query, 40) AS q FROM pg_stat_activity')];
    $ngx->stop;
    waitpid($pid, 0);
    ok(wait_until(sub { count_where('lease_token IS NOT NULL', @ids) == 0 },
                  timeout => 10),
       'closed, worker gone: no closed order keeps a lease')
        or diag explain [$pg->hashes('SELECT topup_id, status, lease_token '
                                     . 'FROM ocdz.orders')];
    is(count_where("status = 'ERROR' AND last_error = 'closed by hand' "
                   . 'AND card_enc IS NULL', @ids), 1,
       'closed, worker gone: still closed as staff left them');
}

# 3. QUIT with checks in flight: their leases go back at once, and the
# next nginx checks those orders soon, not after ocdz_poller_lease (30 s)
{
    $pg->psql('DELETE FROM ocdz.orders; DELETE FROM ocdz.audit');
    $mock->reset;
    my @ids = map { random_topup_id() } 1 .. 4;
    for my $id (@ids) {
        $mock->set_order($id, status => 'FULFILLED');
        $mock->fault('hang', id => $id, count => 1);
    }
    my $ngx = nginx();
    insert(@ids);
    ok(wait_until(sub { !grep { $mock->request_count($_) == 0 } @ids }),
       'quit: checks in flight');
    my $attempts = $pg->value('SELECT sum(attempts) FROM ocdz.orders');
    my $t0 = time;
    is($ngx->quit, 0, 'quit: nginx exits 0');
    ok(time - $t0 < 5, sprintf('quit: in %.1f s', time - $t0));
    is(count_where('lease_token IS NOT NULL', @ids), 0,
       'quit: every lease given back');
    is($pg->value('SELECT sum(attempts) FROM ocdz.orders'), $attempts - 4,
       'quit: the abandoned checks do not count as attempts');
    my $said = 'shutting down: \d+ results written, the leases of \d+ '
             . 'orders given back';
    like($ngx->error_log, qr/$said/, 'quit: logged');
    $mock->release;
    $ngx = nginx();
    ok(wait_until(sub { count_where("status = 'FULFILLED'", @ids) == 4 },
                  timeout => 10),
       'quit: the next nginx stores every card, not 30 s (the lease) later');
    $ngx->stop;
}

# 4. The same with a reload: the old workers give back, the new ones check
SKIP: {
    skip 'a reload needs workers (master_process on)', 3 if single_process();
    $pg->psql('DELETE FROM ocdz.orders; DELETE FROM ocdz.audit');
    $mock->reset;
    my @ids = map { random_topup_id() } 1 .. 4;
    for my $id (@ids) {
        $mock->set_order($id, status => 'FULFILLED');
        $mock->fault('hang', id => $id, count => 1);
    }
    my $ngx = nginx();
    insert(@ids);
    ok(wait_until(sub { !grep { $mock->request_count($_) == 0 } @ids }),
       'reload: checks in flight');
    ok($ngx->reload(wait_old_exit => 1, timeout => 10), 'reload');
    $mock->release;
    ok(wait_until(sub { count_where("status = 'FULFILLED'", @ids) == 4 },
                  timeout => 10),
       'reload: the new workers store every card, not 30 s later')
        or diag explain [$mock->stats, $pg->hashes(
            'SELECT topup_id, status, attempts, lease_token, lease_until, '
            . 'next_check_at, last_error, now() FROM ocdz.orders'),
            $ngx->error_log];
    $ngx->stop;
}

done_testing;

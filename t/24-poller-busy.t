use v5.36;
use Test::More;
use Ocdz::Test qw(:all);
use Ocdz::Poller qw(:all);
require_module();

# The poller under load (issue 5): how its transactions commit, leases of
# orders closed by someone else while checked, waves of replies read a
# slice per event-loop turn.

# synchronous_commit on, unlike the harness's default: "off" must come
# from the poller's own statements
my ($pg, $mock, $dir) = poller_env(
    pg => { settings => { synchronous_commit => 'on' } });

# Every row the module's role writes records the synchronous_commit its
# transaction will commit with (read when the row is written: the
# poller's setting is made before any row is).
$pg->psql(<<'SQL');
CREATE TABLE public.commits (id bigserial, tbl text, op text, sc text,
                             topup_id text);
CREATE FUNCTION public.record_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF session_user = 'ocdz_module' THEN
        INSERT INTO public.commits (tbl, op, sc, topup_id)
        VALUES (TG_TABLE_NAME, TG_OP, current_setting('synchronous_commit'),
                to_jsonb(NEW) ->> 'topup_id');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER record_commit AFTER INSERT OR UPDATE ON ocdz.orders
    FOR EACH ROW EXECUTE FUNCTION public.record_commit();
CREATE TRIGGER record_commit AFTER INSERT ON ocdz.audit
    FOR EACH ROW EXECUTE FUNCTION public.record_commit();
CREATE TRIGGER record_commit AFTER UPDATE ON ocdz.poller_state
    FOR EACH ROW EXECUTE FUNCTION public.record_commit();
SQL

my $conf = poller_conf(
    directives => [api_timeout => '8s', poller_lease => '12s',
                   poller_pause => '2s', poller_not_found_retries => 1,
                   poller_concurrency => '%%CONC%%'],
    http => "    %%PREPARED%%\n    %%SYNC%%");

sub nginx (%v) {
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir, PREPARED => '', SYNC => '', CONC => 4, %v },
        error_log_level => $v{LEVEL} // 'info', conf => $conf);
    $ngx->start;
    return $ngx;
}

# $n new orders upstream has FULFILLED, inserted in one statement.
sub fulfilled_upstream ($n) {
    my @ids = map { random_topup_id() } 1 .. $n;
    $mock->set_order($_, status => 'FULFILLED') for @ids;
    $pg->psql(join '', map {
        "INSERT INTO ocdz.orders (topup_id, user_id, type, number, value) "
        . "VALUES ('$_', 'u', 'ADSL', '036362608', 1000);\n" } @ids);
}

sub fulfilled_count () {
    return $pg->value("SELECT count(*) FROM ocdz.orders "
                      . "WHERE status = 'FULFILLED'");
}

# One order per statement of the poller, each through to its end.
sub every_statement ($name) {
    my %id = map { $_ => random_topup_id() }
             qw(fulfilled handling refunded fault not_found forbidden);
    $mock->set_order($id{fulfilled}, status => 'FULFILLED');
    $mock->set_order($id{handling}, status => 'HANDLING');
    $mock->set_order($id{refunded}, status => 'REFUNDED');
    $mock->set_order($id{fault}, status => 'HANDLING');
    $mock->fault('status', id => $id{fault}, code => 503);
    $mock->set_order($id{forbidden}, status => 'HANDLING');
    $pg->insert_order(topup_id => $id{$_})
        for qw(fulfilled handling refunded fault not_found);

    order_is($pg, $id{fulfilled}, sub { $_[0]{status} eq 'FULFILLED' },
             "$name: fulfilled", 15);
    order_is($pg, $id{handling}, sub { $_[0]{status} eq 'HANDLING' },
             "$name: handling", 15);
    order_is($pg, $id{refunded}, sub { $_[0]{status} eq 'REFUNDED' },
             "$name: refunded", 15);
    order_is($pg, $id{fault}, sub { ($_[0]{last_error} // '') =~ /HTTP 503/ },
             "$name: fault", 15);
    order_is($pg, $id{not_found}, sub { $_[0]{status} eq 'ERROR' },
             "$name: not found", 15);

    # last: a 403 pauses every check
    $mock->fault('auth', id => $id{forbidden}, code => 403, count => 1);
    $pg->insert_order(topup_id => $id{forbidden});
    ok(wait_until(sub {
        $pg->value("SELECT count(*) FROM public.commits "
                   . "WHERE tbl = 'poller_state'") > 0 }),
       "$name: pause written");
    order_is($pg, $id{forbidden},
             sub { !defined $_[0]{lease_token}
                   && ($_[0]{last_error} // '') =~ /403/ },
             "$name: forbidden, lease given back", 15);
    unpause($pg);
    $mock->reset_faults;
    return %id;
}

sub commits () {
    my %seen;
    for my $r ($pg->hashes('SELECT tbl, op, sc, count(*) AS n '
                           . 'FROM public.commits GROUP BY 1, 2, 3')) {
        $seen{"$r->{tbl} $r->{op}"}{$r->{sc}} += $r->{n};
    }
    $pg->psql('TRUNCATE public.commits');
    return \%seen;
}

# 1. synchronous_commit of the poller's transactions
for my $mode (['default', {}, 'off'],
              ['ocdz_poller_sync_commit on',
               { SYNC => 'ocdz_poller_sync_commit on;' }, 'on'],
              ['ocdz_poller_sync_commit off, not prepared',
               { SYNC => 'ocdz_poller_sync_commit off;',
                 PREPARED => 'ocdz_db_prepared off;' }, 'off'])
{
    my ($name, $vars, $want) = @$mode;
    $pg->psql('DELETE FROM ocdz.orders; TRUNCATE public.commits');
    my $ngx = nginx(%$vars);
    every_statement($name);
    $ngx->stop;

    my $c = commits();
    for my $k ('orders UPDATE', 'audit INSERT', 'poller_state UPDATE') {
        ok($c->{$k}, "$name: $k seen");
    }
    my @other = map { my $k = $_; map { "$k: $_ ($c->{$k}{$_})" }
                      grep { $_ ne $want } keys %{ $c->{$k} } } sort keys %$c;
    ok(!@other, "$name: every write commits with synchronous_commit $want")
        or diag explain $c;
}

# 2. An order closed by someone else during its check: nothing written
# but its lease, whatever the check said (batched and single statements)
{
    $pg->psql('DELETE FROM ocdz.orders; DELETE FROM ocdz.audit');
    # one worker may claim them all: it must check them all at once
    my $ngx = nginx(CONC => 8);
    my $mark = $ngx->log_mark;
    my %id;
    for my $k (qw(fulfilled handling fault refunded not_found forbidden)) {
        my $id = $id{$k} = random_topup_id();
        my %st = (fulfilled => 'FULFILLED', refunded => 'REFUNDED');
        $mock->set_order($id, status => $st{$k} // 'HANDLING')
            unless $k eq 'not_found';
        my %f = (fulfilled => ['delay'], handling => ['delay'],
                 refunded => ['delay'],
                 fault => ['status', code => 503],
                 not_found => ['not_found'],
                 forbidden => ['auth', code => 403]);
        my ($kind, @p) = @{ $f{$k} };
        # long enough that all six are in flight when they are closed,
        # on a loaded machine too
        $mock->fault($kind, id => $id, delay_ms => 5000, count => 1, @p);
        $pg->insert_order(topup_id => $id);
    }
    for my $k (sort keys %id) {
        ok(wait_until(sub { $mock->request_count($id{$k}) > 0 }),
           "closed $k: check started");
    }
    # support staff close every order while its check runs
    my $list = join ', ', map { "'$_'" } values %id;
    $pg->psql("UPDATE ocdz.orders SET status = 'ERROR', "
              . "last_error = 'closed by hand' WHERE topup_id IN ($list)");
    for my $k (sort keys %id) {
        my $r = order_is($pg, $id{$k}, sub { !defined $_[0]{lease_token} },
                         "closed $k: lease given back", 15);
        is($r->{status}, 'ERROR', "closed $k: still closed");
        is($r->{last_error}, 'closed by hand', "closed $k: last_error kept");
        ok(!defined $r->{lease_until}, "closed $k: no lease_until");
        ok(!defined $r->{card_enc}, "closed $k: no card stored");
    }
    is(scalar(grep { $_->{event} eq 'CARD_STORED' } $pg->audit), 0,
       'closed: no CARD_STORED row');
    like($ngx->error_log($mark), qr/top-up $id{fulfilled}: lease lost or order final/,
         'closed: logged');
    unpause($pg);
    $ngx->stop;
}

# 3. A wave: 2 workers x 24 checks end together, again and again; the
# replies are read a slice per turn, the checks start at a pace, and
# everything is stored once. Then QUIT in the middle of a wave.
{
    $pg->psql('DELETE FROM ocdz.orders; DELETE FROM ocdz.audit');
    $mock->reset_requests;
    $mock->reset_faults;
    # slow answers: checks pile up even when handshakes are slow
    $mock->fault('delay', delay_ms => 1000);
    my $ngx = nginx(CONC => 24, LEVEL => 'debug');
    fulfilled_upstream(144);
    ok(wait_until(sub { fulfilled_count() == 144 }, timeout => 40),
       'wave: 144 fulfilled');
    is($pg->value("SELECT count(*) FROM ocdz.audit WHERE event = "
                  . "'CARD_STORED'"), 144, 'wave: 144 CARD_STORED rows');
    is($pg->value("SELECT count(*) FROM ocdz.orders WHERE lease_token "
                  . "IS NOT NULL"), 0, 'wave: no lease left');
    my $mi = $mock->max_inflight;
    ok($mi <= 48, "wave: at most 2 x 24 checks in flight ($mi)");
    ok($mi >= 24, "wave: the concurrency is used ($mi)");

    # a true wave: the workers stopped while the replies arrive see them
    # all ready at once
    $mock->reset_faults;
    $mock->fault('delay', delay_ms => 1500);
    fulfilled_upstream(48);
    ok(wait_until(sub { $mock->stats->{inflight} >= 24 }), 'wave: in flight');
    my @pids = $ngx->worker_pids;
    kill 'STOP', @pids;
    sleep 2;
    kill 'CONT', @pids;
    ok(wait_until(sub { fulfilled_count() == 192 }, timeout => 40),
       'wave: 48 more fulfilled');

    my $log = $ngx->error_log;
    my @n = $log =~ /ocdz poller: (\d+) replies handled/g;
    my $max = 0;
    $max = $_ > $max ? $_ : $max for @n;
    ok(@n && $max <= 8, "wave: at most 8 replies handled a turn ($max)");
    ok($log =~ /8 replies handled, more next turn/,
       'wave: the wave was split over turns');

    # QUIT while checks run and replies wait: nothing lost, stored once
    fulfilled_upstream(96);
    ok(wait_until(sub { $mock->stats->{inflight} >= 24 }), 'quit: in flight');
    sleep 0.25;
    is($ngx->quit, 0, 'quit: nginx exits 0');
    unlike($ngx->error_log, qr/open socket|\[alert\]|\[crit\]/,
           'quit: no alerts');

    $ngx = nginx(CONC => 24);
    ok(wait_until(sub { fulfilled_count() == 288 }, timeout => 40),
       'after quit: all 288 fulfilled');
    is($pg->value("SELECT count(*) FROM ocdz.audit WHERE event = "
                  . "'CARD_STORED'"), 288, 'after quit: one CARD_STORED each');
    is($pg->value("SELECT count(DISTINCT topup_id) FROM ocdz.audit WHERE "
                  . "event = 'CARD_STORED'"), 288, 'after quit: none twice');
    $ngx->stop;
    $mock->reset_faults;
}

done_testing;

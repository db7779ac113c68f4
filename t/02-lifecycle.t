# Graceful reload (HUP) and quit (QUIT), fast stop (TERM) with the whole
# module configured (database, keys, card location, poller against the
# mock): no alert, no socket left open, workers respawn, the new
# configuration is used, a refused configuration keeps the old one.

use v5.36;
use Test::More;
use Ocdz::Test qw(:all);

require_module();

my $pg = Ocdz::Test::Pg->start;
my $mock = Ocdz::Test::Mock->start(secondary_token => 'tok2_' . random_hex(8));
my $dir = tmpdir();
write_key_file("$dir/k1.key");
write_key_file("$dir/k2.key");

my $conf = <<'EOF';
http {
    ocdz_db "%%PGCONNINFO%%";
    ocdz_db_pool_size 2;
    ocdz_card_key k1 %%DIR%%/k1.key;
%%KEY2%%
    ocdz_api_base %%MOCK_BASE%%;
    ocdz_api_ca_file %%CA_FILE%%;
    ocdz_api_token_file %%TOKEN%%;
    ocdz_api_timeout 5s;
    ocdz_poller on;
    ocdz_poller_interval 300ms;
    ocdz_poller_lease 10s;

    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ "^/card/([0-9a-f]{24})$" {
            ocdz_card $1;
        }
        location = /version { return 200 "%%VERSION%%\n"; }
    }
}
EOF

my %vars = (DIR => $dir, KEY2 => '', TOKEN => $mock->token_file,
            VERSION => 'v1');
my $ngx = Ocdz::Test::Nginx->new(conf => $conf, pg => $pg, mock => $mock,
    vars => \%vars, main => 'worker_shutdown_timeout 10s;');

# an order that stays HANDLING: the poller keeps checking it
my $id = $pg->insert_order;
$mock->set_order($id, status => 'HANDLING');

$ngx->start;
my @w1 = $ngx->worker_pids;
my $workers = !single_process();     # valgrind: one process, no workers
is scalar @w1, 2, 'two workers' if $workers;
is(($ngx->http_get('/version'))[2], "v1\n", 'configuration v1 serves');

ok wait_until(sub { $mock->request_count($id) > 0 }, timeout => 15),
    'the poller checks the pending order';
my @r = $mock->requests(id => $id);
is $r[0]{token}, $mock->token, '... with the primary token';

ok wait_until(sub { $pg->backends > 0 }, timeout => 10),
    'workers hold database connections';

# nginx cannot reload with master_process off (valgrind runs one
# process): its new listening sockets are never added to the event loop
if ($workers) {
    reloads();
} else {
    note 'single process (valgrind): reloads skipped';
}

# --- reload: new workers, new configuration -----------------------------

sub reloads {
    my $mark = $ngx->log_mark;
    ok $ngx->reload(vars => { %vars, VERSION => 'v2',
                              TOKEN => $mock->secondary_token_file }),
        'reload (HUP) brings new workers';
    my @w2 = $ngx->worker_pids;
    is scalar @w2, 2, 'two workers after the reload';
    ok !(grep { my $p = $_; grep { $_ == $p } @w1 } @w2), '... all of them new';
    is(($ngx->http_get('/version'))[2], "v2\n", 'configuration v2 serves');

    $mock->reset_requests;
    ok wait_until(sub {
            my @x = $mock->requests(id => $id);
            @x && $x[-1]{token} eq $mock->secondary_token;
        }, timeout => 15),
        'the new workers poll with the new token';
    ok wait_until(sub { $ngx->worker_pids(all => 1) == 2 }, timeout => 15),
        'the old workers exit';
    $ngx->check_log_clean(from => $mark, name => 'no alert from the reload');

    # a slow upstream: the old workers have a check in flight during reload
    $mock->fault('delay', id => $id, ms => 1500);
    ok wait_until(sub { $mock->stats->{per_id}{$id}{inflight} }, timeout => 10),
        'a check is in flight';
    $mark = $ngx->log_mark;
    ok $ngx->reload(vars => { %vars, VERSION => 'v3' }),
        'reload with a check in flight';
    ok wait_until(sub { $ngx->worker_pids(all => 1) == 2 }, timeout => 20),
        'the old workers finish and exit';
    is(($ngx->http_get('/version'))[2], "v3\n", 'configuration v3 serves');
    $ngx->check_log_clean(from => $mark, name => 'no alert from a busy reload');
    $mock->reset_faults;

    # the interrupted check is redone (at the latest when its lease ends)
    $mock->reset_requests;
    ok wait_until(sub { $mock->request_count($id) > 0 }, timeout => 20),
        'the order is checked again after the busy reload';

    # several reloads in a row
    for my $n (4 .. 6) {
        ok $ngx->reload(vars => { %vars, VERSION => "v$n" }), "reload $n";
    }
    is(($ngx->http_get('/version'))[2], "v6\n",
       'the last configuration serves');

    # --- a refused configuration keeps the running one --------------------

    $mark = $ngx->log_mark;
    my @w = $ngx->worker_pids;
    ok !$ngx->reload(vars => { %vars, VERSION => 'bad',
                               KEY2 => "    ocdz_card_key k2 $dir/nope.key;" },
                     timeout => 5),
        'reload with a missing key file is refused';
    like $ngx->error_log($mark), qr/\[emerg\].*nope\.key/,
        '... the error log says why';
    $ngx->expect(qr/\[emerg\].*nope\.key/);
    is_deeply [$ngx->worker_pids], \@w, '... the workers stay';
    is(($ngx->http_get('/version'))[2], "v6\n", '... and serve the old one');

    ok $ngx->reload(vars => { %vars, VERSION => 'v7',
                              KEY2 => "    ocdz_card_key k2 $dir/k2.key "
                                    . 'current;' }),
        'a fixed configuration reloads';
    is(($ngx->http_get('/version'))[2], "v7\n", '... and serves');
}

# --- graceful quit --------------------------------------------------------

my @w = $ngx->worker_pids;
my $master = $ngx->pid;
is $ngx->quit(timeout => 15), 0, 'quit (QUIT): the master exits with 0';
ok !kill(0, $master), 'the master is gone';
is scalar(() = grep { kill 0, $_ } @w), 0, 'no worker left';
ok wait_until(sub { $pg->backends == 0 }, timeout => 10),
    'database connections closed';
unlike $ngx->error_log, qr/open socket #\d+ left in connection/,
    'no socket left open';

# --- fast stop, with a check in flight ------------------------------------

{
    my $fast = Ocdz::Test::Nginx->new(conf => $conf, pg => $pg,
        mock => $mock, vars => { %vars, VERSION => 'fast' });
    $mock->fault('hang', id => $id);
    $pg->psql("UPDATE ocdz.orders SET next_check_at = now(), "
              . "lease_until = NULL WHERE topup_id = '$id'");
    $fast->start;
    ok wait_until(sub { $mock->stats->{per_id}{$id}{inflight} },
                  timeout => 15),
        'a check hangs upstream';
    is $fast->stop(timeout => 10), 0, 'stop (TERM) exits with 0';
    $mock->release;
    $mock->reset_faults;
}

done_testing;

use v5.36;
use Test::More;
use Time::HiRes qw(sleep);
use Ocdz::Test qw(:all);
require_module();

# "master_process off" and a reload (HUP): nginx re-reads its
# configuration in its one process without starting it again (no
# init_process), closes the old configuration's log files and serves
# nothing more. The module's work of the old configuration must not run
# on (timers and connections of a replaced cycle, a closed log, no room
# for new sockets): it stops, says so, and nothing is written to orders
# any more; nginx runs on and exits cleanly.

my $pg   = Ocdz::Test::Pg->start(log_statement => 'none');
my $mock = Ocdz::Test::Mock->start;
my $dir  = tmpdir();
write_key_file("$dir/k1");

my $conf = <<'EOF2';
daemon off;
master_process off;
user root;
error_log %%PREFIX%%/logs/error.log info;
pid %%PREFIX%%/logs/nginx.pid;
events { worker_connections 64; }
http {
    ocdz_db "%%PGCONNINFO%%";
    ocdz_card_key k1 %%DIR%%/k1;
    ocdz_api_base %%MOCK_BASE%%;
    ocdz_api_ca_file %%CA_FILE%%;
    ocdz_api_token_file %%TOKEN_FILE%%;
    ocdz_poller on;
    ocdz_poller_interval 200ms;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 204; }
        location ~ "^/card/([0-9a-f]{24})$" { ocdz_card $1; }
    }
}
EOF2

my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock, header => 0,
    vars => { DIR => $dir }, conf => $conf);
$ngx->start;

my $id = random_topup_id();
$mock->set_order($id, status => 'HANDLING');
$pg->insert_order(topup_id => $id);
ok(wait_until(sub { $mock->request_count($id) >= 2 }),
   'one process: the poller checks an order');
ok(wait_until(sub { $pg->backends > 0 }), 'one process: the pool connected');

my $mark = $ngx->log_mark;
ok($ngx->reload(timeout => 10), 'HUP: the configuration is read again');
like($ngx->error_log($mark),
     qr/\[warn\] .*ocdz: the configuration was reloaded with "master_process off": the poller and the database pool stop/,
     'the module says its work stops, in the new error log');

# the replaced configuration writes nothing any more
my $id2 = random_topup_id();
$mock->set_order($id2, status => 'FULFILLED');
$pg->insert_order(topup_id => $id2);
my $checks = $mock->request_count($id);
sleep 2 * slow_factor();
my $r = $pg->order($id2);
is($r->{attempts}, 0, 'an order inserted after the reload is not claimed');
ok(!defined $r->{last_error}, '... and nothing is recorded on it');
is($mock->request_count($id), $checks, 'no more checks upstream');
ok(wait_until(sub { $pg->backends == 0 }),
   'the pool of the old configuration closed its connections');
ok($ngx->running, 'nginx runs on');

is($ngx->quit, 0, 'QUIT: nginx exits 0');
unlike($ngx->error_log, qr/\[(?:alert|crit|emerg)\]|open socket/,
       'no alert');

done_testing;

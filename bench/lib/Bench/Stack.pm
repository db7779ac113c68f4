package Bench::Stack;

# Everything the measurements run against, for one durability profile:
# a fresh PostgreSQL cluster with the data set (fulfilled orders with
# their cards, one session per user), the fast mock of the OneClickDz
# API (bench/mock.py), nginx with the module and the HTTP ceiling, the
# Node.js service (bench/node); each checked before anything is
# measured. And the pending orders the poller sections give the poller.

use v5.36;
use Exporter qw(import);
use IO::Socket::INET;
use List::Util qw(sum);
use Ocdz::Test qw(:all);
use Bench::Common;
use Bench::Pgbench qw(pgbench_pairs capture_statements);
use Bench::Wrk qw(reveal_once);

our @EXPORT = qw(prerequisites stack_up stack_down mock_ctl worker_rss
                 pending_orders open_count wait_poller_done);

sub prerequisites {
    die "build the module first: make module tool\n" unless have_module();
    for my $bin ('wrk', "$PGBIN/pgbench", $PY) {
        my ($rc) = run_cmd(['sh', '-c', "command -v $bin"]);
        die "missing $bin (make deps)\n" if $rc;
    }
    my ($rc) = run_cmd(['sh', '-c', 'command -v node && command -v npm']);
    if ($rc) {
        say_step 'installing Node.js and npm (apt)';
        system('apt-get', 'update', '-qq') == 0
            and system('sh', '-c', 'DEBIAN_FRONTEND=noninteractive '
                       . 'apt-get install -y -qq --no-install-recommends '
                       . 'nodejs npm') == 0
            or die "could not install nodejs npm\n";
    }
    if (!-f "$BENCH/node/node_modules/express/package.json"
        || !-f "$BENCH/node/node_modules/pg/package.json"
        || (stat "$BENCH/node/package-lock.json")[9]
           > (stat "$BENCH/node/node_modules")[9])
    {
        say_step 'npm ci (Express 5, pg 8) into bench/node/node_modules';
        system('sh', '-c', "cd '$BENCH/node' && npm ci --no-audit --no-fund"
               . ' --loglevel=error') == 0
            or die "npm ci failed\n";
    }
}

sub start_mock ($dir) {
    my $pki = pki();
    my $ready = "$dir/mock.ready";
    my $pid = spawn("$dir/mock.log", {}, $PY, "$BENCH/mock.py",
                    '--cert', $pki->{server_cert}, '--key',
                    $pki->{server_key}, '--ready-file', $ready,
                    '--delay-ms', $C{poller_delay});
    unshift @STOP, sub { stop_group($pid) };
    wait_until(sub { -f $ready }, timeout => 20)
        or die "bench mock did not start:\n" . slurp("$dir/mock.log");
    my $info = json_decode(slurp($ready));
    return { %$info, pid => $pid, ca => $pki->{ca_cert},
             base => "https://127.0.0.1:$info->{port}" };
}

sub mock_ctl ($mock, $method, $path) {
    my ($rc, $out) = run_cmd(['curl', '-sS', '-X', $method,
        "http://127.0.0.1:$mock->{control_port}$path"], timeout => 10);
    die "mock control $path failed\n" if $rc;
    return json_decode($out);
}

sub start_node ($dir, $pg, $key_hex, $port) {
    my %env = (PORT => $port, PGHOST => '127.0.0.1', PGPORT => $pg->port,
               PGUSER => 'ocdz_module', PGDATABASE => 'postgres',
               PG_POOL_TOTAL => $C{pool_total}, WORKERS => $C{workers},
               CARD_KEY_ID => 'bench', CARD_KEY_HEX => $key_hex,
               NODE_ENV => 'production');
    my $pid = spawn("$dir/node.log", \%env, 'node',
                    "$BENCH/node/server.js");
    unshift @STOP, sub { stop_group($pid) };
    wait_until(sub {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Timeout => 1);
        return $s ? 1 : 0;
    }, timeout => 30) or die "node did not start:\n" . slurp("$dir/node.log");
    note_cmd('node', (map { "$_=$env{$_}" } grep { $_ ne 'CARD_KEY_HEX' }
                      sort keys %env), 'CARD_KEY_HEX=...', 'node',
             'bench/node/server.js');
    return { pid => $pid, port => $port };
}

# --- data ---------------------------------------------------------------------

sub seed ($pg, $dir, $key_hex) {
    my ($rc, $out, $err) = run_cmd(['node', "$BENCH/node/seed.js", $dir,
        $key_hex, 'bench', $C{users}, $C{orders}], timeout => 300);
    die "seed.js failed: $err\n" if $rc;
    chmod 0644, glob("$dir/*.tsv");
    $pg->psql(<<"EOF");
COPY ocdz.sessions (token_hash, user_id, expires_at)
    FROM '$dir/sessions.tsv';
COPY ocdz.orders (topup_id, user_id, type, number, value, status, card_enc,
                  num_trans, date_traitement, fulfilled_at, delivered_at)
    FROM '$dir/orders.tsv';
EOF
    my @t;
    for (split /\n/, slurp("$dir/targets.txt")) {
        my ($token, $id, $user, $card) = split ' ';
        push @t, { token => $token, id => $id, user => $user, card => $card };
    }
    return \@t;
}

sub start_nginx ($pg, $mock, $dir, $ceiling_json) {
    write_key_file("$dir/card.key", hex => $R{key_hex});
    write_file("$dir/api.token", 'tok_' . random_hex(16), 0600);
    (my $body = $ceiling_json) =~ s/([\\'])/\\$1/g;
    die "the ceiling body has a \$\n" if $body =~ /\$/;
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, header => 0,
        workers => $C{workers}, ports => 2, http_common => 0,
        check_log => 0,
        vars => { DIR => $dir, MOCK => $mock->{base}, CA => $mock->{ca},
                  BODY => $body, POOL => $C{pool}, BATCH => $C{batch_max},
                  WORKERS => $C{workers}, CONC => $C{poller_conc},
                  EXTRA => $ENV{BENCH_NGINX_EXTRA} // '',
                  STATUS => '', OUTBOX => '' },
        conf => <<'EOF');
daemon off;
master_process on;
worker_processes %%WORKERS%%;
user root;
error_log %%PREFIX%%/logs/error.log warn;
pid %%PREFIX%%/logs/nginx.pid;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path %%PREFIX%%/tmp/body;
    proxy_temp_path %%PREFIX%%/tmp/proxy;
    fastcgi_temp_path %%PREFIX%%/tmp/fastcgi;
    uwsgi_temp_path %%PREFIX%%/tmp/uwsgi;
    scgi_temp_path %%PREFIX%%/tmp/scgi;

    ocdz_db                  "%%PGCONNINFO%%";
    ocdz_db_pool_size        %%POOL%%;
    ocdz_db_queue            1024;
    ocdz_db_batch            %%BATCH%%;
    ocdz_card_key            bench %%DIR%%/card.key current;
    ocdz_api_base            %%MOCK%%;
    ocdz_api_ca_file         %%CA%%;
    ocdz_api_token_file      %%DIR%%/api.token;
    ocdz_api_timeout         15s;
    ocdz_poller              on;
    ocdz_poller_interval     1s;
    ocdz_poller_concurrency  %%CONC%%;
    %%EXTRA%%

    # the delivery outbox, for the outbox section (Bench::Outbox)
    %%OUTBOX%%

    # the module
    server {
        listen 127.0.0.1:%%PORT%%;

        location ~ "^/api/internet-orders/([0-9a-f]{24})/card$" {
            ocdz_card    $1;
            ocdz_session db;
        }

        # ocdz_status, for the status section (Bench::Status)
        %%STATUS%%
    }

    # the HTTP ceiling: the same JSON, with the same headers, from memory
    server {
        listen 127.0.0.1:%%PORT2%%;

        location ~ "^/api/internet-orders/([0-9a-f]{24})/card$" {
            default_type application/json;
            add_header Cache-Control no-store always;
            add_header Pragma no-cache always;
            add_header X-Content-Type-Options nosniff always;
            add_header Vary Accept-Language always;
            return 200 '%%BODY%%';
        }
    }
}
EOF
    $ngx->start(timeout => 20);
    unshift @STOP, sub { eval { $ngx->stop(check_log => 0) } };
    return $ngx;
}

sub worker_rss ($ngx) {
    my %r;
    for my $pid ($ngx->worker_pids) {
        my ($kb) = slurp("/proc/$pid/status") =~ /^VmRSS:\s*(\d+)/m;
        $r{$pid} = $kb;
    }
    return \%r;
}

sub log_counts ($file) {
    my %c;
    for (split /\n/, slurp($file)) {
        $c{$1}++ if /^\S+ \S+ \[(\w+)\]/;
    }
    return \%c;
}

sub verify ($ngx, $node, $targets) {
    for my $t (@$targets[0, 1, 4, 9]) {
        for my $svc (['module', $ngx->port], ['node', $node->{port}]) {
            my ($raw, $j) = reveal_once($svc->[1], $t);
            die "$svc->[0]: reveal of $t->{id} failed: $raw\n"
                unless $j && $j->{success}
                    && ($j->{cardCode} // '') eq $t->{card};
        }
    }
}

sub pending_orders ($pg, $n, $tag) {
    $pg->psql(<<"EOF");
INSERT INTO ocdz.orders (topup_id, user_id, type, number, value)
SELECT lpad(to_hex(i), 8, '0') || '$tag',
       'bench-user-' || (i % $C{users}), 'ADSL', '036362608', 1000
FROM generate_series(1, $n) AS i;
EOF
}

sub open_count ($pg) {
    return $pg->value(q{SELECT count(*) FROM ocdz.orders
        WHERE status IN ('PENDING', 'HANDLING', 'QUEUED', 'UNKNOWN_ERROR')});
}

sub wait_poller_done ($pg, $timeout) {
    return wait_until(sub { open_count($pg) == 0 }, timeout => $timeout,
                      interval => 0.25);
}

# The stack of profile $p, up, checked, the module's reveal statements
# captured: { pg, ngx, node, mock, targets }.
sub stack_up ($p) {
    say_step "profile $p: PostgreSQL " . join(', ', map {
        "$_=$PROFILE_SETTINGS{$p}{$_}" } sort keys %{ $PROFILE_SETTINGS{$p} });
    my $dir = $R{dir} = tmpdir();
    chmod 0755, $dir;
    my $pg = Ocdz::Test::Pg->start(log_statement => 'none',
        settings => { %COMMON_PG, %{ $PROFILE_SETTINGS{$p} } });
    unshift @STOP, sub { eval { $pg->stop('immediate') } };
    $R{profiles}{$p}{pg_settings} = { map {
        $_->[0] => $_->[1] } $pg->psql(q{SELECT name, setting FROM pg_settings
        WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes',
        'shared_buffers', 'wal_level', 'max_wal_size', 'checkpoint_timeout',
        'max_connections', 'work_mem', 'wal_buffers', 'commit_delay',
        'effective_io_concurrency', 'server_version')}) };

    say_step "$p: seeding $C{orders} fulfilled orders of $C{users} users";
    $R{key_hex} //= random_hex(32);
    my $targets = seed($pg, $dir, $R{key_hex});
    $R{targets_file} = "$dir/targets.txt";
    pgbench_pairs($pg, $targets, 'pairs', $C{pgb_pairs});
    pgbench_pairs($pg, $targets, 'pairs_batch', $C{batch_max});
    $pg->psql('VACUUM ANALYZE');

    my $mock = start_mock($dir);
    # the ceiling answers what the module answers for an ADSL order
    my $ngx = start_nginx($pg, $mock, $dir, '{}');
    my ($body) = reveal_once($ngx->port, $targets->[0]);
    $ngx->stop(check_log => 0);
    shift @STOP;
    $ngx = start_nginx($pg, $mock, $dir, $body);
    $R{ceiling_body_len} = length $body;
    my $node = start_node($dir, $pg, $R{key_hex}, free_port());
    my ($pm) = slurp($pg->data_dir . '/postmaster.pid') =~ /^(\d+)/;
    $R{pids} = { pg => $pm, nginx => $ngx->pid, node => $node->{pid},
                 mock => $mock->{pid} };
    verify($ngx, $node, $targets);
    my ($c) = reveal_once($ngx->port(2), $targets->[0]);
    die "the ceiling answers something else\n" unless $c eq $body;
    capture_statements($pg, $ngx, $targets);
    return { pg => $pg, ngx => $ngx, node => $node, mock => $mock,
             targets => $targets };
}

# What the profile left in the logs and the audit table, then every
# service of the stack stopped.
sub stack_down ($p, $s) {
    my ($pg, $ngx) = @$s{qw(pg ngx)};
    $R{profiles}{$p}{nginx_log} = log_counts($ngx->error_log_file);
    # every request of the benchmark (wrk's and pgbench's) reveals a card
    # it may: anything but CARD_REVEALED would mean a run measured errors
    $R{profiles}{$p}{audit_events} = { map { $_->[0] => $_->[1] }
        $pg->psql('SELECT event, count(*) FROM ocdz.audit GROUP BY 1') };
    $R{profiles}{$p}{audit_rows} = sum(0,
        values %{ $R{profiles}{$p}{audit_events} });
    $_->() for splice @STOP;
}

1;

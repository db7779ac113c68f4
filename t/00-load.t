# The module loads into Debian's nginx and adds its directives.

use v5.36;
use Test::More;
use Ocdz::Test qw(:all);

require_module();

ok -f module_path(), 'module built: ' . module_path();

my $minimal = <<'EOF';
http {
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 200 "up\n"; }
    }
}
EOF

{
    my $ngx = Ocdz::Test::Nginx->new(conf => $minimal);
    my ($rc, $out) = $ngx->test_config;
    is $rc, 0, 'nginx -t with load_module and a minimal http block';
    like $out, qr/test is successful/, '... test is successful';
    unlike $out, qr/\[(emerg|alert|crit|warn)\]/, '... no warning'
        or diag $out;
}

# Directives that need no files and touch nothing: accepted in their
# contexts when the module is loaded, unknown when it is not.
my $directives = <<'EOF';
http {
    ocdz_db_pool_size 4;
    ocdz_db_queue 64;
    ocdz_db_connect_timeout 2s;
    ocdz_db_query_timeout 3s;
    ocdz_db_statement_timeout 2s;
    ocdz_db_prepared on;
    ocdz_api_timeout 10s;
    ocdz_api_connect_timeout 3s;
    ocdz_poller off;
    ocdz_poller_interval 5s;
    ocdz_poller_queued_interval 2h;
    ocdz_poller_max_backoff 10m;
    ocdz_poller_backoff_after 60;
    ocdz_poller_lease 60s;
    ocdz_poller_pause 60s;
    ocdz_poller_retry_after_max 10m;
    ocdz_poller_concurrency 8;
    ocdz_poller_db_connections 1;
    ocdz_poller_not_found_retries 5;
    ocdz_session_cookie sid;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / {
            ocdz_session_bearer on;
            ocdz_jwt_user_claim sub;
            ocdz_jwt_leeway 30s;
            ocdz_https_only off;
            ocdz_trusted_proxies 127.0.0.1 10.0.0.0/8;
            ocdz_cors_origins https://shop.example;
            return 200 "up\n";
        }
    }
}
EOF

{
    my $ngx = Ocdz::Test::Nginx->new(conf => $directives);
    my ($rc, $out) = $ngx->test_config;
    is $rc, 0, 'the module\'s directives are accepted' or diag $out;

    my $without = Ocdz::Test::Nginx->new(conf => $directives,
                                         load_module => 0);
    ($rc, $out) = $without->test_config;
    isnt $rc, 0, 'without the module nginx refuses them';
    like $out, qr/unknown directive "ocdz_db_pool_size"/,
        '... as unknown directives';
}

# It starts, serves, and stops cleanly with nothing configured.
{
    my $ngx = Ocdz::Test::Nginx->new(conf => $minimal);
    $ngx->start;
    my ($s, $h, $b) = $ngx->http_get('/');
    is $s, 200, 'serves with the module loaded';
    is $b, "up\n", '... the body';
    is scalar(my @w = $ngx->worker_pids), 2, 'two workers'
        unless single_process();
    is $ngx->quit, 0, 'graceful exit, status 0';
    like $ngx->error_log, qr/using the "epoll" event method/,
        'the error log is ours (debug level)';
}

done_testing;

use v5.36;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use Ocdz::Test qw(:all);
use Ocdz::Test::Peer qw(webhook_peer);
use Ocdz::Card qw(:all);
use Ocdz::Test::Proc qw(spawn);
use Ocdz::Test::Sanitizer qw(sanitizer_env);
require_module();

# The outbox's names resolved the nginx way (issue 15, part D), as the
# API's are (t/71): the hosts of ocdz_webhook_url, ocdz_sms_gateway_url
# and ocdz_smtp_url reach libcurl as CURLOPT_RESOLVE entries, so workers
# never resolve a name (no getaddrinfo, no libcurl resolver thread).
# Without "resolver" the master resolves them at configuration read
# ("nginx -t" fails for one that does not resolve); with it, each worker
# resolves them with nginx's resolver, follows their changes and keeps
# the last addresses while lookups fail.

if (system('/usr/bin/python3', '-c', 'import aiosmtpd') != 0) {
    plan skip_all => 'python3-aiosmtpd is not installed (make deps-test)';
}

my $sf = slow_factor();
my $env = card_env(pg => { log_statement => 'none' });
my $pg = $env->{pg};
my $dir = $env->{dir};
my $pki = pki();

# every getaddrinfo() call of nginx's processes, with the caller's pid
my $shim = "$dir/gai_shim.so";
my ($rc, $out, $err) = run_cmd(['cc', '-shared', '-fPIC', '-o', $shim,
                                repo_root() . '/t/lib/gai_shim.c', '-ldl']);
is($rc, 0, 'the getaddrinfo shim builds') or diag "$out$err";
my $gai_log = "$dir/gai.log";
my $preload = join ':', grep { defined }
    sanitizer_env($dir)->{LD_PRELOAD}, $shim;
my %shim_env = (LD_PRELOAD => $preload, OCDZ_GAI_LOG => $gai_log);

# { pid => [names] }; numeric ones (libpq's host=127.0.0.1) left out
sub gai_calls () {
    my %c;
    for (split /\n/, -e $gai_log ? slurp($gai_log) : '') {
        my ($pid, $name) = split / /;
        next if $name =~ /^[\d.]+$|:/;
        push @{ $c{$pid} }, $name;
    }
    return \%c;
}

sub no_worker_lookup ($ngx, $name) {
    SKIP: {
        skip 'master_process off: no workers', 2 if single_process();
        my $c = gai_calls();
        my @w = grep { $c->{$_} } $ngx->worker_pids(all => 1);
        ok(!@w, "$name: no worker called getaddrinfo")
            or diag explain { map { $_ => $c->{$_} } @w };
        my @t = map { threads_of($_) } $ngx->worker_pids;
        ok(@t && !grep({ $_ != 1 } @t), "$name: each worker has one thread (@t)");
    }
}

sub threads_of ($pid) {
    opendir(my $d, "/proc/$pid/task") or return -1;
    return scalar grep { !/^\./ } readdir $d;
}

# --- the peers: webhook receiver, SMS gateway, SMTP server --------------------
sub receiver ($what) {
    my $peer = webhook_peer();
    ok($peer->{listening}, "$what listening");
    return $peer;
}
sub requests ($r, $re = qr//) {
    my $f = "$r->{dir}/requests.jsonl";
    return () unless -e $f;
    return grep { $_->{body} =~ $re }
           map { json_decode($_) } grep { length } split /\n/, slurp($f);
}

my $hook = receiver('webhook receiver');
my $gw = receiver('SMS gateway');

# the SMTP server's certificate is for wrong.example: the name is used
my $sport = free_port();
my $sdir = tmpdir();
my $pass = 'smtp_' . random_hex(12);
my $spid = spawn(['/usr/bin/python3', repo_root() . '/t/lib/smtp_server.py',
                  $sport, $sdir, $pki->{wrongname_cert},
                  $pki->{wrongname_key}, 'shop', $pass],
                 log => "$sdir/smtp.log");
ok(wait_until(sub { slurp("$sdir/smtp.log") =~ /listening/ }, timeout => 15),
   'SMTP server listening') or diag slurp("$sdir/smtp.log");
replace_file("$sdir/mode", 'none');
sub messages ($re = qr//) {
    my $f = "$sdir/messages.jsonl";
    return () unless -e $f;
    return grep { ($_->{headers}{'Message-ID'} // '') =~ $re }
           map { json_decode($_) } grep { length } split /\n/, slurp($f);
}

my ($fwd_port, $dns_pid, @fwd);
END { kill 'TERM', grep { $_ } $hook->{pid}, $gw->{pid}, $spid;
      kill 'KILL', grep { $_ } $dns_pid, @fwd }

write_file("$dir/wh.secret", 'whsec_' . random_hex(16), 0600);
write_file("$dir/smtp.cred", "shop:$pass\n", 0600);

# the outbox's http directives, with the URLs' hosts given
sub outbox_http (%h) {
    my $c = <<"EOF";
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_outbox_backoff 1s;
    ocdz_outbox_max_backoff 2s;
    ocdz_outbox_lease 10s;
EOF
    $c .= <<"EOF" if $h{webhook};
    ocdz_webhook_url http://$h{webhook}/hook;
    ocdz_webhook_secret_file %%DIR%%/wh.secret;
    ocdz_webhook_timeout 3s;
EOF
    $c .= <<"EOF" if $h{sms};
    ocdz_sms_gateway_url http://$h{sms}/sms;
    ocdz_sms_gateway_body json '{"to":"{to}","text":"{message}","key":"{idempotency_key}"}';
    ocdz_sms_timeout 3s;
EOF
    $c .= <<"EOF" if $h{smtp};
    ocdz_smtp_url smtp://$h{smtp};
    ocdz_smtp_credentials_file %%DIR%%/smtp.cred;
    ocdz_smtp_ca_file $pki->{ca_cert};
    ocdz_smtp_timeout 5s;
    ocdz_mail_from cards\@shop.example;
EOF
    $c .= $h{more} // '';
    return $c;
}

# an order fulfilled as the poller does it, with a phone and an email
sub order () {
    my $code = random_card_code();
    push @{ $env->{codes} }, $code;
    my $id = $pg->insert_order(phone => '+213550000001',
                               email => 'buyer@example.com', lang => 'en');
    my $rec = tool_encrypt($env, $id, $code);
    $pg->psql("UPDATE ocdz.orders SET status = 'FULFILLED', card_enc = "
        . sql_quote($rec) . ", num_trans = 'AT-1', date_traitement = "
        . "'2025-10-29T01:05:30.000Z', fulfilled_at = now() WHERE topup_id = "
        . sql_quote($id));
    return $id;
}
sub states ($id) {
    return { map { ("$_->{channel}/$_->{event}" => $_->{state}) }
             $pg->hashes('SELECT channel, event, state FROM ocdz.outbox '
                         . 'WHERE topup_id = ' . sql_quote($id)) };
}
sub delivered ($id, $channels, $name, $t = 15) {
    my $s;
    my $ok = wait_until(sub {
        $s = states($id);
        !grep { ($s->{$_} // '') ne 'sent' } @$channels;
    }, timeout => $t * $sf);
    ok($ok, $name) or diag explain $s;
    return $ok;
}
# an order event whose only delivery is the webhook
sub refunded () {
    my $id = $pg->insert_order;
    $pg->psql("UPDATE ocdz.orders SET status = 'REFUNDED' WHERE topup_id = "
              . sql_quote($id));
    return $id;
}

# --- nginx -t: a URL's host that does not resolve -------------------------
for my $c (['webhook', 'ocdz_webhook_url', 'no-such-hook.invalid:8080'],
           ['sms', 'ocdz_sms_gateway_url', 'no-such-sms.invalid'],
           ['smtp', 'ocdz_smtp_url', 'no-such-smtp.invalid:587']) {
    my ($k, $directive, $host) = @$c;
    my $ngx = card_nginx($env, start => 0, http => outbox_http($k => $host));
    my ($rc, $out) = $ngx->test_config;
    isnt($rc, 0, "nginx -t fails for an $directive host that does not resolve");
    my @emerg = $out =~ /(\[emerg\].*)/g;
    is(scalar @emerg, 1, "$directive: one [emerg]") or diag $out;
    (my $name = $host) =~ s/:\d+$//;
    like($emerg[0] // '', qr/\Q$directive\E host "\Q$name\E" not found/,
         "$directive: it names the directive and the host");
}
{
    # outbox off: its URLs are not looked up
    my $ngx = card_nginx($env, start => 0, http =>
        outbox_http(webhook => 'no-such-hook.invalid', sms => 'no-such.invalid',
                    smtp => 'no-such.invalid') =~ s/ocdz_outbox on/ocdz_outbox off/r);
    my ($rc, $out) = $ngx->test_config;
    is($rc, 0, 'ocdz_outbox off: the URLs\' hosts are not looked up') or diag $out;

    # numeric hosts are their own
    $ngx = card_nginx($env, start => 0, http => outbox_http(
        webhook => '127.0.0.1:1', sms => '[::1]:2', smtp => '127.0.0.1:3'));
    ($rc, $out) = $ngx->test_config;
    is($rc, 0, 'addresses in the URLs: nothing to resolve') or diag $out;
}

# --- without "resolver": the master resolves, from /etc/hosts -------------
# nginx runs in a mount namespace of its own where /etc/hosts names the
# three hosts (unshare, as root); libcurl would resolve them with
# getaddrinfo() there, which the shim would show.
write_file("$dir/hosts", "127.0.0.1 localhost\n127.0.0.1 hook.example\n"
           . "127.0.0.1 sms.example\n127.0.0.1 wrong.example\n");
my @with_hosts = ('unshare', '-m', '--propagation', 'private', 'sh', '-c',
                  "mount --bind $dir/hosts /etc/hosts && exec \"\$@\"", 'sh');
my ($urc) = run_cmd([@with_hosts, 'getent', 'hosts', 'hook.example']);

SKIP: {
    skip 'no private /etc/hosts here (unshare -m as root)', 12 if $urc;
    skip 'under valgrind: no wrapper of ours', 12 if single_process();
    unlink $gai_log;
    my $ngx = card_nginx($env, http => outbox_http(
            webhook => "hook.example:$hook->{port}",
            sms => "sms.example:$gw->{port}",
            smtp => "wrong.example:$sport"),
        nginx => { env => \%shim_env, wrapper => \@with_hosts,
                   error_log_level => 'info' });
    my $id = order();
    delivered($id, ['webhook/order.fulfilled', 'sms/card', 'email/card'],
              'host names without resolver: webhook, SMS and email sent');
    is(scalar(requests($hook, qr/\Q$id\E/)) >= 1, 1, 'the webhook arrived');
    is(scalar(requests($gw, qr/\Q$id\E-sms/)), 1, 'the SMS arrived');
    my ($m) = messages(qr/\Q$id\E/);
    ok($m && $m->{tls}, 'the email arrived, over TLS for wrong.example');
    no_worker_lookup($ngx, 'no resolver');
    my %asked = map { $_ => 1 } @{ gai_calls()->{ $ngx->pid } // [] };
    ok($asked{'hook.example'} && $asked{'sms.example'}
       && $asked{'wrong.example'}, 'the master looked the three names up')
        or diag explain gai_calls();

    my $before = scalar map { @$_ } values %{ gai_calls() };
    ok($ngx->reload(wait_old_exit => 1, timeout => 15 * $sf), 'reload');
    my $after = scalar map { @$_ } values %{ gai_calls() };
    ok($after > $before, 'a reload looks the names up again');
    $id = order();
    delivered($id, ['webhook/order.fulfilled', 'sms/card', 'email/card'],
              'after the reload: webhook, SMS and email sent');
    no_worker_lookup($ngx, 'no resolver, after a reload');
    $ngx->stop;
}

# --- with "resolver": each worker asks nginx's resolver -------------------
my $dns_port = free_port();
my $dns_mode = "$dir/dns_mode";
my $dns_log = "$dir/dns.log";
replace_file($dns_mode, '127.0.0.1');
$dns_pid = spawn(['/usr/bin/python3', repo_root() . '/t/lib/dns_server.py',
                  $dns_port, $dns_mode, $dns_log], log => "$dir/dns.out");

# the webhook receiver behind 127.0.0.1 and 127.0.0.2 on one port: which
# address each connection came to is logged
$fwd_port = free_port();
my $fwd_target = write_file("$dir/fwd_target", $hook->{port});
my $fwd_log = "$dir/fwd.log";
@fwd = map {
    spawn(['/usr/bin/python3', repo_root() . '/t/lib/tcp_forward.py', $_,
           $fwd_port, $fwd_target, $fwd_log], log => "$dir/fwd-$_.out")
} qw(127.0.0.1 127.0.0.2);
ok(wait_until(sub {
    !grep { !IO::Socket::INET->new(PeerAddr => "$_:$fwd_port") }
          qw(127.0.0.1 127.0.0.2)
}, timeout => 10), 'the receiver answers at 127.0.0.1 and 127.0.0.2');

sub connections_to ($addr) {
    return scalar grep { $_ eq $addr }
                  split /\n/, -e $fwd_log ? slurp($fwd_log) : '';
}
sub webhook_sent ($name) {
    my $id = refunded();
    my $s;
    my $ok = wait_until(sub {
        $s = states($id)->{'webhook/order.refunded'} // '';
        $s eq 'sent';
    }, timeout => 10 * $sf);
    ok($ok, $name) or diag "state: $s";
    return $ok;
}

{
    unlink $gai_log;
    my $ngx = card_nginx($env, start => 0,
        http => outbox_http(webhook => "hook.example:$fwd_port", more =>
            "    resolver 127.0.0.1:$dns_port valid=1s ipv6=off;\n"
          . "    resolver_timeout 1s;\n"),
        nginx => { env => \%shim_env, error_log_level => 'info' });
    my ($rc, $out) = $ngx->test_config;
    is($rc, 0, 'with resolver: nginx -t passes without looking the name up')
        or diag $out;
    $ngx->start;

    # (the probes above connected once to each)
    my %base = map { $_ => connections_to($_) } qw(127.0.0.1 127.0.0.2);
    webhook_sent('resolved by nginx\'s resolver: a webhook is sent');
    webhook_sent('... and another');
    ok(connections_to('127.0.0.1') > $base{'127.0.0.1'}
       && connections_to('127.0.0.2') == $base{'127.0.0.2'},
       'the webhooks went to 127.0.0.1');
    like(slurp($dns_log), qr/^1 hook\.example 127\.0\.0\.1$/m,
         'the test DNS server was asked');

    # the name moves
    replace_file($dns_mode, '127.0.0.2');
    my $n2 = connections_to('127.0.0.2');
    ok(wait_until(sub {
        refunded();
        sleep 0.5;
        connections_to('127.0.0.2') > $n2;
    }, timeout => 15 * $sf), 'the webhooks follow the name to 127.0.0.2');
    # a worker may have been between two lookups; within a few seconds
    # none connects to the old address any more
    sleep 2;
    my $n1 = connections_to('127.0.0.1');
    webhook_sent('after the change: webhooks are sent') for 1 .. 3;
    is(connections_to('127.0.0.1'), $n1, 'no new connection to 127.0.0.1');

    # lookups fail: the last addresses are kept, [error] once per worker
    my $mark = $ngx->log_mark;
    replace_file($dns_mode, 'fail');
    ok(wait_until(sub { $ngx->error_log($mark) =~ /could not be resolved/ },
                  timeout => 10 * $sf), 'a failed lookup is logged');
    sleep 2;
    webhook_sent('while lookups fail: webhooks are sent to the last address')
        for 1 .. 3;
    my $log = $ngx->error_log($mark);
    my %start;
    $start{$1}++ while $log =~ /\[error\] (\d+)#\d+: .*ocdz: ocdz_webhook_url host "hook\.example" could not be resolved: .*its last addresses are used/g;
    ok(%start && !grep({ $_ > 1 } values %start),
       'one [error] per worker while lookups fail ('
       . join(', ', map { "$_: $start{$_}" } sort keys %start) . ')');

    replace_file($dns_mode, '127.0.0.2');
    ok(wait_until(sub { $ngx->error_log($mark) =~ /\[error\].*ocdz: ocdz_webhook_url host "hook\.example" resolves again after/ },
                  timeout => 10 * $sf), 'its end is logged at [error]');

    no_worker_lookup($ngx, 'with resolver');
    is(scalar keys %{ gai_calls() }, 0, 'no process called getaddrinfo')
        or diag explain gai_calls();

    # a graceful quit is not held by the lookups' timers
    my $t0 = time;
    $ngx->quit;
    ok(time - $t0 < 5 * $sf, sprintf 'quit in %.1f s', time - $t0);
}

# a worker whose lookups fail from its start: the webhook waits, retried
# with the reason, and is sent once the name resolves
{
    replace_file($dns_mode, 'fail');
    my $ngx = card_nginx($env,
        http => outbox_http(webhook => "hook.example:$fwd_port", more =>
            "    resolver 127.0.0.1:$dns_port valid=1s ipv6=off;\n"
          . "    resolver_timeout 1s;\n"
          . "    ocdz_outbox_attempts 100;\n"),
        nginx => { error_log_level => 'info' });
    my $id = refunded();
    my $r;
    ok(wait_until(sub {
        ($r) = $pg->hashes("SELECT * FROM ocdz.outbox WHERE topup_id = "
                           . sql_quote($id));
        $r && ($r->{last_error} // '') =~ /no address yet/;
    }, timeout => 10 * $sf), 'never resolved: the webhook is retried with the reason')
        or diag explain $r;
    is($r->{state}, 'pending', '... pending, not failed');
    like($ngx->error_log, qr/\[error\].*ocdz_webhook_url host "hook\.example" could not be resolved: .*nothing is sent to it until it resolves/,
         'the lookups\' failure is logged');
    replace_file($dns_mode, '127.0.0.1');
    ok(wait_until(sub { (states($id)->{'webhook/order.refunded'} // '') eq 'sent' },
                  timeout => 15 * $sf), 'sent once the name resolves')
        or diag explain [$pg->hashes("SELECT * FROM ocdz.outbox WHERE "
                                     . "topup_id = " . sql_quote($id))],
                $ngx->error_log;
    $ngx->stop;
}

hygiene($env);

done_testing;

use v5.36;
use utf8;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use Ocdz::Test qw(:all);
use Ocdz::Poller qw(:all);
use Ocdz::Test::Env qw(PYTHON repo_root);
use Ocdz::Test::Proc qw(spawn);
use Ocdz::Test::Sanitizer qw(sanitizer_env);
require_module();

# Names resolved the nginx way (issue 14): workers never resolve a name
# (no getaddrinfo, no libcurl resolver thread). Without "resolver" the
# master resolves the API host at configuration read ("nginx -t" fails
# for a name that does not resolve); with it, each worker resolves it
# with nginx's resolver, follows its changes, and keeps the last
# addresses while lookups fail.

my ($pg, $mock, $dir) = poller_env();

# every getaddrinfo() call of nginx's processes, with the caller's pid
my $shim = "$dir/gai_shim.so";
my ($rc, $out, $err) = run_cmd(['cc', '-shared', '-fPIC', '-o', $shim,
                                repo_root() . '/t/lib/gai_shim.c', '-ldl']);
is($rc, 0, 'the getaddrinfo shim builds') or diag "$out$err";
my $gai_log = "$dir/gai.log";
my $preload = join ':', grep { defined }
    sanitizer_env($dir)->{LD_PRELOAD}, $shim;
my %shim_env = (LD_PRELOAD => $preload, OCDZ_GAI_LOG => $gai_log);

# the getaddrinfo() calls of names: { pid => [names] }. Numeric ones
# are left out: libpq hands its "host=127.0.0.1" to getaddrinfo(),
# which only parses it (no lookup).
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
        skip 'master_process off: no workers', 1 if single_process();
        my $c = gai_calls();
        my @w = grep { $c->{$_} } $ngx->worker_pids(all => 1);
        ok(!@w, "$name: no worker called getaddrinfo")
            or diag explain { map { $_ => $c->{$_} } @w };
    }
}

sub threads_of ($pid) {
    opendir(my $d, "/proc/$pid/task") or return -1;
    return scalar grep { !/^\./ } readdir $d;
}

sub fulfil ($n, $name, $timeout = 15) {
    my @ids = map { my $id = random_topup_id();
                    $mock->set_order($id, status => 'FULFILLED');
                    $pg->insert_order(topup_id => $id); $id } 1 .. $n;
    my $in = join ',', map { "'$_'" } @ids;
    ok(wait_until(sub {
        $pg->value("SELECT count(*) FROM ocdz.orders WHERE topup_id IN ($in)"
                   . " AND status = 'FULFILLED'") == $n
    }, timeout => $timeout), $name);
}

# --- without "resolver": the master resolves at configuration read -------

{
    my $conf = poller_conf(directives => [
        api_base => 'https://no-such-host.invalid']);
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir }, conf => $conf);
    my ($rc, $out) = $ngx->test_config;
    isnt($rc, 0, 'nginx -t fails for an API host that does not resolve');
    my @emerg = $out =~ /(\[emerg\].*)/g;
    is(scalar @emerg, 1, 'one [emerg]') or diag $out;
    like($emerg[0] // '', qr/ocdz_api_base host "no-such-host\.invalid" not found/,
         'it names the directive and the host');

    # the same for the proxy's host
    $conf = poller_conf(directives => [
        api_base => '%%MOCK_BASE%%',
        api_proxy => 'http://no-such-proxy.invalid:3128']);
    $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir }, conf => $conf);
    ($rc, $out) = $ngx->test_config;
    like($out, qr/\[emerg\].*ocdz_api_proxy host "no-such-proxy\.invalid" not found/,
         'nginx -t fails for a proxy host that does not resolve');

    # poller off: the API is never called, its host not looked up
    $conf = poller_conf(directives => [
        api_base => 'https://no-such-host.invalid', poller => 'off']);
    $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir }, conf => $conf);
    ($rc, $out) = $ngx->test_config;
    is($rc, 0, 'poller off: the API host is not looked up') or diag $out;
}

# The API as "wrong.example": the mock's listener with a CA-signed
# certificate for that name. A name libcurl would resolve with
# getaddrinfo() ("localhost" it resolves by itself). Without "resolver"
# the name comes from /etc/hosts: nginx runs in a mount namespace of its
# own where /etc/hosts has it (unshare, as root).
my $api_name = 'wrong.example';
my $api_port = $mock->{extra}{wrongname};
write_file("$dir/hosts", "127.0.0.1 localhost\n127.0.0.1 $api_name\n");
my @with_hosts = ('unshare', '-m', '--propagation', 'private', 'sh', '-c',
                  "mount --bind $dir/hosts /etc/hosts && exec \"\$@\"", 'sh');
my ($urc) = run_cmd([@with_hosts, 'getent', 'hosts', $api_name]);

SKIP: {
    skip 'no private /etc/hosts here (unshare -m as root)', 8 if $urc;
    skip 'under valgrind: no wrapper of ours', 8 if single_process();
    unlink $gai_log;
    my $conf = poller_conf(directives => [
        api_base => "https://$api_name:$api_port"]);
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir }, conf => $conf, env => \%shim_env,
        wrapper => \@with_hosts, error_log_level => 'info');
    $ngx->start;
    fulfil(4, 'a host name without resolver: checks are answered');
    no_worker_lookup($ngx, 'no resolver');
    ok(grep({ $_ eq $api_name } @{ gai_calls()->{ $ngx->pid } // [] }),
       'the master looked the name up') or diag explain gai_calls();
    my $before = scalar map { @$_ } values %{ gai_calls() };
    ok($ngx->reload(wait_old_exit => 1, timeout => 15), 'reload');
    my $after = scalar map { @$_ } values %{ gai_calls() };
    ok($after > $before, 'a reload looks the name up again');
    fulfil(2, 'after the reload: checks are answered');
    no_worker_lookup($ngx, 'no resolver, after a reload');
    $ngx->stop;
}

# --- with "resolver": each worker asks nginx's resolver ------------------

my $dns_port = free_port();
my $dns_mode = "$dir/dns_mode";
my $dns_log = "$dir/dns.log";
replace_file($dns_mode, '127.0.0.1');
my $dns_pid = spawn([PYTHON, repo_root() . '/t/lib/dns_server.py',
                     $dns_port, $dns_mode, $dns_log],
                    log => "$dir/dns.out");

# the mock behind 127.0.0.1 and 127.0.0.2 on one port: which address
# each connection came to is logged
my $fwd_port = free_port();
my $fwd_target = write_file("$dir/fwd_target", $api_port);
my $fwd_log = "$dir/fwd.log";
my @fwd = map {
    spawn([PYTHON, repo_root() . '/t/lib/tcp_forward.py', $_, $fwd_port,
           $fwd_target, $fwd_log], log => "$dir/fwd-$_.out")
} qw(127.0.0.1 127.0.0.2);
END { kill 'KILL', grep { $_ } $dns_pid, @fwd }
ok(wait_until(sub {
    !grep { !IO::Socket::INET->new(PeerAddr => "$_:$fwd_port") }
          qw(127.0.0.1 127.0.0.2)
}, timeout => 10), 'the mock answers at 127.0.0.1 and 127.0.0.2');

sub connections_to ($addr) {
    return scalar grep { $_ eq $addr }
                  split /\n/, -e $fwd_log ? slurp($fwd_log) : '';
}

{
    unlink $gai_log;
    my $conf = poller_conf(
        directives => [api_base => "https://$api_name:$fwd_port",
                       api_timeout => '2s', poller_interval => '200ms'],
        http => "    resolver 127.0.0.1:$dns_port valid=1s ipv6=off;\n"
              . "    resolver_timeout 1s;");
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir }, conf => $conf, env => \%shim_env,
        error_log_level => 'info');
    my ($rc, $out) = $ngx->test_config;
    is($rc, 0, 'with resolver: nginx -t passes without looking the name up')
        or diag $out;
    $ngx->start;

    # (the probes above connected once to each)
    my %base = map { $_ => connections_to($_) } qw(127.0.0.1 127.0.0.2);
    fulfil(4, 'resolved by nginx\'s resolver: checks are answered');
    ok(connections_to('127.0.0.1') > $base{'127.0.0.1'}
       && connections_to('127.0.0.2') == $base{'127.0.0.2'},
       'the checks went to 127.0.0.1');
    like(slurp($dns_log), qr/^1 \Q$api_name\E 127\.0\.0\.1$/m,
         'the test DNS server was asked');

    # the name moves
    replace_file($dns_mode, '127.0.0.2');
    my $n2 = connections_to('127.0.0.2');
    ok(wait_until(sub {
        my $id = random_topup_id();
        $mock->set_order($id, status => 'FULFILLED');
        $pg->insert_order(topup_id => $id);
        sleep 0.5;
        connections_to('127.0.0.2') > $n2;
    }, timeout => 15), 'the checks follow the name to 127.0.0.2');
    my $n1 = connections_to('127.0.0.1');
    fulfil(4, 'after the change: checks are answered');
    # a worker may have been between two lookups; within a few seconds
    # none connects to the old address any more
    sleep 2;
    $n1 = connections_to('127.0.0.1');
    fulfil(4, 'new checks are answered');
    is(connections_to('127.0.0.1'), $n1, 'no new connection to 127.0.0.1');

    # lookups fail: the last addresses are kept, [error] once per worker
    my $mark = $ngx->log_mark;
    replace_file($dns_mode, 'fail');
    ok(wait_until(sub { $ngx->error_log($mark) =~ /could not be resolved/ },
                  timeout => 10), 'a failed lookup is logged');
    sleep 3;
    fulfil(4, 'while lookups fail: checks are answered at the last address');
    my $log = $ngx->error_log($mark);
    my %start;
    $start{$1}++ while $log =~ /\[error\] (\d+)#\d+: .*ocdz: ocdz_api_base host "\Q$api_name\E" could not be resolved: .*its last addresses are used/g;
    ok(%start && !grep({ $_ > 1 } values %start),
       'one [error] per worker while lookups fail ('
       . join(', ', map { "$_: $start{$_}" } sort keys %start) . ')');

    replace_file($dns_mode, '127.0.0.2');
    ok(wait_until(sub { $ngx->error_log($mark) =~ /\[error\].*ocdz: ocdz_api_base host "\Q$api_name\E" resolves again after/ },
                  timeout => 10), 'its end is logged at [error]');

    no_worker_lookup($ngx, 'with resolver');
    is(scalar keys %{ gai_calls() }, 0, 'no process called getaddrinfo')
        or diag explain gai_calls();
    SKIP: {
        skip 'master_process off: no workers', 1 if single_process();
        my @t = map { threads_of($_) } $ngx->worker_pids;
        ok(!grep({ $_ != 1 } @t), "each worker has one thread (@t)");
    }

    # a graceful quit is not held by the lookups' timers
    my $t0 = time;
    $ngx->quit;
    ok(time - $t0 < 5 * slow_factor(), sprintf 'quit in %.1f s', time - $t0);
}

done_testing;

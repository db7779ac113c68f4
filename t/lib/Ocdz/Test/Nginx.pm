package Ocdz::Test::Nginx;

# Debian's nginx loading the built module, one instance per object: a
# configuration written from a template (%%NAME%% placeholders), started
# in the foreground as a child, reloaded, stopped; its workers, its logs
# (the error log checked at the end: one assertion), and requests to it
# through Ocdz::Test::HTTP's client.

use v5.36;
use Carp qw(croak);
use File::Path qw(make_path);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Test::More ();
use Test2::API ();
use Time::HiRes qw(time sleep);
use Ocdz::Test::Env qw(module_path nginx_bin run_mode single_process
                       slow_factor);
use Ocdz::Test::Files qw(tmpdir write_file slurp);
use Ocdz::Test::Proc qw(run_cmd wait_until free_port register_cleanup
                       spawn);
use Ocdz::Test::Data qw(json_decode);
use Ocdz::Test::PKI qw(pki);
use Ocdz::Test::HTTP qw(http_request parse_response);
use Ocdz::Test::Sanitizer qw(sanitizer_env sanitizer_wrapper
                             sanitizer_reports);

# "runtime error:": UBSan next to ASan (GCC) ignores log_path and writes
# to stderr, which nginx sends to the error log
my $BAD_LINE = qr/^\S+ \S+ \[(?:alert|emerg|crit)\]
                 |exited[ ]on[ ]signal
                 |open[ ]socket[ ]\#\d+[ ]left[ ]in[ ]connection
                 |runtime[ ]error:/x;

# Options:
#   conf => TEMPLATE     the configuration after the main-context header
#                        (usually an http { } block); %%NAME%% are
#                        replaced from vars and the built-ins
#   vars => { NAME => VALUE }
#   workers => N         worker_processes (default 2)
#   worker_connections => N   (default 1024)
#   ports => N           free ports to allocate: %%PORT%%, %%PORT2%%...
#   main => TEXT         more main-context directives (after the header)
#   header => 0          no header at all (the template is the whole file;
#                        load_module is still added unless load_module => 0)
#   load_module => 0     do not load the ocdz module
#   error_log_level => 'debug' (default)
#   http_common => 0     do not add access_log/temp paths to "http {"
#   expect => [qr//...]  alert/emerg/crit lines that are expected
#   check_log => 0       no automatic error log assertion at stop
#   env => { K => V }    environment of the nginx process (LD_PRELOAD...)
#   wrapper => [CMD...]  run nginx under a command (valgrind ...)
#   module => PATH       default module_path()
# Built-in vars: PORT PORT2.. MODULE PREFIX (no trailing slash);
# SERVER_CERT SERVER_KEY TEST_CA (the test PKI, for ssl listeners);
# with pg => $pg: PGCONNINFO, PG_PASSWORD_FILE (if a password is set);
# with mock => $mock: MOCK_BASE CA_FILE TOKEN_FILE SECONDARY_TOKEN_FILE.
sub new ($class, %o) {
    my $self = bless { o => \%o, owner => $$, workers => $o{workers} // 2,
                       expect => [ @{ $o{expect} // [] } ] }, $class;
    # how many workers start() and reload() wait for
    $self->{wait_workers} = single_process() ? 0
                          : ($o{header} // 1) ? $self->{workers}
                          : $o{workers} // 0;
    register_cleanup($self, 0);       # first: it talks to the others
    my $p = $self->{prefix} = tmpdir();
    make_path("$p/logs", "$p/conf", "$p/tmp");
    $self->{ports} = [ map { free_port() } 1 .. ($o{ports} // 1) ];
    $self->{conf_file} = "$p/conf/nginx.conf";
    $self->write_conf($o{conf}, %{ $o{vars} // {} }) if defined $o{conf};
    return $self;
}

# The environment nginx runs with: the run mode's (ASan) plus env => {}.
sub _env ($self) {
    return { %{ sanitizer_env("$self->{prefix}/logs") },
             %{ $self->{o}{env} // {} } };
}

sub _wrapper ($self) {
    return $self->{o}{wrapper} || sanitizer_wrapper("$self->{prefix}/logs");
}

sub prefix ($self)        { $self->{prefix} }
sub conf_file ($self)     { $self->{conf_file} }
sub port ($self, $n = 1)  { $self->{ports}[$n - 1] }
sub base_url ($self)      { "http://127.0.0.1:$self->{ports}[0]" }
sub pid ($self)           { $self->{pid} }
sub error_log_file ($self) { "$self->{prefix}/logs/error.log" }
sub access_log_file ($self) { "$self->{prefix}/logs/access.log" }

sub vars ($self) {
    my %v = (MODULE => $self->{o}{module} // module_path(),
             PREFIX => $self->{prefix});
    for my $i (1 .. @{ $self->{ports} }) {
        $v{ $i == 1 ? 'PORT' : "PORT$i" } = $self->{ports}[$i - 1];
    }
    if (my $pg = $self->{o}{pg}) {
        $v{PGCONNINFO} = $pg->conninfo;
        $v{PG_PASSWORD_FILE} = $pg->password_file if $pg->password_file;
    }
    if (my $m = $self->{o}{mock}) {
        $v{MOCK_BASE} = $m->base_url;
        $v{CA_FILE} = $m->ca_file;
        $v{TOKEN_FILE} = $m->token_file;
        $v{SECONDARY_TOKEN_FILE} = $m->secondary_token_file
            if $m->secondary_token_file;
    }
    return \%v;
}

# Writes conf/nginx.conf from a template (%vars over the built-ins);
# returns the text written. Dies on an unknown %%NAME%%.
# Variables are sticky: a later write_conf or reload(vars => ...) only
# needs the ones that change. $tmpl undef: the last template.
sub write_conf ($self, $tmpl, %vars) {
    my $o = $self->{o};
    $tmpl //= $self->{tmpl} // croak 'write_conf: no template';
    $self->{tmpl} = $tmpl;
    $self->{cur_vars} = { %{ $self->{cur_vars} // $o->{vars} // {} },
                          %vars };
    my %v = (%{ $self->vars }, %{ $self->{cur_vars} });
    my $head = '';
    if ($o->{load_module} // 1) {
        $head .= "load_module %%MODULE%%;\n";
    }
    if ($o->{header} // 1) {
        my $lvl = $o->{error_log_level} // 'debug';
        my $master = single_process() ? 'off' : 'on';
        $head .= "daemon off;\nmaster_process $master;\n"
            . "worker_processes $self->{workers};\nuser root;\n"
            . "error_log %%PREFIX%%/logs/error.log $lvl;\n"
            . "pid %%PREFIX%%/logs/nginx.pid;\n"
            . "events { worker_connections "
            . ($o->{worker_connections} // 1024) . "; }\n";
        $head .= "$o->{main}\n" if defined $o->{main};
    }
    my $text = $head . $tmpl;
    if ($o->{http_common} // 1) {
        # on the same line: line numbers in the template stay meaningful
        my $p = '%%PREFIX%%';
        my $common = " access_log $p/logs/access.log;"
            . " client_body_temp_path $p/tmp/body;"
            . " proxy_temp_path $p/tmp/proxy;"
            . " fastcgi_temp_path $p/tmp/fastcgi;"
            . " uwsgi_temp_path $p/tmp/uwsgi;"
            . " scgi_temp_path $p/tmp/scgi;";
        $text =~ s{^(\s*http\s*\{)}{$1$common}m;
    }
    if ($text =~ /%%(?:SERVER_CERT|SERVER_KEY|TEST_CA)%%/) {
        my $pki = pki();        # made only when a template uses it
        @v{qw(SERVER_CERT SERVER_KEY TEST_CA)} =
            @$pki{qw(server_cert server_key ca_cert)};
    }
    $text =~ s{%%([A-Z0-9_]+)%%}{
        exists $v{$1} ? $v{$1} : croak "nginx conf: no value for %%$1%%"
    }ge;
    write_file($self->{conf_file}, $text);
    $self->{conf_text} = $text;
    return $text;
}

sub conf_text ($self) { $self->{conf_text} // slurp($self->{conf_file}) }

# Line number (1-based) of the first line of the written conf matching.
sub conf_line ($self, $re) {
    my $n = 0;
    for (split /\n/, $self->conf_text) {
        $n++;
        return $n if $_ =~ $re;
    }
    return undef;
}

# nginx -t (dump => 1: -T). Returns (exit code, combined output).
# Messages go to stderr and logs/test.log, never to error.log.
sub test_config ($self, %o) {
    my ($rc, $out, $err) = run_cmd([nginx_bin(), $o{dump} ? '-T' : '-t',
        '-p', "$self->{prefix}/", '-c', $self->{conf_file},
        '-e', "$self->{prefix}/logs/test.log"], timeout => 60 * slow_factor(),
        env => $self->_env);
    $self->{tested} = 1;
    return ($rc, $err . $out);
}

# Starts nginx in the foreground as a child (its own process group) and
# waits until every port accepts and the workers are up. Dies with the
# error log on failure, unless may_fail => 1 (then returns 0).
sub start ($self, %o) {
    croak 'nginx already running' if $self->{pid};
    croak 'no configuration written' unless -f $self->{conf_file};
    my $p = $self->{prefix};
    my @cmd = (@{ $self->_wrapper }, nginx_bin(),
               '-p', "$p/", '-c', $self->{conf_file},
               '-e', "$p/logs/error.log");
    $self->{pid} = spawn(\@cmd, log => "$p/logs/stderr.log",
                         env => $self->_env);
    $self->{started} = 1;
    $self->{checked} = 0;
    $self->{exit} = undef;
    my $timeout = $o{timeout} // 10;
    my $ok = wait_until(sub {
        return 1 if $self->_reap;
        for my $port (@{ $self->{ports} }) {
            next unless $self->conf_text =~ /\b$port\b/;
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                PeerPort => $port, Proto => 'tcp', Timeout => 1)
                or return 0;
            close $s;
        }
        return $self->worker_pids >= $self->{wait_workers};
    }, timeout => $timeout);
    if (!$ok || !$self->{pid}) {
        my $why = $self->{pid} ? 'did not come up' : "exited ($self->{exit})";
        $self->_kill_group('KILL') if $self->{pid};
        my $msg = "nginx $why:\n" . $self->error_log
                . slurp("$p/logs/stderr.log");
        return 0 if $o{may_fail};
        croak $msg;
    }
    return 1;
}

sub running ($self) { $self->{pid} && !$self->_reap }

# started, or run with -t under a sanitizer (its reports are checked)
sub _used ($self) {
    return $self->{started} || ($self->{tested} && run_mode() eq 'asan');
}

# Non-blocking: true (and clears pid) once the master has exited.
sub _reap ($self) {
    return 1 unless $self->{pid};
    my $r = waitpid($self->{pid}, WNOHANG);
    return 0 unless $r == $self->{pid};
    $self->{exit} = Ocdz::Test::Proc::exit_status($?);
    $self->{last_pid} = $self->{pid};
    $self->{pid} = 0;
    return 1;
}

sub exit_code ($self) { $self->{exit} }

sub _children ($self, $re) {
    my $master = $self->{pid} or return ();
    my @p;
    opendir my $dh, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $stat = slurp("/proc/$pid/stat");
        next unless $stat =~ /^\d+ \(.*\) \S (\d+)/s && $1 == $master;
        my $cmd = slurp("/proc/$pid/cmdline");
        $cmd =~ tr/\0/ /;
        push @p, $pid if $cmd =~ $re;
    }
    my @s = sort { $a <=> $b } @p;
    return @s;
}

# Pids of the current workers (not those shutting down); all => 1 too.
sub worker_pids ($self, %o) {
    return $self->_children($o{all} ? qr/worker process/
                                    : qr/worker process\s*$/);
}

sub _kill_group ($self, $sig) {
    my $pid = $self->{pid} || $self->{last_pid} or return;
    kill $sig, -$pid;
}

sub signal ($self, $sig) {
    croak 'nginx not running' unless $self->{pid};
    kill $sig, $self->{pid};
}

# HUP and wait until a full set of new workers runs and no old worker
# is still a plain "worker process" (returns 1), or timeout (returns 0:
# e.g. the new configuration was refused).
# Options: timeout (10), conf => TEMPLATE and/or vars => {} rewrite the
# configuration first (vars are merged over the current ones),
# wait_old_exit => 1 waits until the old workers are gone altogether.
sub reload ($self, %o) {
    $self->write_conf($o{conf}, %{ $o{vars} // {} })
        if defined $o{conf} || $o{vars};
    my %old = map { $_ => 1 } $self->worker_pids(all => 1);
    my $mark = $self->log_mark;
    $self->signal('HUP');
    if (!$self->{wait_workers}) {
        # one process (valgrind): it reconfigures itself
        my $r = wait_until(sub {
            my $log = $self->error_log($mark);
            return -1 if $log =~ /\[emerg\]/ || $self->_reap;
            return $log =~ /reconfiguring.*using the "\w+" event method/s
                   ? 1 : 0;
        }, timeout => $o{timeout} // 10);
        sleep 0.2 * slow_factor() if $r == 1;
        return $r == 1 ? 1 : 0;
    }
    return wait_until(sub {
        my @cur = $self->worker_pids(all => !!$o{wait_old_exit});
        return 1 if !grep({ $old{$_} } @cur)
                    && grep({ !$old{$_} } @cur) >= $self->{wait_workers};
        # the master refused the new configuration, or died
        return -1 if $self->error_log($mark) =~ /\[emerg\]/ || $self->_reap;
        return 0;
    }, timeout => $o{timeout} // 10) == 1 ? 1 : 0;
}

# Graceful stop (QUIT), waits for the master; escalates to TERM then
# KILL (failing a test) after timeout (10 s). Returns the exit code.
# Checks the error log (an assertion) unless check_log => 0.
sub quit ($self, %o) { $self->_stop('QUIT', %o) }

# Fast stop (TERM).
sub stop ($self, %o) { $self->_stop('TERM', %o) }

sub _stop ($self, $sig, %o) {
    if ($self->{pid}) {
        kill $sig, $self->{pid};
        my $ok = wait_until(sub { $self->_reap }, timeout => $o{timeout} // 10);
        if (!$ok) {
            Test::More::ok(0, "nginx exits on SIG$sig within "
                              . ($o{timeout} // 10) . ' s')
                unless Test2::API::test2_is_testing_done();
            $self->_kill_group('KILL');
            wait_until(sub { $self->_reap }, timeout => 5);
        }
        # no worker may outlive the master
        $self->_kill_group('KILL');
    }
    $self->check_log_clean
        if ($o{check_log} // $self->{o}{check_log} // 1)
           && $self->_used && !$self->{checked}++;
    return $self->{exit};
}

sub error_log ($self, $from = 0) { slurp($self->error_log_file, $from) }
sub access_log ($self, $from = 0) { slurp($self->access_log_file, $from) }
sub stderr_log ($self) { slurp("$self->{prefix}/logs/stderr.log") }
sub log_mark ($self) { -s $self->error_log_file // 0 }

# Waits until the error log (from a mark) matches; returns the match.
sub wait_for_log ($self, $re, %o) {
    my $from = $o{from} // 0;
    my $m;
    wait_until(sub { ($m) = $self->error_log($from) =~ /($re)/; defined $m },
               timeout => $o{timeout} // 10);
    return $m;
}

# Adds patterns of expected alert/emerg/crit lines.
sub expect ($self, @re) { push @{ $self->{expect} }, @re }

# The alert/emerg/crit, "exited on signal", "open socket left" and UBSan
# "runtime error:" lines not matched by an expected pattern.
sub bad_log_lines ($self, %o) {
    my @expect = grep { defined }
                 (@{ $self->{expect} }, @{ $o{expect} // [] });
    my @bad;
    for my $l (split /\n/, $self->error_log($o{from} // 0)
                           . $self->stderr_log) {
        next unless $l =~ $BAD_LINE;
        next if grep { $l =~ $_ } @expect;
        push @bad, $l;
    }
    push @bad, grep { my $r = $_; !grep { $r =~ $_ } @expect }
               sanitizer_reports("$self->{prefix}/logs");
    return @bad;
}

# ok() that the error log is clean; options expect => [qr//], from =>
# mark, name => test name.
sub check_log_clean ($self, %o) {
    my @bad = $self->bad_log_lines(%o);
    my $name = $o{name} // "nginx error log clean ($self->{prefix})";
    if (Test2::API::test2_is_testing_done()) {
        Test::More::diag("$name: NOT CLEAN:\n" . join "\n", @bad) if @bad;
        return !@bad;
    }
    my $ok = Test::More::ok(!@bad, $name);
    Test::More::diag(join "\n", splice(@bad, 0, 30)) if @bad;
    return $ok;
}

# http($method, $path, %o): Ocdz::Test::HTTP::http_request to this
# instance, on its first port unless port => N.
sub http ($self, $method, $path, %o) {
    return http_request($method, $path, %o,
                        port => $o{port} // $self->{ports}[0]);
}

# The old name of Ocdz::Test::HTTP::parse_response.
sub _parse_response ($resp, $method) { parse_response($resp, $method) }

sub http_get ($self, $path, %o) {
    return $self->http($o{method} // 'GET', $path, %o);
}

# Like http(), the body decoded as JSON: (status, headers, data or undef,
# raw body).
sub http_json ($self, $method, $path, %o) {
    my ($s, $h, $b) = $self->http($method, $path, %o);
    return ($s, $h, json_decode($b), $b);
}

sub _shutdown ($self, $why) {
    return unless $self->{owner} == $$;
    if ($why eq 'END') {
        if ($self->{pid}) {
            $self->_kill_group('TERM');
            wait_until(sub { $self->_reap }, timeout => 5);
            $self->_kill_group('KILL');
            wait_until(sub { $self->_reap }, timeout => 2);
        }
        # checked already: nothing to say (and at global destruction
        # the expect patterns may be gone)
        my @bad = !$self->{checked} && -e $self->error_log_file
                ? $self->bad_log_lines : ();
        print STDERR "# nginx error log ($self->{prefix}) not clean:\n"
            . join('', map { "#   $_\n" } @bad) if @bad;
        return;
    }
    $self->quit if $self->{pid} || ($self->_used && !$self->{checked});
}

sub DESTROY ($self) {
    return unless $self->{owner} == $$;
    if (${^GLOBAL_PHASE} eq 'DESTRUCT') {
        $self->_shutdown('END');
    } else {
        $self->_shutdown('destroy');
    }
}

1;

__END__

=head1 NAME

Ocdz::Test::Nginx - part of the test harness (see Ocdz::Test)

=head1 API

  my $ngx = Ocdz::Test::Nginx->new(conf=>TEMPLATE, vars=>{}, workers=>2,
      ports=>1, main=>'...', header=>1, load_module=>1, http_common=>1,
      error_log_level=>'debug', expect=>[qr//], check_log=>1, env=>{},
      worker_connections=>1024,
      wrapper=>[...], module=>PATH, pg=>$pg, mock=>$mock);
  $ngx->write_conf($template_or_undef, %vars)   vars are sticky
  $ngx->conf_text  conf_file  conf_line(qr//)  prefix  port($n)  base_url
  $ngx->test_config(dump=>1)      -> (exit code, output of nginx -t/-T)
  $ngx->start(timeout=>10, may_fail=>1)
  $ngx->reload(vars=>{}, conf=>, timeout=>10, wait_old_exit=>1) -> 1/0
  $ngx->quit(timeout=>10)  $ngx->stop(...)   -> exit code; checks the log
  $ngx->pid  worker_pids(all=>1)  signal('USR1')  running  exit_code
  $ngx->error_log($from)  access_log($from)  stderr_log  log_mark
  $ngx->wait_for_log(qr//, from=>, timeout=>)
  $ngx->expect(qr//...)  bad_log_lines(%o)
  $ngx->check_log_clean(expect=>[], from=>$mark, name=>)   one ok()
  $ngx->http($method, $path, headers=>{} or [[n, v]], body=>, port=>,
      host=>'localhost', timeout=>10, tls=>1, sni=>, raw=>$bytes)
      -> (status, {lc name => value, ':all' => [[n, v]...],
                   ':status_line', ':error'}, body)
  $ngx->http_get($path, method=>'GET', ...)
  $ngx->http_json($method, $path, ...)  -> (status, headers, data, raw)

A nginx instance that was started has its error log checked (one
assertion) when it is stopped, quit, destroyed, or at done_testing:
[alert], [emerg], [crit], "exited on signal", "open socket #N left
in connection" and UBSan's "runtime error:" lines fail it unless they
match an expect pattern; so do sanitizer and valgrind reports that
concern the module.

=cut

package Ocdz::Test;

# Test harness for ngx_http_ocdz_module: throwaway PostgreSQL clusters,
# the mock OneClickDz upstream, nginx instances, and small helpers.
#
# Perl 5.36 core only. Every process started here (postgres, the mock,
# nginx) is stopped when the object goes away, at done_testing, or in an
# END block, even when the test dies.
#
#   use Test::More;
#   use Ocdz::Test qw(:all);
#
#   my $pg   = Ocdz::Test::Pg->start;
#   my $mock = Ocdz::Test::Mock->start;
#   my $ngx  = Ocdz::Test::Nginx->new(conf => <<'EOF', vars => {...});
#   http {
#       ocdz_db "%%PGCONNINFO%%";
#       server { listen 127.0.0.1:%%PORT%%; ... }
#   }
#   EOF
#   $ngx->start;
#   my ($status, $headers, $body) = $ngx->http_get('/card/...');
#   done_testing;      # nginx error logs are checked here (assertions)
#
# See the POD at the end for the whole API.

use v5.36;
use Carp qw(croak);
use Cwd qw(abs_path);
use Digest::SHA qw(sha256 sha256_hex hmac_sha256);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp ();
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 encode_base64url);
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(weaken blessed);
use Test::More ();
use Test2::API ();
use Time::HiRes qw(time sleep);

our (@EXPORT_OK, %EXPORT_TAGS);
BEGIN { @EXPORT_OK = qw(
    repo_root module_path tool_path nginx_bin have_module require_module
    free_port tmpdir write_file slurp append_file
    random_hex random_card_code random_topup_id random_token
    write_key_file sha256_hex sha256_raw hmac_sha256_raw jwt_hs256 b64url
    secret_forms assert_no_secret find_secret wait_until run_cmd
    json_encode json_decode pki sql_quote curl_https
    run_mode under_valgrind under_asan single_process slow_factor
); %EXPORT_TAGS = (all => \@EXPORT_OK) }

my $OWNER = $$;          # only this process cleans up (not forked kids)
my @LIVE;                # weak refs to every live object, for cleanup
my %PORTS_GIVEN;

use constant PG_BIN   => '/usr/lib/postgresql/15/bin';
use constant PYTHON   => '/usr/bin/python3';

# at load time: a test may chdir later
my $ROOT = abs_path(dirname(__FILE__) . '/../../..');

sub repo_root { $ROOT }

sub module_path {
    return $ENV{OCDZ_MODULE} // repo_root() . '/build/ngx_http_ocdz_module.so';
}

sub tool_path {
    return $ENV{OCDZ_TOOL} // repo_root() . '/build/ocdz-card';
}

sub nginx_bin { $ENV{OCDZ_NGINX} // '/usr/sbin/nginx' }

sub have_module { -f module_path() }

# plan skip_all when the module is not built (running one .t by hand);
# `make test-functional` always builds it first.
sub require_module {
    return 1 if have_module();
    Test::More::plan(skip_all => 'module not built: ' . module_path());
}

# --- processes and cleanup -------------------------------------------------

sub _register ($obj) {
    push @LIVE, $obj;
    weaken($LIVE[-1]);
}

sub _cleanup_all ($why) {
    return if $$ != $OWNER;
    # nginx first: it talks to the others
    for my $class ('Ocdz::Test::Nginx', 'Ocdz::Test::Mock', 'Ocdz::Test::Pg')
    {
        for my $o (reverse @LIVE) {
            next unless defined $o && blessed($o) && $o->isa($class);
            eval { $o->_shutdown($why); 1 } or warn "cleanup: $@";
        }
    }
    @LIVE = grep { defined } @LIVE;
}

# Assertions on the nginx error logs belong to the test: run them at
# done_testing (a follow-up of the root hub), not at global destruction.
Test2::API::test2_add_callback_testing_done(sub { _cleanup_all('done') });

END {
    local $?;
    _cleanup_all('END');
}

# A signal should still run the END blocks; a hung test should die.
# (SIGPIPE: prove or a pipe reading the output went away.)
for my $sig (qw(INT TERM HUP PIPE)) {
    $SIG{$sig} = sub {
        $SIG{PIPE} = 'IGNORE';
        print STDERR "# Ocdz::Test: caught SIG$sig, cleaning up\n";
        exit 128 + 1;
    } if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
}
if (!$SIG{ALRM} || $SIG{ALRM} eq 'DEFAULT') {
    $SIG{ALRM} = sub {
        print STDERR "# Ocdz::Test: test timed out, cleaning up\n";
        exit 142;
    };
    alarm($ENV{OCDZ_TEST_TIMEOUT} // 900 * (under_valgrind() ? 3 : 1));
}

# Run a command (array ref): returns (exit code, stdout, stderr).
# Options: stdin => STRING, env => {K => V (undef deletes)},
# timeout => SECONDS (default 120; killed: exit code 124), cwd => DIR.
sub run_cmd ($cmd, %o) {
    my $dir = tmpdir();
    my ($in, $out, $err) = map { "$dir/run.$_" } qw(in out err);
    write_file($in, $o{stdin} // '');
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        open STDIN, '<', $in;
        open STDOUT, '>', $out;
        open STDERR, '>', $err;
        chdir $o{cwd} if $o{cwd};
        while (my ($k, $v) = each %{ $o{env} // {} }) {
            if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
        }
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }
    my $deadline = time + ($o{timeout} // 120);
    my $rc;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) { $rc = _exit_code($?); last }
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $rc = 124;
            last;
        }
        sleep 0.01;
    }
    my @r = ($rc, slurp($out), slurp($err));
    File::Path::remove_tree($dir);
    return @r;
}

sub _exit_code ($st) {
    return $st & 127 ? 128 + ($st & 127) : $st >> 8;
}

# Run modes, from the Makefile: OCDZ_ASAN=1 (module built with ASan and
# UBSan, libasan preloaded into nginx), OCDZ_VALGRIND=1 (nginx under
# valgrind, master_process off: one process, no workers).
sub under_valgrind { !!$ENV{OCDZ_VALGRIND} }
sub under_asan     { !!$ENV{OCDZ_ASAN} }
sub single_process { under_valgrind() }
sub run_mode {
    return under_valgrind() ? 'valgrind' : under_asan() ? 'asan' : '';
}

# Timeouts in waits are multiplied by this (OCDZ_SLOW overrides).
sub slow_factor {
    return $ENV{OCDZ_SLOW} // (under_valgrind() ? 10 : under_asan() ? 3 : 1);
}

# Polls $cond until it returns true (returned) or timeout * slow_factor
# seconds pass (returns 0).
sub wait_until ($cond, %o) {
    my $deadline = time + ($o{timeout} // 10) * slow_factor();
    while (1) {
        my $r = $cond->();
        return $r if $r;
        return 0 if time > $deadline;
        sleep($o{interval} // 0.05);
    }
}

# --- files, ports, random ---------------------------------------------------

sub tmpdir (%o) {
    my $d = File::Temp::tempdir('ocdz-test-XXXXXX', TMPDIR => 1,
                                CLEANUP => !$ENV{OCDZ_KEEP_TMP});
    chmod 0755, $d;
    return $d;
}

sub write_file ($path, $content, $mode = undef) {
    make_path(dirname($path));
    open my $fh, '>:raw', $path or croak "write $path: $!";
    print $fh $content;
    close $fh or croak "close $path: $!";
    chmod $mode, $path if defined $mode;
    return $path;
}

sub append_file ($path, $content) {
    open my $fh, '>>:raw', $path or croak "append $path: $!";
    print $fh $content;
    close $fh;
}

sub slurp ($path, $from = 0) {
    open my $fh, '<:raw', $path or return '';
    seek $fh, $from, 0 if $from;
    local $/;
    my $c = <$fh>;
    return $c // '';
}

sub free_port {
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => 0, Proto => 'tcp',
                                      Listen => 1, ReuseAddr => 1)
            or croak "bind 127.0.0.1:0: $!";
        my $p = $s->sockport;
        close $s;
        next if $PORTS_GIVEN{$p}++;
        return $p;
    }
    croak 'no free port';
}

sub _rand_bytes ($n) {
    open my $fh, '<:raw', '/dev/urandom' or croak "urandom: $!";
    my $got = read($fh, my $buf, $n);
    croak 'short read from /dev/urandom' unless $got && $got == $n;
    return $buf;
}

sub random_hex ($nbytes = 16) { unpack 'H*', _rand_bytes($nbytes) }

# 16 digits, distinctive enough to grep logs for
sub random_card_code ($len = 16) {
    my $s = '';
    $s .= $_ % 10 for unpack 'C*', _rand_bytes($len);
    substr($s, 0, 1) = 1 + ord(_rand_bytes(1)) % 9;
    return $s;
}

sub random_topup_id { random_hex(12) }

sub random_token ($nbytes = 32) { b64url(_rand_bytes($nbytes)) }

sub b64url ($bytes) { encode_base64url($bytes) }

sub sha256_raw ($data) { sha256($data) }

sub hmac_sha256_raw ($data, $key) { hmac_sha256($data, $key) }

# A card key file: 64 hex characters (a random key unless given), mode
# 0600. Options: newline => 1 adds "\n", mode => 0644 for the warning
# test. Returns the hex.
sub write_key_file ($path, %o) {
    my $hex = $o{hex} // random_hex(32);
    write_file($path, $hex . ($o{newline} ? "\n" : ''), $o{mode} // 0600);
    return $hex;
}

sub json_encode ($data) { JSON::PP->new->canonical->utf8->encode($data) }

sub json_decode ($text) {
    my $r = eval { JSON::PP->new->utf8->allow_nonref->decode($text) };
    return $r;
}

# HS256 JWT. Options: header => {...} (merged over alg/typ),
# signature => STRING (replaces the computed one), key_raw => 1 (the
# secret is raw bytes; default too).
sub jwt_hs256 ($secret, $claims, %o) {
    my $h = { alg => 'HS256', typ => 'JWT', %{ $o{header} // {} } };
    my $input = b64url(json_encode($h)) . '.' . b64url(json_encode($claims));
    my $sig = $o{signature} // b64url(hmac_sha256($input, $secret));
    return "$input.$sig";
}

sub sql_quote ($v) {
    return 'NULL' unless defined $v;
    (my $q = $v) =~ s/'/''/g;
    return "'$q'";
}

# --- secrets in logs --------------------------------------------------------

# Every string a secret may appear as: raw, hex (both cases), and the
# base64 / base64url runs that only depend on the secret's own bytes
# (for each of the three alignments in a longer encoded string).
sub secret_forms ($secret) {
    my %f = (raw => $secret, hex => lc(unpack 'H*', $secret),
             HEX => uc(unpack 'H*', $secret));
    for my $k (0 .. 2) {
        my $e = encode_base64(("\0" x $k) . $secret, '');
        $e =~ s/=+$//;
        my $len = $k + length $secret;
        my $skip = $k ? 4 : 0;
        my $full = int($len / 3) * 4;      # chars of complete groups
        my $core = substr($e, $skip, $full - $skip);
        next if length($core) < 8;
        $f{"b64_$k"} = $core;
        (my $u = $core) =~ tr{+/}{-_};
        $f{"b64url_$k"} = $u;
    }
    return \%f;
}

# Returns a description of the first form of a secret found, or undef.
sub find_secret ($content, @secrets) {
    $content //= '';
    for my $s (@secrets) {
        next unless defined $s && length $s;
        my $forms = secret_forms($s);
        for my $name (sort keys %$forms) {
            my $at = index($content, $forms->{$name});
            next if $at < 0;
            my $line = 1 + (() = substr($content, 0, $at) =~ /\n/g);
            return sprintf '%s form of secret %s... at line %d', $name,
                substr($s, 0, 3), $line;
        }
    }
    return undef;
}

# ok() that none of @secrets appears in $content in any form.
sub assert_no_secret ($name, $content, @secrets) {
    my @real = grep { defined && length } @secrets;
    Test::More::diag("assert_no_secret($name): no secrets given")
        unless @real;
    my $found = find_secret($content, @real);
    my $ok = Test::More::ok(!defined $found, "no secret in $name");
    Test::More::diag("found $found") if defined $found;
    return $ok;
}

# --- certificates ------------------------------------------------------------

# Test PKI, made once per process with the openssl CLI (EC P-256):
# ca_cert ca_key, server_cert server_key (CA-signed, SAN IP:127.0.0.1,
# DNS:localhost), rogue_cert rogue_key (self-signed, same SAN),
# wrongname_cert wrongname_key (CA-signed for DNS:wrong.example only),
# client_cert client_key (CA-signed, clientAuth), dir.
sub pki {
    state $pki;
    return $pki if $pki;
    my $d = tmpdir();
    my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
              '-nodes');
    my $ssl = sub (@args) {
        my ($rc, $out, $err) = run_cmd(['openssl', @args]);
        croak "openssl @args: $err" if $rc;
    };
    $ssl->('req', '-x509', @ec, '-keyout', "$d/ca.key", '-out', "$d/ca.crt",
           '-days', '3', '-subj', '/CN=ocdz test CA',
           '-addext', 'basicConstraints=critical,CA:TRUE',
           '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    my $leaf = sub ($name, $san, $eku) {
        write_file("$d/$name.ext", "subjectAltName=$san\n"
            . "basicConstraints=CA:FALSE\n"
            . "keyUsage=critical,digitalSignature,keyEncipherment\n"
            . "extendedKeyUsage=$eku\n");
        $ssl->('req', '-new', @ec, '-keyout', "$d/$name.key",
               '-out', "$d/$name.csr", '-subj', "/CN=ocdz test $name");
        $ssl->('x509', '-req', '-in', "$d/$name.csr", '-CA', "$d/ca.crt",
               '-CAkey', "$d/ca.key", '-CAcreateserial', '-days', '3',
               '-out', "$d/$name.crt", '-extfile', "$d/$name.ext");
    };
    $leaf->('server', 'IP:127.0.0.1,DNS:localhost', 'serverAuth');
    $leaf->('wrongname', 'DNS:wrong.example', 'serverAuth');
    $leaf->('client', 'DNS:client.test', 'clientAuth');
    $ssl->('req', '-x509', @ec, '-keyout', "$d/rogue.key",
           '-out', "$d/rogue.crt", '-days', '3', '-subj', '/CN=ocdz rogue',
           '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
    chmod 0644, glob("$d/*");
    $pki = { dir => $d };
    for my $n (qw(ca server wrongname client rogue)) {
        $pki->{"${n}_cert"} = "$d/$n.crt";
        $pki->{"${n}_key"} = "$d/$n.key";
    }
    return $pki;
}

# HTTPS GET with the curl CLI, verifying against the test CA.
# Returns (status, headers {lc name => value}, body); status 0 and
# headers->{':error'} when curl failed. Options: headers => {..},
# method, cacert (default the test CA; undef with insecure => 1),
# timeout (s), data => BODY, extra => [curl args].
sub curl_https ($url, %o) {
    my $d = tmpdir();
    my @cmd = ('curl', '-sS', '-g', '--max-time', $o{timeout} // 20,
               '-o', "$d/body", '-D', "$d/head", '-w', '~~CODE=%{http_code}~~',
               '-X', $o{method} // 'GET');
    push @cmd, $o{insecure} ? '-k'
                            : ('--cacert', $o{cacert} // pki()->{ca_cert});
    while (my ($k, $v) = each %{ $o{headers} // {} }) {
        push @cmd, '-H', "$k: $v";
    }
    push @cmd, '--data-binary', $o{data} if defined $o{data};
    push @cmd, @{ $o{extra} // [] }, $url;
    my ($rc, $out, $err) = run_cmd(\@cmd, timeout => ($o{timeout} // 20) + 5);
    my %h;
    for (split /\r?\n/, slurp("$d/head")) {
        $h{lc $1} = $2 if /^([^:\s]+):\s*(.*)$/;
    }
    my $body = slurp("$d/body");
    File::Path::remove_tree($d);
    if ($rc) {
        $h{':error'} = $err;
        $h{':curl_exit'} = $rc;
        return (0, \%h, $body);
    }
    my ($code) = $out =~ /~~CODE=(\d+)~~/;
    return (0 + ($code // 0), \%h, $body);
}

# =============================================================================

package Ocdz::Test::Pg;

use v5.36;
use Carp qw(croak);
use Time::HiRes qw(time sleep);

BEGIN { Ocdz::Test->import(':all') }

# Options:
#   schema => 1            load sql/ocdz.sql (default 1)
#   password => STRING     give ocdz_module this password and require
#                          scram-sha-256 on TCP for every role but postgres
#   ssl => 1               ssl = on with the test PKI's server cert
#   log_statement => 'all' (default 'all'; 'none' to keep logs small)
#   log_connections => 1
#   settings => { name => value }   more postgresql.conf lines
# Class method: a new cluster. Object method: start a stopped cluster.
sub start ($class, %o) {
    return $class->start_server if ref $class;
    my $self = bless { o => \%o, owner => $$ }, $class;
    Ocdz::Test::_register($self);
    my $d = $self->{dir} = tmpdir();
    $self->{port} = free_port();
    my (undef, undef, $uid, $gid) = getpwnam('postgres')
        or croak 'no postgres user (apt-get install postgresql)';
    chown $uid, $gid, $d;
    chmod 0700, $d;
    my ($rc, $out, $err) = run_cmd(['runuser', '-u', 'postgres', '--',
        Ocdz::Test::PG_BIN . '/initdb', '-D', "$d/data", '-A', 'trust',
        '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']);
    croak "initdb failed ($rc): $err$out" if $rc;

    my %set = (
        listen_addresses => "'127.0.0.1'",
        port => $self->{port},
        unix_socket_directories => "'$d'",
        fsync => 'off', synchronous_commit => 'off',
        full_page_writes => 'off',
        logging_collector => 'off',
        log_line_prefix => "'%m [%p] %q%u@%d '",
        log_statement => "'" . ($o{log_statement} // 'all') . "'",
        log_connections => $o{log_connections} ? 'on' : 'off',
        log_disconnections => $o{log_connections} ? 'on' : 'off',
    );
    if ($o{ssl}) {
        my $pki = pki();
        for my $f (qw(server.crt server.key ca.crt)) {
            write_file("$d/$f", slurp("$pki->{dir}/$f"), 0600);
            chown $uid, $gid, "$d/$f";
        }
        $set{ssl} = 'on';
        $set{ssl_cert_file} = "'$d/server.crt'";
        $set{ssl_key_file} = "'$d/server.key'";
        $set{ssl_ca_file} = "'$d/ca.crt'";
        $self->{ssl_ca_file} = $pki->{ca_cert};
    }
    %set = (%set, %{ $o{settings} // {} });
    Ocdz::Test::append_file("$d/data/postgresql.conf",
        "\n# Ocdz::Test\n"
        . join('', map { "$_ = $set{$_}\n" } sort keys %set));
    if (defined $o{password}) {
        write_file("$d/data/pg_hba.conf", <<"EOF");
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
EOF
        chown $uid, $gid, "$d/data/pg_hba.conf";
    }
    $self->{log} = "$d/postgres.log";
    write_file($self->{log}, '');
    chown $uid, $gid, $self->{log};
    $self->start_server;

    if ($o{schema} // 1) {
        my $sql = Ocdz::Test::repo_root() . '/sql/ocdz.sql';
        $self->psql(slurp($sql));
    }
    if (defined $o{password}) {
        $self->psql('ALTER ROLE ocdz_module LOGIN PASSWORD '
                    . sql_quote($o{password}));
        $self->{password} = $o{password};
        $self->{password_file} = write_file("$d/ocdz_module.password",
                                            $o{password}, 0600);
    }
    return $self;
}

sub port ($self)          { $self->{port} }
sub dir ($self)           { $self->{dir} }
sub data_dir ($self)      { "$self->{dir}/data" }
sub socket_dir ($self)    { $self->{dir} }
sub log_file ($self)      { $self->{log} }
sub password ($self)      { $self->{password} }
sub password_file ($self) { $self->{password_file} }
sub ssl_ca_file ($self)   { $self->{ssl_ca_file} }

# key=value conninfo for the module; %over adds or replaces keywords
# (undef removes one), e.g. conninfo(sslmode => 'verify-full').
sub conninfo ($self, %over) {
    my @k = qw(host port dbname user);
    my %v = (host => '127.0.0.1', port => $self->{port}, dbname => 'postgres',
             user => 'ocdz_module');
    for (sort keys %over) {
        push @k, $_ unless exists $v{$_};
        $v{$_} = $over{$_};
    }
    return join ' ', map { "$_=$v{$_}" } grep { defined $v{$_} } @k;
}

sub dsn ($self, %over) { $self->conninfo(%over) }

sub uri ($self, %q) {
    my $u = "postgresql://ocdz_module\@127.0.0.1:$self->{port}/postgres";
    $u .= '?' . join '&', map { "$_=$q{$_}" } sort keys %q if %q;
    return $u;
}

sub _pg_ctl ($self, @args) {
    my ($rc, $out, $err) = run_cmd(['runuser', '-u', 'postgres', '--',
        Ocdz::Test::PG_BIN . '/pg_ctl', '-D', $self->data_dir, @args],
        timeout => 60);
    return ($rc, "$out$err");
}

sub start_server ($self) {
    my ($rc, $out) = $self->_pg_ctl('-l', $self->{log}, '-w', '-t', '30',
                                    'start');
    croak "pg_ctl start failed: $out\n" . slurp($self->{log}) if $rc;
    $self->{running} = 1;
    return 1;
}

sub stop ($self, $mode = 'fast') {
    return 1 unless $self->{running};
    my ($rc, $out) = $self->_pg_ctl('-m', $mode, '-w', 'stop');
    Test::More::diag("pg_ctl stop: $out") if $rc;
    $self->{running} = 0;
    return !$rc;
}

sub restart ($self, $mode = 'fast') {
    my ($rc, $out) = $self->_pg_ctl('-m', $mode, '-l', $self->{log}, '-w',
                                    'restart');
    croak "pg_ctl restart failed: $out" if $rc;
    $self->{running} = 1;
    return 1;
}

sub is_running ($self) { $self->{running} }

# Kills the backends of a role (default ocdz_module); returns how many.
sub terminate_backends ($self, $user = 'ocdz_module') {
    return $self->value('SELECT count(pg_terminate_backend(pid)) '
        . 'FROM pg_stat_activity WHERE usename = ' . sql_quote($user));
}

sub backends ($self, $user = 'ocdz_module') {
    return $self->value('SELECT count(*) FROM pg_stat_activity '
        . 'WHERE usename = ' . sql_quote($user));
}

sub log_content ($self, $from = 0) { slurp($self->{log}, $from) }
sub log_mark ($self)               { -s $self->{log} // 0 }

# Runs SQL as the superuser (or user => ROLE) over the Unix socket.
# Returns rows as array refs (NULL is undef); dies on error unless
# may_fail => 1, then returns () and sets $pg->{last_error}.
sub psql ($self, $sql, %o) {
    my @rows = $self->_psql($sql, 0, %o);
    return wantarray ? @rows : \@rows;
}

# The first column of the first row.
sub value ($self, $sql, %o) {
    my @rows = $self->_psql($sql, 0, %o);
    return @rows ? $rows[0][0] : undef;
}

# Rows as hash refs (column name => value); one statement only.
sub hashes ($self, $sql, %o) {
    my ($head, @rows) = $self->_psql($sql, 1, %o);
    return () unless $head;
    my @out;
    for my $r (@rows) {
        my %h;
        @h{@$head} = @$r;
        push @out, \%h;
    }
    return @out;
}

sub _psql ($self, $sql, $header, %o) {
    # CSV: quoting keeps values with newlines and several statements'
    # rows unambiguous; NULL is a bare \x18
    my @cmd = ('psql', '-X', '-q', '-h', $self->{dir}, '-p', $self->{port},
               '-U', $o{user} // 'postgres', '-d', $o{dbname} // 'postgres',
               '-v', 'ON_ERROR_STOP=1', '--csv', '-P', "null=\x18",
               '-f', '-');
    push @cmd, '-t' unless $header;
    my ($rc, $out, $err) = run_cmd(\@cmd, stdin => $sql, timeout => 60);
    if ($rc) {
        $self->{last_error} = $err;
        return () if $o{may_fail};
        croak "psql failed: $err\nSQL: " . substr($sql, 0, 500);
    }
    $self->{last_error} = undef;
    return _parse_csv($out);
}

sub _parse_csv ($text) {
    my (@rows, @row);
    pos($text) = 0;
    while (pos($text) < length $text) {
        if ($text =~ /\G"((?:[^"]|"")*)"/gc) {
            (my $v = $1) =~ s/""/"/g;
            push @row, $v;
        } elsif ($text =~ /\G([^,\n"]*)/gc) {
            push @row, $1 eq "\x18" ? undef : $1;
        }
        if ($text =~ /\G,/gc) {
            next;
        } elsif ($text =~ /\G\n/gc || pos($text) >= length $text) {
            push @rows, [@row];
            @row = ();
        } else {
            croak 'cannot parse psql output at ' . pos($text);
        }
    }
    return @rows;
}

# Storefront helpers ---------------------------------------------------

# Inserts an order; fields: topup_id (random if absent), user_id
# ('user1'), type ('ADSL'), number ('036362608'), value (1000), ref,
# status, card_enc, next_check_at (SQL expression, e.g. "now()"), and any
# other ocdz.orders column (values are quoted). Returns the topup_id.
sub insert_order ($self, %f) {
    $f{topup_id} //= random_topup_id();
    $f{user_id}  //= 'user1';
    $f{type}     //= 'ADSL';
    $f{number}   //= '036362608';
    $f{value}    //= 1000;
    my %raw = map { $_ => delete $f{$_} }
              grep { exists $f{$_} } qw(next_check_at lease_until created_at);
    my @cols = ((sort keys %f), (sort keys %raw));
    my @vals = ((map { sql_quote($f{$_}) } sort keys %f),
                (map { $raw{$_} } sort keys %raw));
    $self->psql(sprintf 'INSERT INTO ocdz.orders (%s) VALUES (%s)',
                join(', ', @cols), join(', ', @vals));
    return $f{topup_id};
}

# Stores SHA-256(token) for user; expires_in seconds (default 3600,
# negative for an expired session). Returns the token.
sub add_session ($self, $token, $user, %o) {
    my $exp = $o{expires_in} // 3600;
    $self->psql(sprintf "INSERT INTO ocdz.sessions (token_hash, user_id, "
        . "expires_at) VALUES (decode('%s', 'hex'), %s, now() + "
        . "interval '%d seconds')", sha256_hex($token), sql_quote($user),
        $exp);
    return $token;
}

# One ocdz.orders row as a hash ref (undef if none).
sub order ($self, $topup_id) {
    my ($r) = $self->hashes('SELECT * FROM ocdz.orders WHERE topup_id = '
                            . sql_quote($topup_id));
    return $r;
}

# ocdz.audit rows (hash refs), optionally for one top-up id.
sub audit ($self, $topup_id = undef) {
    return $self->hashes('SELECT * FROM ocdz.audit'
        . (defined $topup_id ? ' WHERE topup_id = ' . sql_quote($topup_id)
                             : '') . ' ORDER BY id');
}

sub _shutdown ($self, $why) {
    return unless $self->{owner} == $$;
    $self->stop('immediate') if $self->{running};
}

sub DESTROY ($self) {
    return if ${^GLOBAL_PHASE} eq 'DESTRUCT' && !$self->{running};
    $self->_shutdown('destroy');
}

# =============================================================================

package Ocdz::Test::Mock;

use v5.36;
use Carp qw(croak);
use HTTP::Tiny;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

BEGIN { Ocdz::Test->import(grep { $_ ne 'pki' } @Ocdz::Test::EXPORT_OK) }

# Options:
#   token => STRING            accepted X-Access-Token (random if absent)
#   secondary_token => STRING  a second accepted token (optional)
#   auto_fulfil => SECONDS     unknown ids exist and fulfil after SECONDS
#   plain => 1                 the API over plain HTTP (no TLS)
sub start ($class, %o) {
    my $self = bless { o => \%o, owner => $$ }, $class;
    Ocdz::Test::_register($self);
    my $d = $self->{dir} = tmpdir();
    my $pki = $self->{pki} = Ocdz::Test::pki();
    $self->{token} = $o{token} // 'tok_' . random_hex(16);
    $self->{secondary_token} = $o{secondary_token};
    $self->{token_file} = write_file("$d/token", $self->{token}, 0600);
    my @cmd = (Ocdz::Test::PYTHON,
               Ocdz::Test::repo_root() . '/t/lib/mock_oneclickdz.py',
               '--port', 0, '--token-file', $self->{token_file},
               '--ready-file', "$d/ready",
               '--extra', "rogue=$pki->{rogue_cert}:$pki->{rogue_key}",
               '--extra',
               "wrongname=$pki->{wrongname_cert}:$pki->{wrongname_key}",
               '--extra', "catcher=$pki->{server_cert}:$pki->{server_key}",
               '--extra', 'catcher_plain=plain');
    if (defined $o{secondary_token}) {
        $self->{secondary_token_file} =
            write_file("$d/token2", $o{secondary_token}, 0600);
        push @cmd, '--token-file', $self->{secondary_token_file};
    }
    push @cmd, $o{plain} ? ('--plain')
                         : ('--cert', $pki->{server_cert},
                            '--key', $pki->{server_key});
    push @cmd, '--auto-fulfil', $o{auto_fulfil} if defined $o{auto_fulfil};

    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$d/mock.log";
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $ok = wait_until(sub {
        -f "$d/ready" || waitpid($pid, WNOHANG) == $pid && ($self->{pid} = 0, 1)
    }, timeout => 15);
    croak "mock did not start:\n" . slurp("$d/mock.log")
        unless $ok && $self->{pid} && -f "$d/ready";
    my $info = json_decode(slurp("$d/ready"));
    $self->{port} = $info->{port};
    $self->{control_port} = $info->{control_port};
    $self->{extra} = $info->{extra};
    $self->{http} = HTTP::Tiny->new(timeout => 30, keep_alive => 0);
    return $self;
}

sub port ($self)            { $self->{port} }
sub pid ($self)             { $self->{pid} }
sub token ($self)           { $self->{token} }
sub secondary_token ($self) { $self->{secondary_token} }
sub token_file ($self)      { $self->{token_file} }
sub secondary_token_file ($self) { $self->{secondary_token_file} }
sub ca_file ($self)         { $self->{pki}{ca_cert} }
sub pki ($self)             { $self->{pki} }
sub log_content ($self)     { slurp("$self->{dir}/mock.log") }
sub control_url ($self)     { "http://127.0.0.1:$self->{control_port}" }

sub base_url ($self) {
    return ($self->{o}{plain} ? 'http' : 'https')
        . "://127.0.0.1:$self->{port}";
}

# Same API, self-signed certificate the test CA did not sign.
sub rogue_base_url ($self)     { "https://127.0.0.1:$self->{extra}{rogue}" }
# CA-signed, but for DNS:wrong.example only.
sub wrongname_base_url ($self) { "https://127.0.0.1:$self->{extra}{wrongname}" }
# Records requests, answers a FULFILLED order (card 6666666666666666).
sub catcher_base_url ($self)   { "https://127.0.0.1:$self->{extra}{catcher}" }
sub catcher_plain_url ($self) {
    return "http://127.0.0.1:$self->{extra}{catcher_plain}";
}

sub _ctl ($self, $method, $path, $body = undef) {
    my $r = $self->{http}->request($method, $self->control_url . $path,
        defined $body ? { content => json_encode($body),
                          headers => { 'Content-Type' => 'application/json' } }
                      : {});
    croak "mock control $method $path: $r->{status} $r->{content}"
        unless $r->{success} || ($r->{status} == 404 && $method eq 'GET');
    return $r->{status} == 404 ? undef : json_decode($r->{content});
}

# set_order($id, status => 'HANDLING', card_code =>, num_trans =>,
#   date_traitement =>, refund_message =>, type =>, number =>,
#   topup_amount =>, ref =>, created_at =>, extra => {field => value},
#   fulfil_after => SECONDS, fulfil_after_checks => N, then => STATUS)
# FULFILLED orders (and those that will be) get a random card_code and
# num_trans unless given. fulfil_after_checks => N: the first N checks
# answer the current status, check N+1 answers "then" (FULFILLED).
# Returns the public order (card fields only when FULFILLED).
sub set_order ($self, $id, %f) {
    return $self->_ctl('POST', '/order', { %f, id => $id })->{order};
}

# The stored order (with card_code even before FULFILLED, _checks), or undef.
sub order ($self, $id) { $self->_ctl('GET', "/order/$id") }

sub delete_order ($self, $id) { $self->_ctl('DELETE', "/order/$id") }

# fault(KIND, id => ID (else global), count => N, delay_ms => MS, params)
# Kinds and params: see `python3 t/lib/mock_oneclickdz.py --help`.
# Returns the fault number.
sub fault ($self, $kind, %p) {
    return $self->_ctl('POST', '/fault', { %p, kind => $kind })->{fault};
}

sub reset_faults ($self)   { $self->_ctl('POST', '/faults/reset', {}) }
sub reset ($self)          { $self->_ctl('POST', '/reset', {}) }
sub reset_requests ($self) { $self->_ctl('POST', '/requests/reset', {}) }
sub release ($self)        { $self->_ctl('POST', '/release', {}) }

sub set_tokens ($self, @tokens) {
    $self->_ctl('POST', '/tokens', { tokens => \@tokens });
}

sub set_auto_fulfil ($self, $secs) {
    $self->_ctl('POST', '/config', { auto_fulfil => $secs });
}

# Every request seen, oldest first: hash refs with method, path, id
# (check-id only), headers ([[name, value]...]), token (X-Access-Token
# or undef), time (epoch float), listener (main, rogue, wrongname,
# catcher, catcher_plain), conn (connection number: same number = a
# reused connection), client_port; conn_fault for connection faults.
# Filters: id => ID, listener => NAME, path => qr//.
sub requests ($self, %f) {
    my @r = @{ $self->_ctl('GET', '/requests')->{requests} };
    @r = grep { ($_->{id} // '') eq $f{id} } @r if defined $f{id};
    @r = grep { $_->{listener} eq $f{listener} } @r if defined $f{listener};
    @r = grep { defined $_->{path} && $_->{path} =~ $f{path} } @r
        if defined $f{path};
    return @r;
}

sub catcher_requests ($self) {
    return grep { $_->{listener} =~ /^catcher/ } $self->requests;
}

# { per_id => { ID => {count, inflight, max_inflight} }, total,
#   inflight, max_inflight, connections, faults => [...] }
sub stats ($self) { $self->_ctl('GET', '/stats') }

sub request_count ($self, $id) {
    my $s = $self->stats->{per_id}{$id};
    return $s ? $s->{count} : 0;
}

sub max_inflight ($self, $id = undef) {
    my $st = $self->stats;
    return $st->{max_inflight} unless defined $id;
    return $st->{per_id}{$id} ? $st->{per_id}{$id}{max_inflight} : 0;
}

# Calls the API like a client would (curl CLI, test CA); for tests of
# the mock itself. Returns (status, headers, body).
sub api_get ($self, $path, %o) {
    my %h = exists $o{token} ? (defined $o{token}
                                ? ('X-Access-Token' => $o{token}) : ())
                             : ('X-Access-Token' => $self->{token});
    return curl_https(($o{base} // $self->base_url) . $path,
                      headers => { %h, %{ $o{headers} // {} } }, %o);
}

sub stop ($self) {
    return 1 unless $self->{pid};
    kill 'TERM', -$self->{pid};
    my $ok = wait_until(sub { waitpid($self->{pid}, WNOHANG) == $self->{pid} },
                        timeout => 5);
    if (!$ok) {
        kill 'KILL', -$self->{pid};
        waitpid($self->{pid}, 0);
    }
    $self->{pid} = 0;
    return 1;
}

sub _shutdown ($self, $why) {
    return unless $self->{owner} == $$;
    $self->stop;
}

sub DESTROY ($self) { $self->_shutdown('destroy') }

# =============================================================================

package Ocdz::Test::Nginx;

use v5.36;
use Carp qw(croak);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

BEGIN { Ocdz::Test->import(':all') }

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
    Ocdz::Test::_register($self);
    my $p = $self->{prefix} = tmpdir();
    make_path_all("$p/logs", "$p/conf", "$p/tmp");
    $self->{ports} = [ map { free_port() } 1 .. ($o{ports} // 1) ];
    $self->{conf_file} = "$p/conf/nginx.conf";
    $self->write_conf($o{conf}, %{ $o{vars} // {} }) if defined $o{conf};
    return $self;
}

sub make_path_all (@d) { File::Path::make_path(@d) }

# A preloaded dlclose() that does nothing: nginx unloads modules at exit,
# and leak reports would lose the module's symbols. Built once.
sub _noclose_so {
    state $so;
    return $so if $so;
    my $d = tmpdir();
    write_file("$d/noclose.c",
               "int dlclose(void *handle) { (void) handle; return 0; }\n");
    my ($rc, $out, $err) = run_cmd(['cc', '-shared', '-fPIC', '-O2',
                                    '-o', "$d/noclose.so", "$d/noclose.c"]);
    croak "building noclose.so: $err" if $rc;
    return $so = "$d/noclose.so";
}

# The environment nginx runs with: env => {} plus, under ASan, the
# preloaded runtime and where reports go.
sub _env ($self) {
    my %e;
    if (under_asan()) {
        my $l = "$self->{prefix}/logs";
        my $asan = $ENV{OCDZ_ASAN_LIB}
            // '/usr/lib/x86_64-linux-gnu/libasan.so.8';
        %e = (
            LD_PRELOAD => "$asan:" . _noclose_so(),
            # exitcode=0: nginx leaks by design at exit, and a master
            # exiting 23 would fail every quit; errors and our leaks are
            # found in the reports (see _tool_reports)
            ASAN_OPTIONS => "log_path=$l/asan:abort_on_error=0:exitcode=0"
                . ':detect_leaks=1:fast_unwind_on_malloc=0'
                . ':malloc_context_size=30:detect_odr_violation=0',
            LSAN_OPTIONS => 'report_objects=0',
            UBSAN_OPTIONS => "log_path=$l/ubsan:print_stacktrace=1"
                . ':halt_on_error=1',
        );
        $e{ASAN_SYMBOLIZER_PATH} = '/usr/bin/llvm-symbolizer'
            if -x '/usr/bin/llvm-symbolizer';
    }
    return { %e, %{ $self->{o}{env} // {} } };
}

sub _wrapper ($self) {
    return $self->{o}{wrapper} if $self->{o}{wrapper};
    return [] unless under_valgrind();
    return ['valgrind', '--quiet', '--trace-children=no',
            "--log-file=$self->{prefix}/logs/valgrind.%p",
            '--leak-check=full', '--show-leak-kinds=definite',
            '--errors-for-leak-kinds=definite', '--keep-debuginfo=yes',
            '--num-callers=30', '--track-origins=yes'];
}

# Sanitizer and valgrind reports that concern us: every ASan/UBSan error;
# leaks and valgrind errors only when a frame is the module's (nginx
# leaks by design at exit). OCDZ_VALGRIND_STRICT=1: every valgrind error.
sub _tool_reports ($self) {
    my @bad;
    my $ours = qr/ocdz/;
    for my $f (sort glob("$self->{prefix}/logs/asan.*"),
               sort glob("$self->{prefix}/logs/ubsan.*")) {
        my $text = slurp($f);
        for my $block (split /\n\s*\n/, $text) {
            if ($block =~ /(Direct|Indirect) leak of/) {
                # a block of an nginx pool (the cycle's, which nginx
                # never frees at exit) is nginx's, whoever asked for it
                next if $block =~ /#1 0x\S+ in ngx_memalign /
                     || $block =~ /#1 0x\S+ in ngx_alloc .*\n.*#2 0x\S+  \(/;
                push @bad, "$f: $block" if $block =~ $ours;
            } elsif ($block =~ /ERROR:[ ]AddressSanitizer|runtime[ ]error:
                               |ERROR:[ ]LeakSanitizer:[ ](?!detected)/x) {
                push @bad, "$f: $block";
            }
        }
    }
    for my $f (sort glob("$self->{prefix}/logs/valgrind.*")) {
        (my $text = slurp($f)) =~ s/^==\d+== ?//mg;
        for my $block (split /\n\s*\n/, $text) {
            next unless $block =~ /definitely[ ]lost|Invalid[ ](read|write|free)
                                  |uninitialised|Mismatched|Syscall[ ]param
                                  |overlap|Jump[ ]to[ ]the[ ]invalid/x;
            next if $block =~ /^\s*(LEAK|HEAP|ERROR) SUMMARY/m;
            push @bad, "$f: $block"
                if $block =~ $ours || $ENV{OCDZ_VALGRIND_STRICT};
        }
    }
    return @bad;
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
            . "events { worker_connections 1024; }\n";
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
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$p/logs/stderr.log";
        open STDERR, '>&', \*STDOUT;
        my $env = $self->_env;
        while (my ($k, $v) = each %$env) {
            if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
        }
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
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
    $self->{exit} = Ocdz::Test::_exit_code($?);
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
               $self->_tool_reports;
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

# --- a small HTTP/1.1 client (Connection: close) ---------------------

# http($method, $path, %o) -> (status, headers, body) in list context,
# { status, headers, body, raw } in scalar context.
# Options: headers => {..} or [[name, value]...], body => STRING,
# port => (default the first), host => Host header ('localhost'),
# timeout => SECONDS (10), tls => 1 (IO::Socket::SSL, no verification),
# raw => STRING (sent as is, instead of building a request).
# headers: lower-case names; repeated headers joined with ", ";
# headers->{':all'} = [[name, value]...], ':status_line'. Status 0 and
# headers->{':error'} when the connection failed or timed out.
sub http ($self, $method, $path, %o) {
    my $port = $o{port} // $self->{ports}[0];
    my $timeout = ($o{timeout} // 10) * slow_factor();
    my $sock;
    if ($o{tls}) {
        require IO::Socket::SSL;
        $sock = IO::Socket::SSL->new(PeerAddr => '127.0.0.1',
            PeerPort => $port, Timeout => $timeout,
            SSL_verify_mode => 0, SSL_hostname => $o{sni} // 'localhost');
    } else {
        $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $port, Proto => 'tcp', Timeout => $timeout);
    }
    return _http_fail("connect: $!", wantarray) unless $sock;
    my $req = $o{raw};
    if (!defined $req) {
        my $h = $o{headers} // {};
        my @h = ref $h eq 'ARRAY' ? @$h : map { [$_, $h->{$_}] } sort keys %$h;
        my %seen = map { lc $_->[0] => 1 } @h;
        unshift @h, ['Host', $o{host} // 'localhost'] unless $seen{host};
        push @h, ['Connection', 'close'] unless $seen{connection};
        push @h, ['Content-Length', length $o{body}]
            if defined $o{body} && !$seen{'content-length'};
        $req = "$method $path HTTP/1.1\r\n"
             . join('', map { "$_->[0]: $_->[1]\r\n" } @h) . "\r\n"
             . ($o{body} // '');
    }
    binmode $sock;
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        return _http_fail("write: $!", wantarray) unless defined $n;
        $off += $n;
    }
    my $resp = '';
    my $sel = IO::Select->new($sock);
    my $deadline = time + $timeout;
    while (1) {
        my $left = $deadline - time;
        return _http_fail('timeout', wantarray, $resp) if $left <= 0;
        if (!($o{tls} && $sock->pending) && !$sel->can_read($left)) {
            next;
        }
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            last if length $resp;     # reset after a full answer
            return _http_fail("read: $!", wantarray);
        }
        last if $n == 0;
        $resp .= $buf;
    }
    close $sock;
    my $r = _parse_response($resp, $method);
    return wantarray ? ($r->{status}, $r->{headers}, $r->{body}) : $r;
}

sub _http_fail ($why, $list, $partial = '') {
    my $r = { status => 0, headers => { ':error' => $why }, body => '',
              raw => $partial };
    return $list ? (0, $r->{headers}, '') : $r;
}

sub _parse_response ($resp, $method) {
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    $body //= '';
    my @lines = split /\r\n/, $head // '';
    my $sl = shift(@lines) // '';
    my ($status) = $sl =~ m{^HTTP/\d\.\d (\d{3})};
    my %h = (':status_line' => $sl, ':all' => []);
    for (@lines) {
        next unless /^([^:]+):\s*(.*?)\s*$/;
        push @{ $h{':all'} }, [$1, $2];
        $h{lc $1} = exists $h{lc $1} ? "$h{lc $1}, $2" : $2;
    }
    if ($method eq 'HEAD') {
        $body = '';
    } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($body, 0, $n, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    } elsif (defined $h{'content-length'}) {
        $h{':length_mismatch'} = 1 if length($body) != $h{'content-length'};
        $body = substr($body, 0, $h{'content-length'});
    }
    return { status => 0 + ($status // 0), headers => \%h, body => $body,
             raw => $resp };
}

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

Ocdz::Test - harness for the ngx_http_ocdz_module tests

=head1 SYNOPSIS

    use Test::More;
    use Ocdz::Test qw(:all);
    require_module();

    my $pg   = Ocdz::Test::Pg->start;                 # own cluster
    my $mock = Ocdz::Test::Mock->start;               # HTTPS upstream
    my $dir  = tmpdir();
    write_key_file("$dir/k1");
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir }, conf => <<'EOF');
    http {
        ocdz_db "%%PGCONNINFO%%";
        ocdz_card_key k1 %%DIR%%/k1;
        ocdz_api_base %%MOCK_BASE%%;
        ocdz_api_ca_file %%CA_FILE%%;
        ocdz_api_token_file %%TOKEN_FILE%%;
        server {
            listen 127.0.0.1:%%PORT%%;
            location ~ "^/card/([0-9a-f]{24})$" { ocdz_card $1; }
        }
    }
    EOF
    $ngx->start;
    my ($status, $h, $body) = $ngx->http_get("/card/$id",
        headers => { Authorization => "Bearer $token" });
    done_testing;

Use C<done_testing> (not a fixed plan): every nginx instance still
running is stopped there and its error log checked, which adds one
assertion per instance.

=head1 FUNCTIONS (use Ocdz::Test qw(:all))

  repo_root module_path tool_path nginx_bin have_module
  require_module                  plan skip_all unless the .so exists
  run_cmd(\@cmd, stdin=>, env=>{}, timeout=>120, cwd=>)
                                  -> (exit code, stdout, stderr); 124 on timeout
  wait_until(sub {...}, timeout=>10, interval=>0.05)  -> the sub's value or 0
  tmpdir  free_port  write_file($path, $content, $mode)  append_file
  slurp($path, $from_offset)
  random_hex($nbytes=16)  random_card_code($digits=16)  random_topup_id
  random_token($nbytes=32)  b64url($bytes)
  write_key_file($path, hex=>, newline=>1, mode=>0644)   -> the hex (0600)
  sha256_hex  sha256_raw  hmac_sha256_raw($data, $key)
  jwt_hs256($secret, \%claims, header=>{...}, signature=>'...')
  json_encode (canonical, UTF-8)  json_decode (undef if not JSON)
  sql_quote($value)               'quoted' or NULL
  pki()                           {ca_cert ca_key server_cert server_key
                                   rogue_cert rogue_key wrongname_cert
                                   wrongname_key client_cert client_key dir}
  curl_https($url, headers=>{}, method=>, data=>, cacert=>, insecure=>1,
             timeout=>20, extra=>[curl args])
                                  -> (status, {lc header => value}, body);
                                  status 0 and ':curl_exit' on failure
  secret_forms($secret)           {raw hex HEX b64_0.. b64url_0..}
  find_secret($text, @secrets)    description of the first hit, or undef
  assert_no_secret($name, $text, @secrets)   one ok()

=head1 Ocdz::Test::Pg

  my $pg = Ocdz::Test::Pg->start(schema=>1, password=>'pw', ssl=>1,
      log_statement=>'all', log_connections=>1, settings=>{k=>v});
  $pg->port $pg->dir $pg->log_file $pg->password $pg->password_file
  $pg->ssl_ca_file
  $pg->conninfo(%override)        "host=127.0.0.1 port=N dbname=postgres
                                   user=ocdz_module" (+ overrides; undef
                                   removes a keyword)
  $pg->uri(%query)
  $pg->psql($sql, user=>, dbname=>, may_fail=>1)   rows: [[...], ...]
                                   (NULL = undef; several statements OK)
  $pg->value($sql)                first column of the first row
  $pg->hashes($sql)               ({col => value}, ...) one statement
  $pg->{last_error}               psql's stderr after may_fail
  $pg->insert_order(topup_id=>, user_id=>'user1', type=>'ADSL',
      number=>, value=>1000, status=>, card_enc=>, next_check_at=>SQL...)
                                   -> topup_id
  $pg->add_session($token, $user, expires_in=>3600)   SHA-256 stored
  $pg->order($id)  $pg->audit($id?)
  $pg->stop($mode='fast')  $pg->start  $pg->restart($mode='fast')
  $pg->terminate_backends($user='ocdz_module')   -> how many
  $pg->backends($user='ocdz_module')             -> how many
  $pg->log_content($from)  $pg->log_mark

=head1 Ocdz::Test::Mock

  my $mock = Ocdz::Test::Mock->start(token=>, secondary_token=>,
      auto_fulfil=>SECONDS, plain=>1);
  $mock->base_url  ca_file  token  token_file  secondary_token
  secondary_token_file  port  control_url  log_content
  $mock->rogue_base_url           self-signed certificate
  $mock->wrongname_base_url       CA-signed, for DNS:wrong.example
  $mock->catcher_base_url         records, answers a FULFILLED order
  $mock->catcher_plain_url        same over plain HTTP
  $mock->set_order($id, status=>, card_code=>, num_trans=>,
      date_traitement=>, refund_message=>, type=>, number=>,
      topup_amount=>, ref=>, created_at=>, extra=>{},
      fulfil_after=>SECONDS, fulfil_after_checks=>N, then=>'FULFILLED')
  $mock->order($id)  delete_order($id)
  $mock->fault($kind, id=>, count=>, delay_ms=>, ...)   (kinds: --help)
  $mock->reset_faults  reset  reset_requests  release  set_tokens(@t)
  $mock->set_auto_fulfil($seconds_or_undef)
  $mock->requests(id=>, listener=>, path=>qr//)
      ({method path id headers token time listener conn client_port}, ...)
  $mock->catcher_requests  stats  request_count($id)  max_inflight($id)
  $mock->api_get($path, token=>(undef: none), base=>, headers=>{})
  $mock->stop

=head1 Ocdz::Test::Nginx

  my $ngx = Ocdz::Test::Nginx->new(conf=>TEMPLATE, vars=>{}, workers=>2,
      ports=>1, main=>'...', header=>1, load_module=>1, http_common=>1,
      error_log_level=>'debug', expect=>[qr//], check_log=>1, env=>{},
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

=head1 ENVIRONMENT

OCDZ_MODULE, OCDZ_TOOL (default ../build/... from t/), OCDZ_NGINX
(/usr/sbin/nginx), OCDZ_TEST_TIMEOUT (900 s, then the test exits and
cleans up), OCDZ_KEEP_TMP=1 keeps the temporary directories,
MOCK_VERBOSE=1 makes the mock log every request to its log.

=cut

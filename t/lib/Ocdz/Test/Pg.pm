package Ocdz::Test::Pg;

# A throwaway PostgreSQL 15 cluster per test file (initdb as the
# postgres user, loopback and a socket in its own directory, sql/ocdz.sql
# loaded), psql as the superuser, faults (stop, restart, backends
# killed), and the storefront rows tests need (orders, sessions).

use v5.36;
use Carp qw(croak);
use Test::More ();
use Time::HiRes qw(time sleep);
use Ocdz::Test::Env qw(repo_root PG_BIN);
use Ocdz::Test::Files qw(tmpdir write_file append_file slurp);
use Ocdz::Test::Proc qw(run_cmd free_port register_cleanup);
use Ocdz::Test::Data qw(random_topup_id sha256_hex sql_quote);
use Ocdz::Test::PKI qw(pki);

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
    register_cleanup($self, 2);       # after nginx and the mock
    my $d = $self->{dir} = tmpdir();
    $self->{port} = free_port();
    my (undef, undef, $uid, $gid) = getpwnam('postgres')
        or croak 'no postgres user (apt-get install postgresql)';
    chown $uid, $gid, $d;
    chmod 0700, $d;
    my ($rc, $out, $err) = run_cmd(['runuser', '-u', 'postgres', '--',
        PG_BIN() . '/initdb', '-D', "$d/data", '-A', 'trust',
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
    append_file("$d/data/postgresql.conf",
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
        my $sql = repo_root() . '/sql/ocdz.sql';
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
        PG_BIN() . '/pg_ctl', '-D', $self->data_dir, @args],
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

1;

__END__

=head1 NAME

Ocdz::Test::Pg - part of the test harness (see Ocdz::Test)

=head1 API

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

=cut

package Ocdz::Test::Mock;

# The mock OneClickDz API (t/lib/mock_oneclickdz.py) in its own process:
# HTTPS with the test CA (and listeners with a rogue certificate, a
# wrong name, a catcher of redirected requests), steered through its
# control port: orders and their states, faults, tokens, and every
# request it saw.

use v5.36;
use Carp qw(croak);
use HTTP::Tiny;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use Ocdz::Test::Env qw(repo_root PYTHON);
use Ocdz::Test::Files qw(tmpdir write_file slurp);
use Ocdz::Test::Proc qw(wait_until register_cleanup spawn);
use Ocdz::Test::Data qw(random_hex json_encode json_decode);
use Ocdz::Test::PKI ();
use Ocdz::Test::HTTP qw(curl_https);

# Options:
#   token => STRING            accepted X-Access-Token (random if absent)
#   secondary_token => STRING  a second accepted token (optional)
#   auto_fulfil => SECONDS     unknown ids exist and fulfil after SECONDS
#   plain => 1                 the API over plain HTTP (no TLS)
sub start ($class, %o) {
    my $self = bless { o => \%o, owner => $$ }, $class;
    register_cleanup($self, 1);       # after nginx, before PostgreSQL
    my $d = $self->{dir} = tmpdir();
    my $pki = $self->{pki} = Ocdz::Test::PKI::pki();
    $self->{token} = $o{token} // 'tok_' . random_hex(16);
    $self->{secondary_token} = $o{secondary_token};
    $self->{token_file} = write_file("$d/token", $self->{token}, 0600);
    my @cmd = (PYTHON,
               repo_root() . '/t/lib/mock_oneclickdz.py',
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

    my $pid = $self->{pid} = spawn(\@cmd, log => "$d/mock.log");
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

1;

__END__

=head1 NAME

Ocdz::Test::Mock - part of the test harness (see Ocdz::Test)

=head1 API

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

=cut

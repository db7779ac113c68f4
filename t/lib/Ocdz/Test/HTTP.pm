package Ocdz::Test::HTTP;

# Clients the tests talk HTTP with: a small HTTP/1.1 client on a raw
# socket (every byte of the request under the test's control, the
# answer kept raw beside its parse), the parser of an answer, and HTTPS
# through the curl CLI against the test CA.

use v5.36;
use Carp qw(croak);
use Exporter qw(import);
use File::Path ();
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use Ocdz::Test::Env qw(slow_factor);
use Ocdz::Test::Files qw(tmpdir slurp);
use Ocdz::Test::PKI qw(pki);
use Ocdz::Test::Proc qw(run_cmd);

our @EXPORT_OK = qw(http_request parse_response curl_https);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# http_request($method, $path, port => N, %o) -> (status, headers,
# body) in list context, { status, headers, body, raw } in scalar
# context. Connection: close.
# Options: headers => {..} or [[name, value]...], body => STRING,
# port => (required), host => Host header ('localhost'),
# timeout => SECONDS (10), tls => 1 (IO::Socket::SSL, no verification),
# sni => NAME ('localhost'),
# raw => STRING (sent as is, instead of building a request).
# headers: lower-case names; repeated headers joined with ", ";
# headers->{':all'} = [[name, value]...], ':status_line'. Status 0 and
# headers->{':error'} when the connection failed or timed out.
sub http_request ($method, $path, %o) {
    my $port = $o{port} // croak "http_request: no port";
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
    my $r = parse_response($resp, $method);
    return wantarray ? ($r->{status}, $r->{headers}, $r->{body}) : $r;
}

sub _http_fail ($why, $list, $partial = '') {
    my $r = { status => 0, headers => { ':error' => $why }, body => '',
              raw => $partial };
    return $list ? (0, $r->{headers}, '') : $r;
}

# An answer's bytes (status line, headers, body as sent) ->
# { status, headers, body, raw }: headers as http_request gives them,
# the body without its chunked framing, cut at Content-Length
# (headers->{':length_mismatch'} when it did not match), empty for HEAD.
sub parse_response ($resp, $method) {
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

1;

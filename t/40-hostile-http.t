# Hostile HTTP at the card endpoint (issue #6): malformed and huge
# headers, cookies and tokens, percent-encoding tricks and odd paths,
# every method, HTTP/1.0 and 0.9, pipelining with HEAD in between,
# hostile ids in a query argument, Accept-Language and Origin values,
# X-Forwarded-Proto games, requests sent a byte at a time and clients
# that go away while their statement runs. Every answer the card
# location gives is a well-formed JSON error or success with the
# no-store headers, quoting nothing of the request; requests nginx
# refuses before the location get nginx's own answer; nothing crashes,
# no worker is replaced, the workers keep no descriptors and do not
# grow, and a normal request still works at the end.

use v5.36;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();

my $env = card_env(pg => { log_statement => 'none' });
my $pg = $env->{pg};
my $ngx = card_nginx($env, nginx => { workers => 2 },
    http => 'large_client_header_buffers 4 16k;',
    server => <<'EOF' . slow_location(0.5));
        location = /q/card {
            ocdz_card $arg_id;
        }
        location ~ "^/cors/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_cors_origins https://shop.example;
        }
        location ~ "^/tls/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_https_only on;
            ocdz_trusted_proxies 127.0.0.1/32;
        }
EOF

my $tok = $pg->add_session(random_token(), 'u1');
my ($id, $code) = new_card($env, user => 'u1');
my $P = card_path($id);
my @workers = $ngx->worker_pids;
my $port = $ngx->port;

# strings of the requests that must never come back in an answer
my $MARK = 'zq' . random_hex(6);

my %ERRORS = map { $_ => 1 } qw(SESSION_REQUIRED INVALID_TOPUP_ID
    ORDER_NOT_FOUND ORDER_NOT_READY ORDER_REFUNDED DELIVERY_FAILED
    METHOD_NOT_ALLOWED HTTPS_REQUIRED SERVICE_UNAVAILABLE INTERNAL_ERROR);

# --- a raw client and a parser for several answers --------------------------

# Sends $req (in pieces of $o{chunk} bytes, $o{gap} s apart), reads until
# the server closes or $o{timeout}; returns the bytes read.
sub exchange ($req, %o) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or return '';
    binmode $s;
    my $chunk = $o{chunk} // length $req;
    for (my $off = 0; $off < length $req; $off += $chunk) {
        my $piece = substr($req, $off, $chunk);
        my $w = 0;
        while ($w < length $piece) {
            my $n = syswrite($s, $piece, length($piece) - $w, $w);
            last unless defined $n;     # the server closed on us
            $w += $n;
        }
        sleep $o{gap} if $o{gap};
    }
    shutdown($s, 1) if $o{half_close};
    my $sel = IO::Select->new($s);
    my $resp = '';
    my $deadline = time + ($o{timeout} // 10) * slow_factor();
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $resp .= $buf;
    }
    close $s;
    return $resp;
}

# Splits a byte stream into answers; $methods: the method of each
# request in order (HEAD answers have no body).
sub answers ($resp, @methods) {
    my @out;
    while (length $resp) {
        my $end = index($resp, "\r\n\r\n");
        last if $end < 0;
        my $head = substr($resp, 0, $end);
        $resp = substr($resp, $end + 4);
        my ($sl, @lines) = split /\r\n/, $head;
        my ($status) = ($sl // '') =~ m{^HTTP/1\.[01] (\d{3})};
        last unless $status;
        next if $status < 200;          # 100 Continue
        my %h;
        for (@lines) {
            $h{lc $1} = exists $h{lc $1} ? "$h{lc $1}, $2" : $2
                if /^([^:]+):\s*(.*?)\s*$/;
        }
        my $m = shift(@methods) // 'GET';
        my $body = '';
        if ($m eq 'HEAD' || $status == 204 || $status == 304) {
            # no body
        } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
            while ($resp =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
                my $n = hex $1;
                if ($n == 0) { $resp =~ s/^\r\n//; last }
                $body .= substr($resp, 0, $n, '');
                $resp =~ s/^\r\n//;
            }
        } elsif (defined $h{'content-length'}) {
            $body = substr($resp, 0, $h{'content-length'}, '');
        } else {
            ($body, $resp) = ($resp, '');
        }
        push @out, { status => 0 + $status, headers => \%h, body => $body,
                     method => $m };
    }
    return @out;
}

sub req ($method, $path, %o) {
    my $v = $o{version} // 'HTTP/1.1';
    my @h = @{ $o{headers} // [] };
    unshift @h, ['Host', 'localhost']
        unless $o{no_host} || grep { lc $_->[0] eq 'host' } @h;
    push @h, ['Connection', $o{keep} ? 'keep-alive' : 'close']
        unless grep { lc $_->[0] eq 'connection' } @h;
    return "$method $path $v\r\n" . join('', map { "$_->[0]: $_->[1]\r\n" } @h)
         . "\r\n" . ($o{body} // '');
}

my $AUTH = ['Authorization', "Bearer $tok"];

# --- judging an answer ------------------------------------------------------

# What is wrong with an answer of the card location, or undef.
sub card_answer_problem ($a) {
    my $h = $a->{headers};
    return 'no Cache-Control: no-store'
        unless ($h->{'cache-control'} // '') eq 'no-store';
    return 'no X-Content-Type-Options: nosniff'
        unless ($h->{'x-content-type-options'} // '') eq 'nosniff';
    if ($a->{status} == 204) {
        return length $a->{body} ? 'a 204 with a body' : undef;
    }
    return 'not application/json'
        unless ($h->{'content-type'} // '') =~ m{^application/json};
    return undef if $a->{method} eq 'HEAD' && $a->{body} eq '';
    my $j = json_decode($a->{body});
    return 'not a JSON object: ' . substr($a->{body}, 0, 60)
        unless ref $j eq 'HASH';
    return 'no boolean success' unless JSON::PP::is_bool($j->{success});
    return 'a body quoting the request' if index($a->{body}, $MARK) >= 0;
    if ($j->{success}) {
        return $a->{status} == 200 && ($j->{cardCode} // '') eq $code
            ? undef : 'a success that is not the card';
    }
    return "unknown error " . ($j->{error} // 'none')
        unless $ERRORS{ $j->{error} // '' } && length($j->{message} // '');
    return undef;
}

sub is_card_answer ($a) {
    return ($a->{headers}{'x-content-type-options'} // '') eq 'nosniff'
        && ($a->{headers}{'cache-control'} // '') eq 'no-store';
}

# $want: a status the card location must give ('card' with a number), a
# list of statuses nginx may give before the location ('nginx'), or
# 'any' (the card location's JSON or nginx's own refusal).
my %NGINX_REFUSALS = map { $_ => 1 } (400, 404, 405, 413, 414, 494, 501, 505);

sub check ($name, $a, $want) {
    if (!$a) {
        ok(0, "$name: an answer");
        return;
    }
    my ($kind, $status) = @$want;
    note "$name: $a->{status}" if $kind eq 'any';
    if ($kind eq 'card' || ($kind eq 'any' && is_card_answer($a))) {
        my $p = card_answer_problem($a);
        ok(!defined $p && (!defined $status || $a->{status} == $status),
           "$name: the card location's answer ($a->{status}"
           . (defined $status ? ", want $status" : '') . ')')
            or diag $p // "status $a->{status}: $a->{body}";
    } else {
        my $ok = !is_card_answer($a)
                 && (defined $status ? $a->{status} == $status
                                     : $NGINX_REFUSALS{ $a->{status} });
        ok($ok, "$name: nginx's own answer ($a->{status})")
            or diag "$a->{status} " . join(' ', %{ $a->{headers} })
                    . " $a->{body}";
        ok(index($a->{body}, $MARK) < 0, "$name: not quoted");
    }
}

# one request, one answer
sub one ($name, $raw, $want, %o) {
    my ($m) = $raw =~ /^(\S+)/;
    my @a = answers(exchange($raw, %o), $m // 'GET');
    check($name, $a[0], $want);
    return $a[0];
}

# --- methods and versions ---------------------------------------------------

one('GET', req('GET', $P, headers => [$AUTH]), ['card', 200]);
my $a = one('HEAD', req('HEAD', $P, headers => [$AUTH]), ['card', 200]);
is($a && $a->{body}, '', 'HEAD: no body');
$a = one('OPTIONS', req('OPTIONS', $P, headers => [$AUTH]), ['card', 405]);
like($a && $a->{headers}{allow} // '', qr/GET, HEAD/, 'OPTIONS: Allow');
one('POST with a body', req('POST', $P, headers => [$AUTH,
    ['Content-Type', 'application/json'], ['Content-Length', 14]],
    body => '{"x":"' . $MARK . '"}'), ['card', 405]);
one('POST chunked', req('POST', $P, headers => [$AUTH,
    ['Transfer-Encoding', 'chunked']], body => "5\r\nhello\r\n0\r\n\r\n"),
    ['card', 405]);
one('POST with Expect: 100-continue', req('POST', $P, headers => [$AUTH,
    ['Expect', '100-continue'], ['Content-Length', 5]], body => 'hello'),
    ['card', 405]);
one('POST 1 MB', req('POST', $P, headers => [$AUTH,
    ['Content-Length', 1 << 20]], body => 'x' x (1 << 20)), ['any']);
for my $m (qw(PUT DELETE PATCH PROPFIND FOO)) {
    one($m, req($m, $P, headers => [$AUTH]), ['card', 405]);
}
one('TRACE', req('TRACE', $P, headers => [$AUTH]), ['nginx', 405]);
one('a method of 200 letters', req('X' x 200, $P), ['any']);
one('HTTP/1.0 without Host', req('GET', $P, version => 'HTTP/1.0',
    no_host => 1, headers => [$AUTH]), ['card', 200]);
one('HTTP/1.0 keep-alive', req('GET', $P, version => 'HTTP/1.0',
    headers => [$AUTH, ['Connection', 'keep-alive']]), ['card', 200],
    timeout => 1);
one('HTTP/1.1 without Host', req('GET', $P, no_host => 1,
    headers => [$AUTH]), ['nginx', 400]);
one('HTTP/2.0 in a request line', req('GET', $P, version => 'HTTP/2.0',
    headers => [$AUTH]), ['any']);
one('HTTP/9.9', req('GET', $P, version => 'HTTP/9.9'), ['any']);
one('the HTTP/2 preface on a plain listener',
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ['any']);
{
    # HTTP/0.9: the body alone, no status line, no headers
    my $r = exchange("GET $P\r\n");
    my $j = json_decode($r);
    ok(ref $j eq 'HASH' && $j->{error} eq 'SESSION_REQUIRED',
       'HTTP/0.9: the JSON body alone') or diag substr($r, 0, 200);
}
one('absolute URI', req('GET', "http://evil.example$P",
    headers => [$AUTH]), ['card', 200]);
one('absolute URI with user info', req('GET',
    "http://$MARK\@evil.example$P", headers => [$AUTH]), ['any']);

# --- pipelining -------------------------------------------------------------

{
    my $other = card_path(random_topup_id());
    my $raw = req('GET', $P, headers => [$AUTH], keep => 1)
            . req('HEAD', $P, headers => [$AUTH], keep => 1)
            . req('GET', $other, headers => [$AUTH], keep => 1)
            . req('POST', $P, headers => [$AUTH, ['Content-Length', 3]],
                  body => 'abc', keep => 1)
            . req('GET', $P, keep => 1)
            . req('GET', "$P?lang=ar", headers => [$AUTH]);
    my @a = answers(exchange($raw), qw(GET HEAD GET POST GET GET));
    is(scalar @a, 6, 'pipelining: six answers');
    my @want = (200, 200, 404, 405, 401, 200);
    for my $i (0 .. $#want) {
        check("pipelined request " . ($i + 1), $a[$i], ['card', $want[$i]]);
    }
    my $j = json_decode($a[5] && $a[5]{body});
    is($j && $j->{instructions}{language}, 'ar', 'pipelined: the last in '
       . 'Arabic');
    # the same, one byte at a time
    @a = answers(exchange($raw, chunk => 1), qw(GET HEAD GET POST GET GET));
    is_deeply([map { $_->{status} } @a], \@want,
              'pipelining a byte at a time: the same answers');
}

# --- headers: cookies, tokens, sizes ----------------------------------------

my $T = "ocdz_session=$tok";
my @cookies = (
    ['the session cookie', $T, 200],
    ['the cookie after 7 KB of others', ('a=b; ' x 1400) . $T, 200],
    ['1000 cookies, the session last',
     join('; ', map { "c$_=v$_" } 1 .. 1000) . "; $T", 200],
    ['an empty session cookie', 'ocdz_session=', 401],
    ['a session cookie without =', 'ocdz_session', 401],
    ['a session cookie of ==', 'ocdz_session==' . $tok, 401],
    ['a session cookie with a space', "ocdz_session= $tok", 401],
    ['a session cookie prefix', "ocdz_sessionX=$tok", 401],
    ['an invalid session cookie, then the valid one',
     "ocdz_session=bad!token; $T", 200],
    ['an unknown session cookie, then the valid one',
     'ocdz_session=' . random_token() . "; $T", 401],
    ['a session cookie of 5000 characters', 'ocdz_session=' . ('A' x 5000),
     401],
    ['bytes above 127 in a cookie', "x=\xff\xfe\xc0\x80; $T", 200],
    ['control characters in a cookie', "x=\x01\x02\x7f; ocdz_session=a\x01b",
     401],
    ['quotes in the session cookie', qq{ocdz_session="$tok"}, 401],
    ['only separators', ';;;; ;;; ; ;', 401],
    ["the marker in a cookie", "ocdz_session=$MARK" . ('x' x 20), 401],
);
for my $c (@cookies) {
    my ($what, $v, $st) = @$c;
    one("Cookie: $what", req('GET', $P, headers => [['Cookie', $v]]),
        ['card', $st]);
}
one('two Cookie headers, the session in the second', req('GET', $P,
    headers => [['Cookie', 'a=b'], ['Cookie', $T]]), ['card', 200]);
one('a Cookie header of 20 KB', req('GET', $P,
    headers => [['Cookie', 'a=' . ('b' x 20000) . "; $T"]]), ['nginx']);

my @auth = (
    ['Bearer, lower case', "bearer $tok", 200],
    ['Bearer with spaces before the token', "Bearer    $tok", 200],
    ['Bearer alone', 'Bearer', 401],
    ['Bearer and a space', 'Bearer ', 401],
    ['Bearer with a tab', "Bearer\t$tok", 401],
    ['Basic', 'Basic ' . b64url("u1:$tok"), 401],
    ['a token of 5000 characters', 'Bearer ' . ('A' x 5000), 401],
    ['a token of 15 characters', 'Bearer ' . ('A' x 15), 401],
    ['a token with a space inside', "Bearer $tok x", 401],
    ['a token with bytes above 127', "Bearer \xe2\x82\xac$tok", 401],
    ['a JWT-shaped token', 'Bearer ' . jwt_hs256('k' x 32, { sub => 'u1' }),
     401],
    ['the marker as a token', "Bearer $MARK" . ('x' x 20), 401],
);
for my $c (@auth) {
    my ($what, $v, $st) = @$c;
    one("Authorization: $what", req('GET', $P,
        headers => [['Authorization', $v]]), ['card', $st]);
}
one('two Authorization headers', req('GET', $P, headers => [$AUTH, $AUTH]),
    ['any']);
one('the cookie wins over a wrong bearer', req('GET', $P,
    headers => [['Cookie', $T], ['Authorization', 'Bearer ' . random_token()]]),
    ['card', 200]);

one('a NUL in a header', req('GET', $P, headers => [$AUTH,
    ['X-A', "a\0b"]]), ['nginx', 400]);
one('a header without a colon', "GET $P HTTP/1.1\r\nHost: x\r\n"
    . "Authorization: Bearer $tok\r\nnocolon\r\nConnection: close\r\n\r\n",
    ['any']);
one('a folded header line', "GET $P HTTP/1.1\r\nHost: x\r\nX-A: a\r\n"
    . " folded\r\nAuthorization: Bearer $tok\r\nConnection: close\r\n\r\n",
    ['any']);
one('a space before the colon', "GET $P HTTP/1.1\r\nHost: x\r\n"
    . "Authorization : Bearer $tok\r\nConnection: close\r\n\r\n", ['any']);
one('bare LF line ends', "GET $P HTTP/1.1\nHost: x\nAuthorization: "
    . "Bearer $tok\nConnection: close\n\n", ['card', 200]);
one('Content-Length and Transfer-Encoding together', req('GET', $P,
    headers => [$AUTH, ['Content-Length', 5],
                ['Transfer-Encoding', 'chunked']],
    body => "0\r\n\r\n"), ['any']);
one('a negative Content-Length', req('GET', $P, headers => [$AUTH,
    ['Content-Length', -1]]), ['nginx', 400]);
one('a huge Content-Length on GET', req('GET', $P, headers => [$AUTH,
    ['Content-Length', '99999999999999999999']]), ['any']);
one('Host of 5000 characters', req('GET', $P, headers => [$AUTH,
    ['Host', 'h' x 5000]]), ['any']);
one('a broken Host', req('GET', $P, headers => [$AUTH, ['Host', '[::1']]),
    ['any']);
one('a Host with a slash', req('GET', $P, headers => [$AUTH,
    ['Host', 'a/b']]), ['nginx', 400]);
one('100 headers of 100 bytes', req('GET', $P, headers => [$AUTH,
    map { ["X-H$_", 'v' x 100] } 1 .. 100]), ['card', 200]);
one('User-Agent of 10 KB', req('GET', $P, headers => [$AUTH,
    ['User-Agent', 'u' x 10000]]), ['card', 200]);
one('a request line of 20 KB', req('GET', $P . '?' . ('a' x 20000),
    headers => [$AUTH]), ['nginx', 414]);

for my $al ('fr', 'ar-DZ,ar;q=0.9', 'x' x 8000,
            join(',', map { "l$_;q=0.$_" } 1 .. 500),
            'fr;q=NaN, ar;q=1e9999, en;q=-1', ';;;,,,;q=', "\xd8\xb9\xff",
            '*', 'fr;q=0, ar;q=0, en;q=0') {
    one('Accept-Language ' . substr($al, 0, 20), req('GET', $P,
        headers => [$AUTH, ['Accept-Language', $al]]), ['card', 200]);
}
for my $q ('lang=', 'lang=xx', 'lang=ar&lang=fr', 'lang=%00',
           'lang=' . ('a' x 3000), 'lang[]=fr', '&&&=&', "lang=$MARK") {
    one("query $q", req('GET', "$P?" . substr($q, 0, 100),
        headers => [$AUTH]), ['card', 200]);
}

# --- paths ------------------------------------------------------------------

my $up = uc $id;
my $enc = join '', map { sprintf '%%%02x', ord } split //, $id;
for my $c (
    ['percent-encoded id', "/api/internet-orders/$enc/card", ['card', 200]],
    ['an encoded slash', "/api/internet-orders%2f$id/card", ['any']],
    ['dot segments', "/api/x/../internet-orders/./$id/card", ['card', 200]],
    ['encoded dot segments', "/api/x/%2e%2e/internet-orders/$id/card",
     ['card', 200]],
    ['doubled slashes', "//api//internet-orders//$id//card", ['card', 200]],
    ['above the root', "/../../etc/passwd", ['nginx', 400]],
    ['a NUL', "/api/internet-orders/$id%00/card", ['nginx', 400]],
    ['an upper-case id', "/api/internet-orders/$up/card", ['nginx', 404]],
    ['double encoding', "/api/internet-orders/%25" . substr($enc, 1)
     . "/card", ['nginx', 404]],
    ['a trailing slash', "$P/", ['nginx', 404]],
    ['a ;parameter', "$P;jsessionid=1", ['nginx', 404]],
    ['a fragment', "$P#frag", ['any']],
    ['8 KB of dot segments', '/x/..' x 1600 . $P, ['any']],
    ['a backslash', "/api\\internet-orders/$id/card", ['any']],
    ['bytes above 127', "/api/internet-orders/$id/card\xff", ['nginx', 404]],
    ['a space', "/api/internet-orders/$id /card", ['any']],
    ['a 25-character id', "/api/internet-orders/${id}0/card", ['nginx', 404]],
) {
    my ($what, $path, $want) = @$c;
    one("path: $what", req('GET', $path, headers => [$AUTH]), $want);
}

# the id from a query argument: the module validates it
for my $c (
    ['valid', $id, 200],
    ['upper case', $up, 200],
    ['percent-encoded', $enc, 400],
    ['25 characters', "${id}0", 400],
    ['23 characters', substr($id, 1), 400],
    ['empty', '', 400],
    ['a NUL', substr($id, 0, 23) . '%00', 400],
    ['not hex', 'g' x 24, 400],
    ['UTF-8', "\xd9\xa0" x 12, 400],
    ['the marker', $MARK . ('0' x (24 - length $MARK)), 400],
    ['SQL', "'%3B%20DROP%20TABLE%20ocdz.orders%3B%20--", 400],
) {
    my ($what, $v, $st) = @$c;
    one("?id=: $what", req('GET', "/q/card?id=$v", headers => [$AUTH]),
        ['card', $st]);
}
one('?id= twice', req('GET', "/q/card?id=$id&id=" . random_topup_id(),
    headers => [$AUTH]), ['card', 200]);

# --- CORS and X-Forwarded-Proto ---------------------------------------------

my $C = "/cors/$id/card";
for my $c (
    ['the allowed origin', 'https://shop.example', 204],
    ['a suffix', 'https://shop.example.evil', 405],
    ['a prefix', 'https://evil.shop.example', 405],
    ['null', 'null', 405],
    ['5000 characters', 'https://' . ('a' x 5000), 405],
    ['the marker', "https://$MARK.example", 405],
) {
    my ($what, $o, $st) = @$c;
    my $a = one("preflight from $what", req('OPTIONS', $C,
        headers => [['Origin', $o], ['Access-Control-Request-Method', 'GET'],
                    ['Access-Control-Request-Headers', 'authorization']]),
        ['card', $st]);
    my $acao = $a ? $a->{headers}{'access-control-allow-origin'} : undef;
    if ($st == 204) {
        is($acao, $o, "preflight from $what: allowed");
    } else {
        ok(!defined $acao, "preflight from $what: not allowed");
    }
}
one('GET from another origin', req('GET', $C, headers => [$AUTH,
    ['Origin', 'https://evil.example']]), ['card', 200]);

my $S = "/tls/$id/card";
for my $c (['https', 200], ['HTTPS', 200], ['http', 403],
           ['https, http', 403], ['http, https', 403], ['', 403],
           ['https ', 200], [$MARK, 403]) {
    my ($v, $st) = @$c;
    one("X-Forwarded-Proto '$v'", req('GET', $S, headers => [$AUTH,
        ['X-Forwarded-Proto', $v]]), ['any', $st]);
}
one('two X-Forwarded-Proto headers', req('GET', $S, headers => [$AUTH,
    ['X-Forwarded-Proto', 'http'], ['X-Forwarded-Proto', 'https']]),
    ['card']);

# --- slow clients, clients that go away -------------------------------------

one('a request a byte at a time', req('GET', $P, headers => [$AUTH]),
    ['card', 200], chunk => 1, gap => 0.002);
one('half-closed after the request', req('GET', $P, headers => [$AUTH]),
    ['card', 200], half_close => 1);
{
    # the statement runs (pg_sleep 0.5) while the client is gone
    my $slow = req('GET', "/slow/$id/card", headers => [$AUTH]);
    for (1 .. 20) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp')
            or next;
        syswrite($s, $slow);
        close $s;
    }
    for (1 .. 10) {
        exchange($slow, timeout => 0.05);
    }
    ok(wait_until(sub { $pg->value("SELECT count(*) FROM pg_stat_activity "
        . "WHERE query LIKE '%pg_sleep(0.5)%' AND state = 'active' AND "
        . "usename = 'ocdz_module'") == 0 }, timeout => 30),
       'the statements of the clients that left finished');
    one('after clients left mid-statement', req('GET', "/slow/$id/card",
        headers => [$AUTH]), ['card', 200]);
}

# --- the workers afterwards -------------------------------------------------

sub fds ($pid) {
    opendir my $dh, "/proc/$pid/fd" or return -1;
    return scalar grep { /^\d+$/ } readdir $dh;
}

sub rss ($pid) {
    my ($kb) = slurp("/proc/$pid/status") =~ /^VmRSS:\s+(\d+)/m;
    return $kb // 0;
}

is_deeply([$ngx->worker_pids], \@workers, 'no worker died');
{
    # the same hostile requests again and again: nothing accumulates
    my @raw = (req('GET', $P, headers => [$AUTH]),
               req('GET', $P, headers => [['Cookie',
                   join('; ', map { "c$_=v$_" } 1 .. 1000) . "; $T"]]),
               req('GET', $P, headers => [['Authorization',
                   'Bearer ' . ('A' x 5000)]]),
               req('POST', $P, headers => [$AUTH, ['Content-Length', 3]],
                   body => 'abc'),
               req('GET', "/q/card?id=$enc", headers => [$AUTH]),
               req('GET', $P, headers => [$AUTH, ['Accept-Language',
                   join(',', map { "l$_;q=0.$_" } 1 .. 500)]]));
    my $round = sub { exchange($_) for (@raw) x 25 };
    $round->();
    my %fd0 = map { $_ => fds($_) } @workers;
    my %rss0 = map { $_ => rss($_) } @workers;
    $round->() for 1 .. 4;
    my @grew = grep { fds($_) > $fd0{$_} } @workers;
    ok(!@grew, 'no descriptors kept by the workers');
    my $growth = 0;
    for (@workers) { $growth += rss($_) - $rss0{$_} }
    ok($growth < 8 * 1024 * slow_factor(), "the workers' memory grew by "
       . "$growth kB over 600 more requests");
}
one('a normal request at the end', req('GET', $P, headers => [$AUTH]),
    ['card', 200]);

$ngx->quit;
hygiene($env);
done_testing;

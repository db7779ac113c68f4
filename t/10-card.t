# The card endpoint (issue #3): methods, CORS, the 200 answer and its
# instructions, ownership, order states, HEAD, audit rows, the headers
# every answer carries, the access log variables, and a reload with an
# instructions file. Ends with the secret hygiene checks.

use v5.36;
use utf8;
use Test::More;
use Encode qw(encode_utf8);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();

my $env = card_env();
my $pg = $env->{pg};

my %loc = (
    http => 'log_format cards \'$remote_addr "$ocdz_user_id" '
          . '"$ocdz_topup_id" "$ocdz_result" $status $request_method\';',
    loc => 'ocdz_session db; '
         . 'access_log %%PREFIX%%/logs/cards.log cards;',
    server => <<'EOF',
        location ~ "^/cors/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_cors_origins https://shop.example https://m.shop.example:8443
                              http://pay.example:80;
        }
EOF
);
my $ngx = card_nginx($env, %loc);

my $tok1 = $pg->add_session(random_token(), 'u1');
my $tok2 = $pg->add_session(random_token(), 'u2');

sub audit_count () { $pg->value('SELECT count(*) FROM ocdz.audit') }

sub common_headers ($h, $what) {
    is($h->{'cache-control'}, 'no-store', "$what: Cache-Control no-store");
    is($h->{pragma}, 'no-cache', "$what: Pragma no-cache");
    is($h->{'x-content-type-options'}, 'nosniff', "$what: nosniff");
    like($h->{vary} // '', qr/(^|,\s*)Accept-Language(,|$)/,
         "$what: Vary: Accept-Language");
}

sub error_is ($s, $j, $status, $code, $what) {
    is($s, $status, "$what: $status");
    is(ref $j && $j->{error}, $code, "$what: error $code");
    ok(ref $j && $j->{success} eq JSON::PP::false() && length $j->{message},
       "$what: success false and a message");
}

# --- the card -------------------------------------------------------------

my ($id, $code, $trans) = new_card($env, user => 'u1');
{
    my $before = audit_count();
    my ($s, $h, $j, $raw) = card_get($ngx, $id, token => $tok1,
        headers => { 'User-Agent' => encode_utf8('ocdz-test/1.0 (عربي)') });
    is($s, 200, 'GET the card: 200') or diag $raw;
    is($h->{'content-type'}, 'application/json', 'Content-Type json');
    common_headers($h, '200');
    ok(!$h->{':length_mismatch'}, 'Content-Length matches the body');
    ok($j->{success}, 'success true');
    is($j->{topupId}, $id, 'topupId');
    is($j->{status}, 'FULFILLED', 'status');
    is($j->{type}, 'ADSL', 'type');
    is($j->{number}, '036362608', 'number');
    is($j->{value}, 1000, 'value is a number');
    like($raw, qr/"value":1000[,}]/, 'value written as a JSON number');
    is($j->{cardCode}, $code, 'cardCode');
    is($j->{transactionNumber}, $trans, 'transactionNumber');
    is($j->{processedDate}, '2025-10-29T01:05:30.000Z', 'processedDate');
    my $in = $j->{instructions};
    is($in->{language}, 'en', 'instructions in English by default');
    ok(length $in->{title}, 'instructions title');
    is(ref $in->{steps}, 'ARRAY', 'steps is an array');
    ok(@{ $in->{steps} } >= 3, 'several steps');
    like(join(' ', @{ $in->{steps} }), qr/\*600#/, 'ADSL steps: *600#');
    like($in->{support}, qr/3003/, 'ADSL support: 3003');

    is(audit_count(), $before + 1, 'one audit row for the release');
    my ($a) = $pg->audit($id);
    is($a->{event}, 'CARD_REVEALED', 'audit: CARD_REVEALED');
    is($a->{topup_id}, $id, 'audit: top-up id');
    is($a->{user_id}, 'u1', 'audit: user id');
    is($a->{method}, 'in-app', 'audit: method in-app');
    is($a->{client_ip}, '127.0.0.1', 'audit: client ip');
    my $ua = $a->{user_agent};
    utf8::decode($ua);
    is($ua, 'ocdz-test/1.0 (عربي)', 'audit: user agent');
    ok(!defined $a->{detail} || index($a->{detail}, $code) < 0,
       'audit: no code');
    ok(defined $pg->order($id)->{delivered_at}, 'delivered_at set');

    # User-Agents PostgreSQL would refuse, or too long for the audit
    for my $c (["Mozilla/5.0 \xff\xfe bad", 'Mozilla/5.0 ?? bad'],
               ["ctl\x01\x7f \xed\xa0\x80 \xc0\xaf", 'ctl?? ??? ??'],
               ['x' x 2000, 'x' x 512],
               ['a' . ("\xd8\xa7" x 300),
                'a' . ("\xd8\xa7" x 255)]) {
        my ($ua, $want) = @$c;
        my $n = () = $pg->audit($id);
        my ($s2, undef, $j2, $raw2) = card_get($ngx, $id, token => $tok1,
            headers => { 'User-Agent' => $ua });
        my $what = 'User-Agent ' . substr($want, 0, 12);
        is($s2, 200, "$what: 200") or diag $raw2;
        is($j2 && $j2->{cardCode}, $code, "$what: the card");
        my @rows = $pg->audit($id);
        is(scalar @rows, $n + 1, "$what: audited");
        is($rows[-1]{user_agent}, $want, "$what: stored cleaned");
    }
    $pg->psql("DELETE FROM ocdz.audit WHERE topup_id = '$id' AND id > "
              . "(SELECT min(id) FROM ocdz.audit WHERE topup_id = '$id')");

    # a second release is a second audit row
    ($s) = card_get($ngx, $id, token => $tok1);
    is($s, 200, 'second GET: 200');
    is_deeply([audit_events($env, $id)], ['CARD_REVEALED', 'CARD_REVEALED'],
              'second release audited too');
    my @rows = $pg->audit($id);
    ok(!defined $rows[1]{user_agent}, 'no User-Agent: NULL in the audit');

}

# --- codes that need escaping, long codes, codes that are not UTF-8 ----------

for my $c (['quotes and backslashes', 'AB"12\\34/56' . random_hex(4)],
           ['UTF-8', "\xd9\xa1\xd9\xa2-" . random_card_code()],
           ['256 bytes', random_card_code(256)],
           ['</script>', '</script><b>' . random_card_code()]) {
    my ($what, $cc) = @$c;
    my ($cid) = new_card($env, user => 'u1', code => $cc);
    my ($s, $h, $j, $raw) = card_get($ngx, $cid, token => $tok1);
    is($s, 200, "a code with $what: 200") or diag $raw;
    my $want = $cc;
    utf8::decode($want);
    is($j && $j->{cardCode}, $want, "a code with $what: round trip");
    ok(!$h->{':length_mismatch'}, "a code with $what: Content-Length");
}
{
    my ($cid) = new_card($env, user => 'u1',
                         code => "\xff\xfe" . random_card_code());
    my $mark = $ngx->log_mark;
    my ($s, $h, $j) = card_get($ngx, $cid, token => $tok1);
    is($s, 500, 'a code that is not UTF-8: 500');
    is($j && $j->{error}, 'DELIVERY_FAILED', 'not UTF-8: DELIVERY_FAILED');
    like($ngx->error_log($mark), qr/\[error\].*\Q$cid\E/,
         'not UTF-8: [error] naming the order');
    is_deeply([audit_events($env, $cid)],
              ['CARD_REVEALED', 'CARD_REVEAL_FAILED'],
              'not UTF-8: the failure audited');
    like(($pg->audit($cid))[-1]{detail} // '', qr/UTF-8/,
         'not UTF-8: the failure row says why');
}

# --- 4G and languages -------------------------------------------------------

my ($id4, $code4) = new_card($env, user => 'u1', type => '4G',
                             number => '213472731602', value => 2000);
{
    my ($s, $h, $j) = card_get($ngx, $id4, token => $tok1);
    is($s, 200, '4G card: 200');
    is($j->{type}, '4G', '4G: type');
    is($j->{number}, '213472731602', '4G: number');
    is($j->{value}, 2000, '4G: value');
    is($j->{cardCode}, $code4, '4G: code');
    my (undef, undef, $ja) = card_get($ngx, $id, token => $tok1);
    isnt($j->{instructions}{title}, $ja->{instructions}{title},
         '4G and ADSL titles differ');
    isnt(join("\n", @{ $j->{instructions}{steps} }),
         join("\n", @{ $ja->{instructions}{steps} }),
         '4G and ADSL steps differ');
    like(join(' ', @{ $j->{instructions}{steps} }), qr/\*600#/,
         '4G steps: *600#');
    like($j->{instructions}{support}, qr/3003/, '4G support: 3003');
    like(join(' ', @{ $j->{instructions}{steps} }), qr/4G/i,
         '4G steps speak of 4G');
}

my %title;
for my $c (['Accept-Language' => 'fr', undef, 'fr'],
           ['Accept-Language' => 'ar', undef, 'ar'],
           ['Accept-Language' => 'fr-DZ,fr;q=0.9,en;q=0.8', undef, 'fr'],
           ['Accept-Language' => 'de, ar;q=0.5, en;q=0.1', undef, 'ar'],
           ['Accept-Language' => 'de', undef, 'en'],
           ['Accept-Language' => 'ar', 'lang=fr', 'fr'],
           ['Accept-Language' => 'fr', 'lang=ar', 'ar'],
           ['Accept-Language' => 'fr', 'lang=EN', 'en'],
           ['Accept-Language' => 'fr', 'lang=xx', 'fr'],
           [undef, undef, undef, 'en'],
           [undef, undef, 'lang=ar', 'ar']) {
    my ($hname, $hval, $q, $want) = @$c;
    my $what = join ' ', grep { defined } $hval, $q;
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok1, query => $q,
        headers => { defined $hname ? ($hname => $hval) : () });
    is($s, 200, "language ($what): 200");
    is($j->{instructions}{language}, $want, "language ($what): $want");
    $title{$want} = $j->{instructions}{title};
    like($h->{vary}, qr/Accept-Language/, "language ($what): Vary");
}
isnt($title{fr}, $title{en}, 'French title differs from English');
like($title{ar}, qr/\p{Arabic}/, 'Arabic title is Arabic');
{
    my (undef, undef, $j) = card_get($ngx, $id, token => $tok1,
                                     query => 'lang=ar');
    like($j->{instructions}{support}, qr/3003/, 'Arabic support: 3003');
    like(join(' ', @{ $j->{instructions}{steps} }), qr/\*600#/,
         'Arabic steps: *600#');
}

# --- methods and CORS --------------------------------------------------------

for my $m (qw(POST PUT DELETE PATCH OPTIONS PROPFIND)) {
    my $before = audit_count();
    my ($s, $h, $j) = card_get($ngx, $id, method => $m, token => $tok1,
        $m =~ /^P(OST|UT|ATCH)$/ ? (body => '{"x":1}') : ());
    error_is($s, $j, 405, 'METHOD_NOT_ALLOWED', $m);
    is($h->{allow}, 'GET, HEAD', "$m: Allow: GET, HEAD");
    common_headers($h, $m);
    ok(!exists $h->{'access-control-allow-origin'}, "$m: no CORS headers");
    is(audit_count(), $before, "$m: not audited");
}
{
    # the same on the CORS location
    my ($s, $h) = card_get($ngx, $id, method => 'DELETE', token => $tok1,
                           prefix => '/cors');
    is($s, 405, 'CORS location: DELETE 405');
    is($h->{allow}, 'GET, HEAD, OPTIONS', 'CORS location: Allow has OPTIONS');

    my %pre = ('Origin' => 'https://shop.example',
               'Access-Control-Request-Method' => 'GET',
               'Access-Control-Request-Headers' => 'authorization');
    ($s, $h, my $j, my $raw) = card_get($ngx, $id, method => 'OPTIONS',
                                        prefix => '/cors', headers => \%pre);
    is($s, 204, 'preflight from a listed origin: 204');
    is($h->{'access-control-allow-origin'}, 'https://shop.example',
       'preflight: Access-Control-Allow-Origin is the origin');
    like($h->{'access-control-allow-methods'} // '', qr/\bGET\b/,
         'preflight: Allow-Methods has GET');
    like($h->{'access-control-allow-headers'} // '', qr/authorization/i,
         'preflight: Allow-Headers has Authorization');
    is($h->{'access-control-allow-credentials'}, 'true',
       'preflight: Allow-Credentials');
    like($h->{vary} // '', qr/Origin/, 'preflight: Vary: Origin');
    common_headers($h, 'preflight');
    is($raw, '', 'preflight: no body');

    ($s, $h) = card_get($ngx, $id, method => 'OPTIONS', prefix => '/cors',
        headers => { %pre, Origin => 'https://m.shop.example:8443' });
    is($s, 204, 'preflight from the second listed origin: 204');
    is($h->{'access-control-allow-origin'}, 'https://m.shop.example:8443',
       'second origin echoed');

    # listed with its default port, which browsers leave out of Origin
    ($s, $h) = card_get($ngx, $id, method => 'OPTIONS', prefix => '/cors',
        headers => { %pre, Origin => 'http://pay.example' });
    is($s, 204, 'preflight from an origin listed with :80: 204');
    is($h->{'access-control-allow-origin'}, 'http://pay.example',
       'origin listed with its default port echoed as browsers send it');

    for my $o ('https://evil.example', 'https://shop.example.evil.example',
               'http://shop.example', 'null',
               'https://shop.example/') {
        ($s, $h) = card_get($ngx, $id, method => 'OPTIONS',
            prefix => '/cors', headers => { %pre, Origin => $o });
        is($s, 405, "preflight from unlisted $o: 405");
        ok(!grep({ /^access-control-/ } keys %$h),
           "preflight from unlisted $o: no CORS headers");
        ($s, $h) = card_get($ngx, $id, prefix => '/cors', token => $tok1,
                            headers => { Origin => $o });
        is($s, 200, "GET from unlisted $o: 200");
        ok(!grep({ /^access-control-/ } keys %$h),
           "GET from unlisted $o: no CORS headers");
    }

    ($s, $h) = card_get($ngx, $id, method => 'OPTIONS', headers => \%pre);
    is($s, 405, 'preflight without ocdz_cors_origins: 405');
    ok(!grep({ /^access-control-/ } keys %$h),
       'without ocdz_cors_origins: no CORS headers');
    ($s, $h) = card_get($ngx, $id, token => $tok1,
                        headers => { Origin => 'https://shop.example' });
    is($s, 200, 'GET with Origin, no ocdz_cors_origins: 200');
    ok(!grep({ /^access-control-/ } keys %$h),
       'GET without ocdz_cors_origins: no CORS headers');

    ($s, $h, $j) = card_get($ngx, $id, prefix => '/cors', token => $tok1,
                            headers => { Origin => 'https://shop.example' });
    is($s, 200, 'GET from a listed origin: 200');
    is($j->{cardCode}, $code, 'GET from a listed origin: the card');
    is($h->{'access-control-allow-origin'}, 'https://shop.example',
       'GET from a listed origin: Access-Control-Allow-Origin');
    is($h->{'access-control-allow-credentials'}, 'true',
       'GET from a listed origin: credentials');
    ok(!exists $h->{'access-control-allow-methods'},
       'GET: no preflight headers');

    ($s, $h) = card_get($ngx, $id, prefix => '/cors',
                        headers => { Origin => 'https://shop.example' });
    is($s, 401, 'CORS 401 for a listed origin');
    is($h->{'access-control-allow-origin'}, 'https://shop.example',
       'the 401 is readable by the listed origin');
}

# --- sessions: 401 -----------------------------------------------------------

{
    my $before = audit_count();
    my ($s, $h, $j) = card_get($ngx, $id);
    error_is($s, $j, 401, 'SESSION_REQUIRED', 'no session');
    is($h->{'www-authenticate'}, 'Bearer realm="ocdz"', 'WWW-Authenticate');
    common_headers($h, '401');
    ($s, $h, $j) = card_get($ngx, $id, token => random_token());
    error_is($s, $j, 401, 'SESSION_REQUIRED', 'unknown session');
    is($h->{'www-authenticate'}, 'Bearer realm="ocdz"',
       'unknown session: WWW-Authenticate');
    is(audit_count(), $before, '401s are not audited');
}

# --- ownership ---------------------------------------------------------------

{
    my ($idb) = new_card($env, user => 'u2');
    my $nx = random_topup_id();
    my $before = audit_count();
    my $r1 = $ngx->http('GET', card_path($idb),
                        headers => { Authorization => "Bearer $tok1" });
    my $r2 = $ngx->http('GET', card_path($nx),
                        headers => { Authorization => "Bearer $tok1" });
    is($r1->{status}, 404, "someone else's order: 404");
    is($r2->{status}, 404, 'a nonexistent order: 404');
    is(json_decode($r1->{body})->{error}, 'ORDER_NOT_FOUND',
       'ORDER_NOT_FOUND');
    is(header_without_date($r1->{raw}), header_without_date($r2->{raw}),
       "someone else's order and no order: byte-identical answers");
    common_headers($r1->{headers}, '404');
    my @a = $pg->audit($idb);
    is(scalar @a, 1, "the attempt on someone else's order is audited");
    is($a[0]{event}, 'ORDER_NOT_FOUND', 'audit: ORDER_NOT_FOUND');
    is($a[0]{user_id}, 'u1', 'audit: the user who tried');
    is_deeply([audit_events($env, $nx)], ['ORDER_NOT_FOUND'],
              'the attempt on a nonexistent order is audited');
    is(audit_count(), $before + 2, 'two audit rows');
    ok(!defined $pg->order($idb)->{delivered_at},
       'not delivered to the owner');

    # the owner still gets it
    my ($s, undef, $j) = card_get($ngx, $idb, token => $tok2);
    is($s, 200, 'the owner gets the card');
    # HEAD on someone else's order
    my $h1 = $ngx->http('HEAD', card_path($idb),
                        headers => { Authorization => "Bearer $tok1" });
    my $h2 = $ngx->http('HEAD', card_path($nx),
                        headers => { Authorization => "Bearer $tok1" });
    is($h1->{status}, 404, "HEAD someone else's order: 404");
    is(header_without_date($h1->{raw}), header_without_date($h2->{raw}),
       'HEAD: byte-identical answers');
}

# --- states ------------------------------------------------------------------

for my $st (qw(PENDING HANDLING QUEUED UNKNOWN_ERROR ERROR)) {
    my $oid = new_order($env, user_id => 'u1', status => $st);
    my ($s, $h, $j) = card_get($ngx, $oid, token => $tok1);
    error_is($s, $j, 409, 'ORDER_NOT_READY', $st);
    is($j->{status}, $st, "$st: \"status\" says $st");
    ok(!exists $j->{cardCode}, "$st: no card");
    common_headers($h, $st);
    my @a = $pg->audit($oid);
    is(scalar @a, 1, "$st: audited");
    is($a[0]{event}, 'ORDER_NOT_READY', "$st: audit ORDER_NOT_READY");
    is($a[0]{detail}, $st, "$st: audit detail");
    is($a[0]{user_id}, 'u1', "$st: audit user");
}
{
    # a card already stored but the order not FULFILLED: still not ready
    my ($oid) = new_card($env, user => 'u1');
    $pg->psql("UPDATE ocdz.orders SET status = 'HANDLING' "
              . "WHERE topup_id = '$oid'");
    my ($s, $h, $j) = card_get($ngx, $oid, token => $tok1);
    is($s, 409, 'HANDLING with a stored card: 409');
    ok(!exists $j->{cardCode}, 'HANDLING with a stored card: no card');
}

my $arabic = 'تعذر شحن البطاقة، تم استرجاع المبلغ إلى رصيدك';
{
    my $oid = new_order($env, user_id => 'u1', status => 'REFUNDED',
                        refund_message => encode_utf8($arabic));
    my ($s, $h, $j, $raw) = card_get($ngx, $oid, token => $tok1);
    error_is($s, $j, 410, 'ORDER_REFUNDED', 'REFUNDED');
    is($j->{refundMessage}, $arabic, 'refundMessage: Arabic round trip');
    is($j->{status}, 'REFUNDED', 'REFUNDED: status');
    is($h->{'content-type'}, 'application/json', '410 is JSON');
    common_headers($h, '410');
    is_deeply([audit_events($env, $oid)], ['ORDER_REFUNDED'],
              'REFUNDED: audited');

    $oid = new_order($env, user_id => 'u1', status => 'REFUNDED');
    ($s, $h, $j) = card_get($ngx, $oid, token => $tok1);
    is($s, 410, 'REFUNDED without a message: 410');
    ok(!exists $j->{refundMessage}, 'no refundMessage when none was given');

    $oid = new_order($env, user_id => 'u1', status => 'REFUNDED',
                     refund_message => 'say "hi" \\ </script> ' . "\t");
    ($s, $h, $j) = card_get($ngx, $oid, token => $tok1);
    is($j->{refundMessage}, 'say "hi" \\ </script> ' . "\t",
       'refundMessage with quotes and controls escaped');
}
{
    my ($oid) = new_card($env, user => 'u1', store => 0);
    my $mark = $ngx->log_mark;
    my ($s, $h, $j) = card_get($ngx, $oid, token => $tok1);
    error_is($s, $j, 500, 'DELIVERY_FAILED', 'FULFILLED without a card');
    common_headers($h, '500');
    like($ngx->error_log($mark), qr/\[error\].*\Q$oid\E/,
         'FULFILLED without a card: [error] naming the order');
    my @ev = audit_events($env, $oid);
    ok(scalar(@ev) >= 1 && !grep({ $_ eq 'CARD_REVEALED' } @ev),
       'FULFILLED without a card: audited, not as a release')
        or diag "@ev";
    ok(!defined $pg->order($oid)->{delivered_at},
       'FULFILLED without a card: not delivered');
}

# --- HEAD --------------------------------------------------------------------

{
    my ($oid) = new_card($env, user => 'u1');
    my $g = $ngx->http('GET', card_path($id),
                       headers => { Authorization => "Bearer $tok1" });
    my $before = audit_count();
    my $r = $ngx->http('HEAD', card_path($oid),
                       headers => { Authorization => "Bearer $tok1" });
    is($r->{status}, 200, 'HEAD a card: 200');
    my ($head, $body) = split /\r\n\r\n/, $r->{raw}, 2;
    is($body, '', 'HEAD: no body');
    is($r->{headers}{'content-type'}, 'application/json', 'HEAD: JSON type');
    common_headers($r->{headers}, 'HEAD');
    my $names = sub ($r) {
        join ',', sort grep { !/^(date|content-length)$/ }
                  map { lc $_->[0] } @{ $r->{headers}{':all'} };
    };
    is($names->($r), $names->($g), 'HEAD: the same headers as GET');
    is(audit_count(), $before, 'HEAD records no release');
    ok(!defined $pg->order($oid)->{delivered_at}, 'HEAD: not delivered');

    my $nr = new_order($env, user_id => 'u1', status => 'QUEUED');
    $r = $ngx->http('HEAD', card_path($nr),
                    headers => { Authorization => "Bearer $tok1" });
    is($r->{status}, 409, 'HEAD a queued order: 409');
    ($head, $body) = split /\r\n\r\n/, $r->{raw}, 2;
    is($body, '', 'HEAD 409: no body');
    $r = $ngx->http('HEAD', card_path($oid));
    is($r->{status}, 401, 'HEAD without a session: 401');
    is($r->{headers}{'www-authenticate'}, 'Bearer realm="ocdz"',
       'HEAD 401: WWW-Authenticate');

    # then GET still releases it, once audited
    my ($s, undef, $j) = card_get($ngx, $oid, token => $tok1);
    is($s, 200, 'GET after HEAD: 200');
    is_deeply([audit_events($env, $oid)], ['CARD_REVEALED'],
              'GET after HEAD: one release audited');
}

# --- the access log variables ------------------------------------------------

{
    my $log = "${\ $ngx->prefix}/logs/cards.log";
    my $nx = random_topup_id();
    card_get($ngx, $id, token => $tok1);
    card_get($ngx, $nx, token => $tok1);
    card_get($ngx, $id);
    my $r = $ngx->http('HEAD', card_path($id),
                       headers => { Authorization => "Bearer $tok1" });
    my $text;
    ok(wait_until(sub { $text = slurp($log); $text =~ /HEAD\n\z/ },
                  timeout => 10), 'access log written');
    like($text, qr/^127\.0\.0\.1 "u1" "\Q$id\E" "CARD_REVEALED" 200 GET$/m,
         'access log: user, top-up id, CARD_REVEALED');
    like($text, qr/^127\.0\.0\.1 "u1" "\Q$nx\E" "ORDER_NOT_FOUND" 404 GET$/m,
         'access log: ORDER_NOT_FOUND');
    like($text, qr/^127\.0\.0\.1 "-" "[^"]*" "SESSION_REQUIRED" 401 GET$/m,
         'access log: SESSION_REQUIRED, no user');
    like($text, qr/^127\.0\.0\.1 "u1" "\Q$id\E" "\w+" 200 HEAD$/m,
         'access log: HEAD');
    like($text, qr/"ORDER_NOT_READY" 409/, 'access log: ORDER_NOT_READY');
    like($text, qr/"ORDER_REFUNDED" 410/, 'access log: ORDER_REFUNDED');
    like($text, qr/"DELIVERY_FAILED" 500/, 'access log: DELIVERY_FAILED');
    like($text, qr/"METHOD_NOT_ALLOWED" 405/,
         'access log: METHOD_NOT_ALLOWED');
}

# --- ocdz_instructions_file, by a reload -------------------------------------

{
    my $file = "$env->{dir}/instructions.json";
    write_file($file, json_encode({
        ADSL => { fr => { title => 'Recharger la ligne de la boutique',
                          steps => ['Composez le *600# (boutique).',
                                    'Saisissez le code.'],
                          support => 'Boutique : appelez le 3003.' } },
        '4G' => {
            en => { title => 'Long 4G',
                    steps => [map { "Step $_ (*600#): " . ('ع' x 500) }
                              1 .. 12],
                    support => 'Call 3003 ' . ('x' x 1000) },
            ar => { title => 'تعبئة 4G للمتجر',
                          steps => ['اطلب *600# من المتجر'],
                          support => 'اتصل بـ 3003' } },
    }), 0644);
    ok(card_reload($ngx, %loc,
        http => "$loc{http} ocdz_instructions_file $file;"),
       'reload with ocdz_instructions_file');

    my ($s, $h, $j) = card_get($ngx, $id, token => $tok1, query => 'lang=fr');
    is($s, 200, 'after reload: 200');
    is($j->{cardCode}, $code, 'after reload: the card');
    is($j->{instructions}{title}, 'Recharger la ligne de la boutique',
       'replaced ADSL fr title');
    is_deeply($j->{instructions}{steps}, ['Composez le *600# (boutique).',
                                          'Saisissez le code.'],
              'replaced ADSL fr steps');
    is($j->{instructions}{support}, 'Boutique : appelez le 3003.',
       'replaced ADSL fr support');
    (undef, undef, $j) = card_get($ngx, $id, token => $tok1,
                                  query => 'lang=en');
    is($j->{instructions}{title}, $title{en}, 'ADSL en kept');
    (undef, undef, $j) = card_get($ngx, $id4, token => $tok1,
                                  query => 'lang=ar');
    is($j->{instructions}{title}, 'تعبئة 4G للمتجر', 'replaced 4G ar title');
    is_deeply($j->{instructions}{steps}, ['اطلب *600# من المتجر'],
              'replaced 4G ar steps');
    (undef, undef, $j) = card_get($ngx, $id4, token => $tok1,
                                  query => 'lang=fr');
    like($j->{instructions}{title}, qr/4G/, '4G fr kept');
    # an answer of several output buffers
    my $raw;
    ($s, $h, $j, $raw) = card_get($ngx, $id4, token => $tok1,
                                  query => 'lang=en');
    is($s, 200, 'a 14 KB answer: 200');
    ok(length($raw) > 12000, 'a 14 KB answer: ' . length($raw) . ' bytes');
    ok(!$h->{':length_mismatch'}, 'a 14 KB answer: Content-Length right');
    is($j && $j->{cardCode}, $code4, 'a 14 KB answer: the card');
    is(scalar @{ $j->{instructions}{steps} }, 12, 'a 14 KB answer: 12 steps');
    is($j->{instructions}{steps}[11], "Step 12 (*600#): " . ('ع' x 500),
       'a 14 KB answer: the last step intact');

    # the rest still works after the reload
    ($s) = card_get($ngx, $id);
    is($s, 401, 'after reload: 401 without a session');
    ($s) = card_get($ngx, random_topup_id(), token => $tok1);
    is($s, 404, 'after reload: 404');
    ($s, $h) = card_get($ngx, $id, method => 'OPTIONS', prefix => '/cors',
                        headers => { Origin => 'https://shop.example' });
    is($s, 204, 'after reload: preflight');
}

# ocdz_db with a host name: resolved when nginx reads its configuration,
# and the card is served through it
{
    my $named = card_nginx($env,
        db => $env->{pg}->conninfo(host => 'localhost'));
    my ($s, undef, $j) = card_get($named, $id, token => $tok1);
    is($s, 200, 'ocdz_db host=localhost: 200');
    is($j && $j->{cardCode}, $code, 'ocdz_db host=localhost: the card');
    $named->stop;
}

hygiene($env);
$ngx->quit;
done_testing;

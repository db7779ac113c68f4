# The API contract (doc/openapi.json, issue #16): the document itself is
# sound OpenAPI 3.1 with JSON Schema 2020-12 schemas, and real answers of
# the module for every documented status (GET, HEAD, the CORS preflight)
# match it: status, headers, body. The locations the README and
# conf-examples/ document, taken verbatim, answer ill-formed ids with the
# module's JSON 400.

use v5.36;
use utf8;
use Test::More;
use Encode qw(encode_utf8);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::OpenAPI;

require_module();

my $api = Ocdz::OpenAPI->shared
    or plan skip_all => 'OpenAPI checker: ' . Ocdz::OpenAPI->why_not;

my $TEMPLATE = { template => '/api/internet-orders/{topupId}/card' };

# --- the document -----------------------------------------------------------

is_deeply([$api->document_problems], [], 'doc/openapi.json: no problem')
    or diag join "\n", $api->document_problems;

{
    # the checker finds what is wrong: copies of the document, each with
    # one mistake
    my $doc = json_decode(slurp(Ocdz::OpenAPI::doc_path()));
    my $dir = tmpdir();
    my @broken = (
        ['a response without description', sub ($d) {
            delete $d->{components}{responses}{OrderNotFound}{description} },
         qr/responses\.404: no description/],
        ['a $ref to nothing', sub ($d) {
            $d->{components}{responses}{Card}{content}{'application/json'}
              {schema}{'$ref'} = '#/components/schemas/Nope' },
         qr/does not resolve/],
        ['a schema that is not 2020-12', sub ($d) {
            $d->{components}{schemas}{TopupId}{type} = 'strnig' },
         qr/TopupId: not a valid 2020-12 schema/],
        ['an example its schema refuses', sub ($d) {
            $d->{components}{responses}{OrderNotReady}{content}
              {'application/json'}{example}{status} = 'DONE' },
         qr/example: \/status: 'DONE' is not one of/],
        ['OpenAPI 3.0', sub ($d) { $d->{openapi} = '3.0.3' },
         qr/openapi: must be 3\.1/],
        ['a path parameter missing', sub ($d) {
            $d->{paths}{'/api/internet-orders/{topupId}/card'}{parameters}
                = [] },
         qr/no path parameter for \{topupId\}/],
        ['an unknown security scheme', sub ($d) {
            $d->{paths}{'/api/internet-orders/{topupId}/card'}{get}
              {security} = [{ sessionKey => [] }] },
         qr/no security scheme sessionKey/],
        ['a status key that is none', sub ($d) {
            my $g = $d->{paths}{'/api/internet-orders/{topupId}/card'}{get};
            $g->{responses}{'4xx'} = delete $g->{responses}{400} },
         qr/not a status code/],
    );
    for my $b (@broken) {
        my ($what, $break, $want) = @$b;
        my $copy = json_decode(json_encode($doc));
        $break->($copy);
        my $file = write_file("$dir/openapi.json", json_encode($copy));
        my $c = Ocdz::OpenAPI->new(doc => $file);
        my @p = $c->document_problems;
        ok(scalar(grep { $_ =~ $want } @p), "the checker sees $what")
            or diag join "\n", @p;
    }
}

{
    # the README's table and the document name the same answers
    my $readme = slurp(repo_root() . '/README.md');
    my ($section) = $readme =~ /^## The card endpoint\n(.*?)^## /ms;
    my %table = $section =~ /^\| (\d{3}) \| `([A-Z_]+)` \|/mg;
    my $doc = json_decode(slurp(Ocdz::OpenAPI::doc_path()));
    my $item = $doc->{paths}{'/api/internet-orders/{topupId}/card'};
    my %statuses = map { %{ $_->{responses} } }
                   grep { ref eq 'HASH' && $_->{responses} } values %$item;
    my %codes = map { $_ => 1 }
                @{ $doc->{components}{schemas}{ErrorCode}{enum} };
    ok(scalar(keys %table) >= 9, 'README: the table of answers read');
    for my $st (sort keys %table) {
        ok($statuses{$st}, "README's $st is documented");
        ok($codes{ $table{$st} }, "README's $table{$st} is an error code");
    }
}

# --- the locations the README and conf-examples/ document ---------------------

# nginx blocks of a text: the http-level lines (limit_req_zone) and the
# location blocks, verbatim
sub conf_blocks ($text) {
    my (@http, @loc);
    push @http, $1 while $text =~ /^\s*(limit_req_zone [^;]+;)/mg;
    push @loc, [$1, $2]
        while $text =~ /^(\s*location ~ "([^"]+)" \{\n.*?^\s*\})/msg;
    return (\@http, \@loc);
}

my $readme = slurp(repo_root() . '/README.md');
my ($card_section) = $readme =~ /^## The card endpoint\n(.*?)^## /ms;
my $readme_nginx = join "\n", $card_section =~ /^```nginx\n(.*?)^```/msg;
my ($readme_http, $readme_locs) = conf_blocks($readme_nginx);
my $example = slurp(repo_root() . '/conf-examples/nginx-ocdz.conf');
my ($example_http, $example_locs) = conf_blocks($example);
my (undef, $sources_locs) =
    conf_blocks(slurp(repo_root() . '/conf-examples/session-sources.conf'));

is(scalar @$readme_locs, 2, 'README: two card locations');
is(scalar @$example_locs, 1, 'nginx-ocdz.conf: one card location');
is(scalar @$sources_locs, 3, 'session-sources.conf: three card locations');

# the session-sources locations with a database session, at their paths
my $sources = join "\n", map {
    qq{        location ~ "$_->[1]" { ocdz_card \$1; ocdz_session db; }}
} @$sources_locs;

my %seen_zone;
my $zones = join "\n", grep { !$seen_zone{$_}++ }
            @$readme_http, @$example_http;

my $env = card_env();
my $pg = $env->{pg};

my $ngx = card_nginx($env,
    nginx => { ports => 4 },
    http => <<"EOF",
    $zones
    limit_req_zone \$binary_remote_addr zone=strict:1m rate=1r/m;
    ssl_certificate %%SERVER_CERT%%;
    ssl_certificate_key %%SERVER_KEY%%;
EOF
    server => <<"EOF",
        location ~ "^/cors/([0-9a-f]{24})/card\$" {
            ocdz_card \$1;
            ocdz_cors_origins https://shop.example.dz;
        }
        location ~ "^/secure/([0-9a-f]{24})/card\$" {
            ocdz_card \$1;
            ocdz_https_only on;
        }
        location ~ "^/limited/([0-9a-f]{24})/card\$" {
            limit_req zone=strict;
            limit_req_status 429;
            ocdz_card \$1;
        }
$sources
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
$readme_locs->[0][0]
        location / { return 404; }
    }
    server {
        listen 127.0.0.1:%%PORT3%%;
$readme_locs->[1][0]
        location / { return 404; }
    }
    server {
        listen 127.0.0.1:%%PORT4%% ssl;
$example_locs->[0][0]
EOF
);

my $tok = $pg->add_session(random_token(), 'u1');
my $tok2 = $pg->add_session(random_token(), 'u2');
my ($id, $code) = new_card($env, user => 'u1');

# Every answer checked: the status expected, and as documented. The
# README's location (port 2) serves /api/internet-orders/; port 1 has
# the test's own locations.
my %by_status;
sub answer ($what, $want, $method, $path, %o) {
    my $port = delete $o{port}
               // ($path =~ m{^/api/internet-orders/} ? 2 : 1);
    my $r = $ngx->http($method, $path, timeout => 20, %o,
                       port => $ngx->port($port));
    is($r->{status}, $want, "$what: $want") or diag $r->{raw};
    $api->answer_ok("$what ($method $r->{status})", $method, $TEMPLATE,
                    $r->{status}, $r->{headers}, $r->{body});
    $by_status{"$method $r->{status}"}++;
    return $r;
}

sub bearer ($t = $tok) { return (headers => { Authorization => "Bearer $t" }) }

# (not %00: nginx refuses it in a path with its own 400 page)
my @ill = ('not-an-id', 'abc', "${id}0", substr($id, 1), 'g' x 24,
           '%20' x 24, substr($id, 2) . '%C3%A9', substr($id, 1) . '%2F',
           'a/b', "$id;x=1");

# (the limit_req locations of the README and nginx-ocdz.conf share one
# zone: 5 a second and a burst of 10 for both)
for my $where ([2, 'README location', 9], [3, "README's limit_req location", 3]) {
    my ($port, $what, $last) = @$where;
    for my $bad (@ill[0 .. $last]) {
        my $r = answer("$what, id '$bad'", 400, 'GET',
                       "/api/internet-orders/$bad/card", port => $port,
                       bearer());
        is((json_decode($r->{body}) // {})->{error}, 'INVALID_TOPUP_ID',
           "$what, id '$bad': INVALID_TOPUP_ID");
    }
    my $r = answer("$what, the card", 200, 'GET',
                   "/api/internet-orders/$id/card", port => $port, bearer());
    is((json_decode($r->{body}) // {})->{cardCode}, $code, "$what: the card");
}

{
    # conf-examples/nginx-ocdz.conf, verbatim, over TLS: its own cookie,
    # https only, CORS for the shop
    my %c = (port => 4, tls => 1,
             headers => { Cookie => "shop_session=$tok" });
    for my $bad (@ill[0 .. 2]) {
        my $r = answer("nginx-ocdz.conf, id '$bad'", 400, 'GET',
                       "/api/internet-orders/$bad/card", %c);
        is((json_decode($r->{body}) // {})->{error}, 'INVALID_TOPUP_ID',
           "nginx-ocdz.conf, id '$bad': INVALID_TOPUP_ID");
    }
    my $r = answer('nginx-ocdz.conf, the card', 200, 'GET',
                   "/api/internet-orders/$id/card", %c);
    is((json_decode($r->{body}) // {})->{cardCode}, $code,
       'nginx-ocdz.conf: the card');
    $r = answer('nginx-ocdz.conf, preflight', 204, 'OPTIONS',
                "/api/internet-orders/$id/card", port => 4, tls => 1,
                headers => { Origin => 'https://shop.example.dz',
                             'Access-Control-Request-Method' => 'GET' });
}

for my $loc (@$sources_locs) {
    (my $path = $loc->[1]) =~ s/^\^//;
    $path =~ s/\$$//;
    for my $bad ('not-an-id', "${id}0") {
        (my $p = $path) =~ s/\(\.\+\)/$bad/;
        my $r = $ngx->http('GET', $p, bearer());
        is($r->{status}, 400, "session-sources.conf $loc->[1], '$bad': 400");
        is((json_decode($r->{body}) // {})->{error}, 'INVALID_TOPUP_ID',
           "session-sources.conf $loc->[1], '$bad': INVALID_TOPUP_ID");
        $api->answer_ok("session-sources.conf $loc->[1], '$bad'", 'GET',
                        $TEMPLATE, $r->{status}, $r->{headers}, $r->{body});
    }
}

# --- every status of GET and HEAD ----------------------------------------------

my $P = sub ($oid, $q = '') { "/api/internet-orders/$oid/card$q" };

for my $m (qw(GET HEAD)) {
    answer("$m the card", 200, $m, $P->($id), bearer());
    answer("$m the card, wait=25", 200, $m, $P->($id, '?wait=25'), bearer());
    answer("$m the card in French", 200, $m, $P->($id),
           headers => { Authorization => "Bearer $tok",
                        'Accept-Language' => 'fr-DZ,fr;q=0.9' });
    answer("$m the card, lang=ar", 200, $m, $P->($id, '?lang=ar'),
           bearer());
    answer("$m, no session", 401, $m, $P->($id));
    answer("$m, an unknown session", 401, $m, $P->($id),
           bearer(random_token()));
    answer("$m, an ill-formed id", 400, $m, $P->('xyz'), bearer());
    my $r = answer("$m, wait=abc", 400, $m, $P->($id, '?wait=abc'),
                   bearer());
    is((json_decode($r->{body}) // {})->{error}, 'INVALID_WAIT',
       "$m, wait=abc: INVALID_WAIT") if $m eq 'GET';
    answer("$m over plain HTTP, https only", 403, $m, "/secure/$id/card",
           bearer());
    answer("$m, someone else's order", 404, $m, $P->($id), bearer($tok2));
    answer("$m, no such order", 404, $m, $P->(random_topup_id()), bearer());
}
{
    my ($cid) = new_card($env, user => 'u1', type => '4G',
                         number => '213472731602', value => 2000);
    my $r = answer('GET a 4G card, lang=ar', 200, 'GET', $P->($cid,
                   '?lang=ar&wait=25'), bearer());
    my $j = json_decode($r->{body});
    is($j->{instructions}{language}, 'ar', 'instructions in Arabic');
}

for my $st (qw(PENDING HANDLING QUEUED UNKNOWN_ERROR ERROR)) {
    my $oid = new_order($env, user_id => 'u1', status => $st);
    for my $q ('', '?wait=25', '?wait=0') {
        my $r = answer("GET $st$q", 409, 'GET', $P->($oid, $q), bearer());
        is((json_decode($r->{body}) // {})->{status}, $st, "GET $st$q: status $st");
    }
    answer("HEAD $st", 409, 'HEAD', $P->($oid), bearer());
}
{
    my $oid = new_order($env, user_id => 'u1', status => 'REFUNDED',
        refund_message => encode_utf8('تعذر شحن البطاقة، تم استرجاع المبلغ'));
    my $r = answer('GET refunded with a message', 410, 'GET', $P->($oid),
                   bearer());
    like((json_decode($r->{body}) // {})->{refundMessage}, qr/\p{Arabic}/,
         'refundMessage');
    answer('HEAD refunded', 410, 'HEAD', $P->($oid), bearer());
    $oid = new_order($env, user_id => 'u1', status => 'REFUNDED');
    answer('GET refunded without a message', 410, 'GET', $P->($oid),
           bearer());
}
{
    my ($oid) = new_card($env, user => 'u1', store => 0);
    my $r = answer('GET fulfilled without a card', 500, 'GET', $P->($oid),
                   bearer());
    is((json_decode($r->{body}) // {})->{error}, 'DELIVERY_FAILED',
       'DELIVERY_FAILED');
    answer('HEAD fulfilled without a card', 500, 'HEAD', $P->($oid),
           bearer());

    audit_test_hook($pg);
    $r = answer('GET, the statement refused', 500, 'GET', $P->($id),
                headers => { Authorization => "Bearer $tok",
                             'User-Agent' => 'poison' });
    is((json_decode($r->{body}) // {})->{error}, 'INTERNAL_ERROR', 'INTERNAL_ERROR');
}

# --- methods, CORS, the preflight ------------------------------------------

for my $m (qw(POST PUT DELETE PATCH)) {
    my $r = answer("$m", 405, $m, $P->($id), bearer(),
                   body => '{"x":1}');
    is($r->{headers}{allow}, 'GET, HEAD', "$m: Allow: GET, HEAD");
}
{
    my $r = answer('OPTIONS without CORS', 405, 'OPTIONS', $P->($id),
                   headers => { Origin => 'https://shop.example.dz' });
    is($r->{headers}{allow}, 'GET, HEAD', 'OPTIONS without CORS: Allow');

    my %pre = (Origin => 'https://shop.example.dz',
               'Access-Control-Request-Method' => 'GET',
               'Access-Control-Request-Headers' => 'authorization');
    $r = answer('preflight', 204, 'OPTIONS', "/cors/$id/card",
                headers => \%pre);
    is($r->{headers}{'access-control-max-age'}, '600', 'preflight: Max-Age');
    is($r->{body}, '', 'preflight: no body');
    $r = answer('preflight, an origin not listed', 405, 'OPTIONS',
                "/cors/$id/card",
                headers => { %pre, Origin => 'https://evil.example' });
    is($r->{headers}{allow}, 'GET, HEAD, OPTIONS',
       'CORS location: Allow: GET, HEAD, OPTIONS');
    answer('OPTIONS without Origin, CORS location', 405, 'OPTIONS',
           "/cors/$id/card");
    answer('DELETE, CORS location', 405, 'DELETE', "/cors/$id/card",
           headers => { Origin => 'https://shop.example.dz' });

    my %from = (Origin => 'https://shop.example.dz');
    $r = answer('GET from the listed origin', 200, 'GET', "/cors/$id/card",
                headers => { %from, Authorization => "Bearer $tok" });
    is($r->{headers}{'access-control-allow-origin'}, 'https://shop.example.dz',
       'GET from the listed origin: Access-Control-Allow-Origin');
    answer('HEAD from the listed origin', 200, 'HEAD', "/cors/$id/card",
           headers => { %from, Authorization => "Bearer $tok" });
    answer('401 from the listed origin', 401, 'GET', "/cors/$id/card",
           headers => \%from);
    answer('404 from the listed origin', 404, 'GET',
           '/cors/' . random_topup_id() . '/card',
           headers => { %from, Authorization => "Bearer $tok" });
}

# --- limit_req: nginx's page -------------------------------------------------

{
    my $ok = $ngx->http('GET', "/limited/$id/card", bearer());
    is($ok->{status}, 200, 'limit_req: the first request passes');
    answer('limit_req, the second', 429, 'GET', "/limited/$id/card",
           bearer());
    answer('limit_req, HEAD', 429, 'HEAD', "/limited/$id/card", bearer());
    for my $m (qw(OPTIONS POST PUT PATCH DELETE)) {
        answer("limit_req, $m", 429, $m, "/limited/$id/card",
               headers => { Origin => 'https://shop.example.dz' });
    }
}

# --- PostgreSQL down: 503 --------------------------------------------------

$pg->stop('fast');
for my $m (qw(GET HEAD)) {
    my $r = answer("$m, PostgreSQL stopped", 503, $m, $P->($id), bearer());
    like($r->{headers}{'retry-after'} // '', qr/^\d+$/, "$m 503: Retry-After");
}
$pg->start;
ok(wait_until(sub { ($ngx->http('GET', $P->($id), port => $ngx->port(2),
                                bearer()))[0] == 200 },
              timeout => 20, interval => 0.2),
   'PostgreSQL back: 200 again');

# --- coverage, and the checks can fail ---------------------------------------

is_deeply([$api->not_seen], [],
          'every documented answer was shown by a real one')
    or diag 'not seen: ' . join ', ', $api->not_seen;

{
    # real answers, changed: the checks see it
    my $r = $ngx->http('GET', $P->(new_order($env, user_id => 'u1',
                                              status => 'HANDLING')),
                       port => $ngx->port(2), bearer());
    my @all = @{ $r->{headers}{':all'} };
    my @cases = (
        ['no Cache-Control', 409,
         [grep { lc $_->[0] ne 'cache-control' } @all], $r->{body},
         qr/header Cache-Control: missing/],
        ['Cache-Control: max-age=60', 409,
         [map { lc $_->[0] eq 'cache-control' ? [$_->[0], 'max-age=60'] : $_ }
          @all], $r->{body}, qr/Cache-Control: 'no-store' was expected/],
        ['an undocumented header of the module', 409,
         [@all, ['Retry-After', '5']], $r->{body},
         qr/header retry-after: sent but not documented/],
        ['an undocumented field', 409, \@all,
         $r->{body} =~ s/\}$/,"eta":5}/r, qr/'eta' was unexpected/],
        ['a status not in the enum', 409, \@all,
         $r->{body} =~ s/"HANDLING"/"WAITING"/r, qr/'WAITING' is not one of/],
        ['an undocumented status', 418, \@all, $r->{body},
         qr/status 418 is not documented/],
        ['text/html', 409,
         [map { lc $_->[0] eq 'content-type' ? [$_->[0], 'text/html'] : $_ }
          @all], $r->{body}, qr/Content-Type 'text\/html': not one of/],
        ['not JSON', 409, \@all, '<html>', qr/not JSON/],
    );
    for my $c (@cases) {
        my ($what, $st, $h, $body, $want) = @$c;
        my @p = $api->problems('GET', $TEMPLATE, $st, { ':all' => $h },
                               $body);
        ok(scalar(grep { $_ =~ $want } @p), "the checker sees $what")
            or diag join "\n", @p;
    }
    my @p = $api->problems('HEAD', $TEMPLATE, 409, $r->{headers}, $r->{body});
    ok(scalar(grep { /a body of \d+ bytes/ } @p),
       'the checker sees a body in a HEAD answer');
}

diag 'answers validated: ' . join ', ',
     map { "$_ x$by_status{$_}" } sort keys %by_status;

hygiene($env);
$ngx->quit;
done_testing;

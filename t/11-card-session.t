# Session sources of the card endpoint: database tokens (cookie, custom
# cookie, Bearer, expiry, the storefront's own session query), HS256
# JWTs (exp, nbf, user claim, refused algorithms and signatures), and a
# trusted nginx variable (set, map), with the warnings `nginx -t` gives
# for client-controlled variables. Odd tokens get 401; 401s are never
# audited.

use v5.36;
use Test::More;
use Digest::SHA qw(hmac_sha256 hmac_sha512);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();

my $env = card_env();
my $pg = $env->{pg};
my $dir = $env->{dir};

# the storefront's own session table
$pg->psql(<<'EOF');
CREATE SCHEMA shop;
CREATE TABLE shop.sessions (sid text PRIMARY KEY, customer_id int NOT NULL,
                            expires timestamptz NOT NULL);
GRANT USAGE ON SCHEMA shop TO ocdz_module;
GRANT SELECT ON shop.sessions TO ocdz_module;
EOF

my $secret = random_hex(24);            # 48 bytes of text
write_file("$dir/jwt.secret", "$secret\n", 0600);

my $ngx = card_nginx($env,
    nginx => { vars => { BADUSER => "u1\xff", CTLUSER => "u1\x01" } },
    http => <<'EOF',
    map $http_x_internal_auth $mapped_user {
        default "";
        "k-9f8e7d6c5b4a" "u1";
    }
EOF
    server => <<'EOF');
        location ~ "^/c2/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session_cookie sid_custom;
        }
        location ~ "^/nobearer/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session_bearer off;
        }
        location ~ "^/shop/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session_cookie shop_sid;
            ocdz_session_query "SELECT customer_id FROM shop.sessions WHERE sid = $1 AND expires > now()";
        }
        location ~ "^/shopnull/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session_query "SELECT CASE WHEN customer_id = 42 THEN NULL ELSE '' END FROM shop.sessions WHERE sid = $1";
        }
        location ~ "^/varbad/([0-9a-f]{24})/card$" {
            set $bad_user "%%BADUSER%%";
            ocdz_card $1;
            ocdz_session $bad_user;
        }
        location ~ "^/varctl/([0-9a-f]{24})/card$" {
            set $ctl_user "%%CTLUSER%%";
            ocdz_card $1;
            ocdz_session $ctl_user;
        }
        location ~ "^/jwt/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session jwt;
            ocdz_jwt_secret_file %%DIR%%/jwt.secret;
        }
        location ~ "^/jwt2/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session jwt;
            ocdz_jwt_secret_file %%DIR%%/jwt.secret;
            ocdz_jwt_user_claim uid;
            ocdz_jwt_leeway 0;
        }
        location ~ "^/var/([0-9a-f]{24})/card$" {
            set $shop_user "u1";
            ocdz_card $1;
            ocdz_session $shop_user;
        }
        location ~ "^/map/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session $mapped_user;
        }
        location ~ "^/varempty/([0-9a-f]{24})/card$" {
            set $nobody "";
            ocdz_card $1;
            ocdz_session $nobody;
        }
EOF

sub audit_count () { $pg->value('SELECT count(*) FROM ocdz.audit') }

my ($id1, $code1) = new_card($env, user => 'u1');
my ($id2, $code2) = new_card($env, user => 'u2');
my ($id42, $code42) = new_card($env, user => '42');
my ($id777, $code777) = new_card($env, user => '777');

# get(prefix, id, %card_get options) -> (status, json)
sub get ($prefix, $id, %o) {
    my ($s, $h, $j, $raw) = card_get($ngx, $id, prefix => $prefix, %o);
    return wantarray ? ($s, $j, $h, $raw) : $s;
}

sub gets_card ($what, $prefix, $id, $code, %o) {
    my ($s, $j, $h, $raw) = get($prefix, $id, %o);
    is($s, 200, "$what: 200") or diag $raw;
    is($j && $j->{cardCode}, $code, "$what: the card");
}

sub refused ($what, $prefix, $id, %o) {
    my $before = audit_count();
    my ($s, $j, $h) = get($prefix, $id, %o);
    is($s, 401, "$what: 401");
    is($j && $j->{error}, 'SESSION_REQUIRED', "$what: SESSION_REQUIRED");
    is($h->{'www-authenticate'}, 'Bearer realm="ocdz"',
       "$what: WWW-Authenticate");
    is(audit_count(), $before, "$what: not audited");
}

my $API = '/api/internet-orders';

# --- db sessions ------------------------------------------------------------

my $t1 = $pg->add_session(random_token(), 'u1');
my $t2 = $pg->add_session(random_token(), 'u2');
my $texp = $pg->add_session(random_token(), 'u1', expires_in => -5);

gets_card('db: cookie ocdz_session', $API, $id1, $code1,
          cookie => "ocdz_session=$t1");
gets_card('db: cookie among others', $API, $id1, $code1,
          cookie => "theme=dark; ocdz_session=$t1; lang=fr");
gets_card('db: Bearer', $API, $id1, $code1, token => $t1);
gets_card('db: lower-case "bearer"', $API, $id1, $code1,
          headers => { Authorization => "bearer $t1" });
gets_card('db: good cookie, unknown Bearer', $API, $id1, $code1,
          cookie => "ocdz_session=$t1", token => random_token());
gets_card('db: malformed cookie, good Bearer', $API, $id1, $code1,
          cookie => 'ocdz_session=short', token => $t1);
gets_card('db: the other user', $API, $id2, $code2, token => $t2);
is(get($API, $id2, token => $t1), 404, "db: someone else's order: 404");
refused('db: expired session', $API, $id1, token => $texp);
refused('db: expired session in a cookie', $API, $id1,
        cookie => "ocdz_session=$texp");
refused('db: unknown token', $API, $id1, token => random_token());
refused('db: no token', $API, $id1);
refused('db: the token under another cookie name', $API, $id1,
        cookie => "sid_custom=$t1");
refused('db: a cookie name that only ends like ours', $API, $id1,
        cookie => "xocdz_session=$t1");
refused('db: Basic authorization', $API, $id1,
        headers => { Authorization => "Basic $t1" });
refused('db: the hash instead of the token', $API, $id1,
        token => sha256_hex($t1));
{
    # a session that expires while in use
    my $t = $pg->add_session(random_token(), 'u1', expires_in => 3600);
    is(get($API, $id1, token => $t), 200, 'db: session valid');
    $pg->psql("UPDATE ocdz.sessions SET expires_at = now() - interval '1s'"
              . " WHERE token_hash = sha256('$t'::bytea)");
    refused('db: session expired since', $API, $id1, token => $t);
    # a session made the way the brief says a storefront does
    my $t3 = random_token();
    $pg->psql("INSERT INTO ocdz.sessions(token_hash, user_id, expires_at) "
              . "VALUES (sha256('$t3'::bytea), 'u1', now() + '1h')");
    gets_card('db: session stored as sha256(token::bytea)', $API, $id1,
              $code1, token => $t3);
}

# --- a cookie and a Bearer: the cookie first, the Bearer when the cookie
# gives no session (one more statement, only then) -------------------------

# reveal statements run since $mark (PostgreSQL logs every statement)
sub reveals_run ($mark) {
    my @l = $pg->log_content($mark)
            =~ /^.*\b(?:execute|statement)\b[^:]*:\s*WITH i AS \(.*$/mg;
    return scalar @l;
}

# $ua: the request's User-Agent; returns its audit rows
sub ua_audit ($ua) {
    return $pg->hashes('SELECT event, topup_id, user_id FROM ocdz.audit '
                       . 'WHERE user_agent = ' . sql_quote($ua)
                       . ' ORDER BY id');
}

{
    my $body401 = (get($API, $id1))[3] =~ s/^.*?\r\n\r\n//sr;
    my $t2b = $pg->add_session(random_token(), 'u2');
    my $texp2 = $pg->add_session(random_token(), 'u2', expires_in => -5);
    my $trev = $pg->add_session(random_token(), 'u1');
    $pg->psql('DELETE FROM ocdz.sessions WHERE token_hash = '
              . "sha256('$trev'::bytea)");

    my $mark = $pg->log_mark;
    gets_card('both: good cookie, good Bearer', $API, $id1, $code1,
              cookie => "ocdz_session=$t1", token => $t1);
    is(reveals_run($mark), 1, 'both: the same token twice, one statement');

    $mark = $pg->log_mark;
    gets_card('both: good cookie, garbage Bearer', $API, $id1, $code1,
              cookie => "ocdz_session=$t1",
              headers => { Authorization => 'Bearer not!a token' });
    is(reveals_run($mark), 1, 'both: good cookie, garbage Bearer: one '
       . 'statement');

    $mark = $pg->log_mark;
    gets_card('both: good cookie, unknown Bearer', $API, $id1, $code1,
              cookie => "ocdz_session=$t1", token => random_token());
    is(reveals_run($mark), 1, 'both: good cookie, unknown Bearer: one '
       . 'statement, the Bearer never looked up');

    $mark = $pg->log_mark;
    gets_card('both: unknown cookie, good Bearer', $API, $id1, $code1,
              cookie => 'ocdz_session=' . random_token(), token => $t1);
    is(reveals_run($mark), 2, 'both: unknown cookie, good Bearer: two '
       . 'statements');
    gets_card('both: expired cookie, good Bearer', $API, $id1, $code1,
              cookie => "ocdz_session=$texp", token => $t1);
    gets_card('both: revoked cookie, good Bearer', $API, $id1, $code1,
              cookie => "ocdz_session=$trev", token => $t1);
    gets_card('both: stale cookie among others, good Bearer', $API, $id1,
              $code1, cookie => "theme=dark; ocdz_session=$texp; lang=fr",
              token => $t1);
    gets_card('both: revoked cookie, lower-case "bearer"', $API, $id1,
              $code1, cookie => "ocdz_session=$trev",
              headers => { Authorization => "bearer $t1" });
    {
        my ($s, $j, $h) = get($API, $id1, method => 'HEAD',
                              cookie => "ocdz_session=$texp", token => $t1);
        is($s, 200, 'both: HEAD, expired cookie, good Bearer: 200');
    }

    # the audit row names the user of the token that worked
    {
        my $ua = 'both-' . random_hex(4);
        gets_card('both: cookie of an expired u2 session, Bearer of u1',
                  $API, $id1, $code1, cookie => "ocdz_session=$texp2",
                  token => $t1, headers => { 'User-Agent' => $ua });
        my @rows = ua_audit($ua);
        is(scalar @rows, 1, 'both: one audit row for the two lookups');
        is($rows[0] && $rows[0]{event}, 'CARD_REVEALED',
           'both: audited as CARD_REVEALED');
        is($rows[0] && $rows[0]{user_id}, 'u1',
           'both: audited for u1, the Bearer\'s user');
    }

    # both no session: 401 as before, the Bearer tried once
    $mark = $pg->log_mark;
    refused('both: unknown cookie, unknown Bearer', $API, $id1,
            cookie => 'ocdz_session=' . random_token(),
            token => random_token());
    is(reveals_run($mark), 2, 'both unknown: two statements, no more');
    refused('both: expired cookie, revoked Bearer', $API, $id1,
            cookie => "ocdz_session=$texp", token => $trev);
    refused('both: expired cookie, garbage Bearer', $API, $id1,
            cookie => "ocdz_session=$texp",
            headers => { Authorization => 'Bearer short' });
    {
        my ($s, $j, $h, $raw) = get($API, $id1,
                                    cookie => "ocdz_session=$texp",
                                    token => random_token());
        is($raw =~ s/^.*?\r\n\r\n//sr, $body401,
           'both unknown: the same body as a request without a token');
    }
    refused('both: the same unknown token twice', $API, $id1,
            cookie => "ocdz_session=$texp", token => $texp);

    # a valid session that does not own the order: 404, no fallback
    $mark = $pg->log_mark;
    is(get($API, $id1, cookie => "ocdz_session=$t2", token => $t2b), 404,
       "both: two sessions of u2, u1's order: 404");
    is(reveals_run($mark), 1, 'both: a valid cookie is the answer');
    {
        my $ua = 'both-' . random_hex(4);
        is(get($API, $id1, cookie => "ocdz_session=$t2", token => $t1,
               headers => { 'User-Agent' => $ua }), 404,
           "both: cookie of u2, Bearer of u1, u1's order: 404 (the cookie "
           . 'decides)');
        my @rows = ua_audit($ua);
        is(join(',', map { "$_->{event}/$_->{user_id}" } @rows),
           'ORDER_NOT_FOUND/u2', 'both: audited for u2, the cookie\'s user');
    }
    is(get($API, $id1, cookie => "ocdz_session=$texp", token => $t2), 404,
       "both: expired cookie, Bearer of u2, u1's order: 404");

    # the session query and the Bearer
    my $sid = random_token();
    my $sold = random_token();
    $pg->psql("INSERT INTO shop.sessions VALUES ('$sid', 42, "
              . "now() + interval '1 hour'), ('$sold', 42, "
              . "now() - interval '1 minute')");
    $mark = $pg->log_mark;
    gets_card('both, session query: stale cookie, good Bearer', '/shop',
              $id42, $code42, cookie => "shop_sid=$sold", token => $sid);
    is(reveals_run($mark), 2, 'both, session query: two statements');
    gets_card('both, session query: good cookie, unknown Bearer', '/shop',
              $id42, $code42, cookie => "shop_sid=$sid",
              token => random_token());
    refused('both, session query: both stale', '/shop', $id42,
            cookie => "shop_sid=$sold", token => random_token());

    # bearer off: the Bearer is never a fallback
    refused('both, bearer off: stale cookie, good Bearer', '/nobearer', $id1,
            cookie => "ocdz_session=$texp", token => $t1);
    # a custom cookie name
    gets_card('both, custom cookie: stale cookie, good Bearer', '/c2', $id1,
              $code1, cookie => "sid_custom=$texp", token => $t1);
}

gets_card('custom cookie', '/c2', $id1, $code1, cookie => "sid_custom=$t1");
gets_card('custom cookie location: Bearer', '/c2', $id1, $code1,
          token => $t1);
refused('custom cookie location: ocdz_session cookie', '/c2', $id1,
        cookie => "ocdz_session=$t1");

gets_card('bearer off: cookie', '/nobearer', $id1, $code1,
          cookie => "ocdz_session=$t1");
refused('bearer off: Bearer', '/nobearer', $id1, token => $t1);

# --- the storefront's own session query -----------------------------------

{
    my $sid = random_token();
    my $sold = random_token();
    $pg->psql("INSERT INTO shop.sessions VALUES ('$sid', 42, "
              . "now() + interval '1 hour'), ('$sold', 42, "
              . "now() - interval '1 minute')");
    gets_card('session query: cookie', '/shop', $id42, $code42,
              cookie => "shop_sid=$sid");
    gets_card('session query: Bearer', '/shop', $id42, $code42,
              token => $sid);
    is(get('/shop', $id1, cookie => "shop_sid=$sid"), 404,
       "session query: someone else's order: 404");
    refused('session query: expired', '/shop', $id42,
            cookie => "shop_sid=$sold");
    refused('session query: unknown', '/shop', $id42,
            cookie => 'shop_sid=' . random_token());
    refused('session query: an ocdz.sessions token', '/shop', $id1,
            token => $t1);
    my ($a) = grep { $_->{event} eq 'CARD_REVEALED' } $pg->audit($id42);
    is($a && $a->{user_id}, '42', 'session query: audited for user 42');

    # a query that finds the session but gives a NULL or empty user
    my $sid43 = random_token();
    $pg->psql("INSERT INTO shop.sessions VALUES ('$sid43', 43, "
              . "now() + interval '1 hour')");
    refused('session query: a NULL user', '/shopnull', $id42, token => $sid);
    refused('session query: an empty user', '/shopnull', $id42,
            token => $sid43);
}

# --- JWT ---------------------------------------------------------------------

my $now = time;
sub jwt (%c) { jwt_hs256($secret, { exp => int($now) + 300, %c }) }

gets_card('jwt: valid', '/jwt', $id1, $code1, token => jwt(sub => 'u1'));
gets_card('jwt: in the ocdz_session cookie', '/jwt', $id1, $code1,
          cookie => 'ocdz_session=' . jwt(sub => 'u1'));
is(get('/jwt', $id2, token => jwt(sub => 'u1')), 404,
   "jwt: someone else's order: 404");
gets_card('jwt: nbf in the past', '/jwt', $id1, $code1,
          token => jwt(sub => 'u1', nbf => int($now) - 60));
gets_card('jwt: exp 10 s ago, within the 30 s leeway', '/jwt', $id1, $code1,
          token => jwt(sub => 'u1', exp => int($now) - 10));
refused('jwt: nbf in the future', '/jwt', $id1,
        token => jwt(sub => 'u1', nbf => int($now) + 600));
refused('jwt: expired', '/jwt', $id1,
        token => jwt(sub => 'u1', exp => int($now) - 600));
refused('jwt: no exp', '/jwt', $id1,
        token => jwt_hs256($secret, { sub => 'u1' }));
refused('jwt: exp not a number', '/jwt', $id1,
        token => jwt(sub => 'u1', exp => 'tomorrow'));
refused('jwt: no sub', '/jwt', $id1, token => jwt(uid => 'u1'));
refused('jwt: a control character in the user', '/jwt', $id1,
        token => jwt(sub => "u1\x01"));
refused('jwt: a user of 129 bytes', '/jwt', $id1, token => jwt(sub => 'u' x 129));
{
    # a user that is not ASCII
    my ($idn, $coden) = new_card($env, user => "\xc3\xa9lise");
    my $t = jwt_hs256($secret, { sub => "\x{e9}lise",
                                 exp => int($now) + 300 });
    gets_card('jwt: a non-ASCII user', '/jwt', $idn, $coden, token => $t);
}
{
    my $claims = { sub => 'u1', exp => int($now) + 300 };
    my $body = b64url(json_encode($claims));
    my $h = sub ($hdr) { b64url(json_encode($hdr)) };

    refused('jwt: alg none', '/jwt', $id1,
            token => $h->({ alg => 'none', typ => 'JWT' }) . ".$body.");
    refused('jwt: alg none with the HS256 signature', '/jwt', $id1,
            token => jwt_hs256($secret, $claims,
                               header => { alg => 'none' }));
    refused('jwt: alg "None"', '/jwt', $id1,
            token => jwt_hs256($secret, $claims,
                               header => { alg => 'None' }));
    my $in512 = $h->({ alg => 'HS512', typ => 'JWT' }) . ".$body";
    refused('jwt: HS512', '/jwt', $id1,
            token => "$in512." . b64url(hmac_sha512($in512, $secret)));
    refused('jwt: RS256 header, HMAC with the secret', '/jwt', $id1,
            token => jwt_hs256($secret, $claims,
                               header => { alg => 'RS256' }));
    refused('jwt: no alg', '/jwt', $id1,
            token => $h->({ typ => 'JWT' }) . ".$body."
                     . b64url(hmac_sha256($h->({ typ => 'JWT' }) . ".$body",
                                          $secret)));
    refused('jwt: signed with another secret', '/jwt', $id1,
            token => jwt_hs256(random_hex(24), $claims));
    my $good = jwt_hs256($secret, $claims);
    my ($p1, $p2, $sig) = split /\./, $good;
    (my $bad = $sig) =~ s/^(.)/$1 eq 'A' ? 'B' : 'A'/e;
    refused('jwt: signature changed', '/jwt', $id1,
            token => "$p1.$p2.$bad");
    refused('jwt: signature cut', '/jwt', $id1,
            token => "$p1.$p2." . substr($sig, 0, 20));
    refused('jwt: no signature', '/jwt', $id1, token => "$p1.$p2.");
    my $forged = b64url(json_encode({ sub => 'u2', exp => $claims->{exp} }));
    refused('jwt: claims changed, old signature', '/jwt', $id2,
            token => "$p1.$forged.$sig");
    refused('jwt: two parts', '/jwt', $id1, token => "$p1.$p2");
    refused('jwt: four parts', '/jwt', $id1, token => "$good.$sig");
    refused('jwt: a db session token', '/jwt', $id1, token => $t1);
}

# a cookie and a Bearer: the Bearer when the cookie's JWT is refused,
# checked in nginx (no more statements)
{
    my $ua = 'jwtboth-' . random_hex(4);
    my $mark = $pg->log_mark;
    gets_card('jwt both: expired cookie of u2, valid Bearer of u1', '/jwt',
              $id1, $code1,
              cookie => 'ocdz_session=' . jwt(sub => 'u2',
                                              exp => int($now) - 600),
              token => jwt(sub => 'u1'), headers => { 'User-Agent' => $ua });
    is(reveals_run($mark), 1, 'jwt both: one statement');
    my @rows = ua_audit($ua);
    is(join(',', map { "$_->{event}/$_->{user_id}" } @rows),
       'CARD_REVEALED/u1', 'jwt both: audited for u1, the Bearer\'s user');
    gets_card('jwt both: forged cookie, valid Bearer', '/jwt', $id1, $code1,
              cookie => 'ocdz_session=' . jwt_hs256(random_hex(24),
                                                    { sub => 'u1' }),
              token => jwt(sub => 'u1'));
    gets_card('jwt both: a db token as cookie, valid Bearer', '/jwt', $id1,
              $code1, cookie => "ocdz_session=$t1",
              token => jwt(sub => 'u1'));
    gets_card('jwt both: valid cookie, garbage Bearer', '/jwt', $id1, $code1,
              cookie => 'ocdz_session=' . jwt(sub => 'u1'),
              token => random_token());
    gets_card('jwt both: valid cookie, expired Bearer', '/jwt', $id1, $code1,
              cookie => 'ocdz_session=' . jwt(sub => 'u1'),
              token => jwt(sub => 'u1', exp => int($now) - 600));
    refused('jwt both: both expired', '/jwt', $id1,
            cookie => 'ocdz_session=' . jwt(sub => 'u1',
                                            exp => int($now) - 600),
            token => jwt(sub => 'u1', exp => int($now) - 900));
    refused('jwt both: garbage cookie, garbage Bearer', '/jwt', $id1,
            cookie => 'ocdz_session=' . random_token(),
            token => random_token());
    is(get('/jwt', $id1, cookie => 'ocdz_session=' . jwt(sub => 'u2'),
           token => jwt(sub => 'u1')), 404,
       "jwt both: valid cookie of u2, Bearer of u1, u1's order: 404");
    is(get('/jwt', $id1, cookie => 'ocdz_session=' . jwt(sub => 'u2'),
           token => jwt(sub => 'u2')), 404,
       "jwt both: two tokens of u2, u1's order: 404");
}

gets_card('jwt user claim uid', '/jwt2', $id1, $code1,
          token => jwt(uid => 'u1'));
gets_card('jwt user claim uid, a number', '/jwt2', $id777, $code777,
          token => jwt(uid => 777));
refused('jwt user claim uid: only sub', '/jwt2', $id1,
        token => jwt(sub => 'u1'));
refused('jwt leeway 0: exp 10 s ago', '/jwt2', $id1,
        token => jwt(uid => 'u1', exp => int($now) - 10));
refused('jwt user claim: an object', '/jwt2', $id1,
        token => jwt(uid => { id => 'u1' }));
refused('jwt user claim: empty', '/jwt2', $id1, token => jwt(uid => ''));
{
    my ($a) = grep { $_->{event} eq 'CARD_REVEALED' } $pg->audit($id777);
    is($a && $a->{user_id}, '777', 'numeric claim audited as 777');
}

# --- trusted variables -------------------------------------------------------

gets_card('variable set in the location', '/var', $id1, $code1);
is(get('/var', $id2), 404, "variable: someone else's order: 404");
gets_card('variable from a map', '/map', $id1, $code1,
          headers => { 'X-Internal-Auth' => 'k-9f8e7d6c5b4a' });
refused('variable from a map: no match, empty', '/map', $id1,
        headers => { 'X-Internal-Auth' => 'guess' });
refused('variable empty', '/varempty', $id1, token => $t1);
refused('variable not UTF-8', '/varbad', $id1);
refused('variable with a control character', '/varctl', $id1);
{
    my ($a) = grep { $_->{event} eq 'CARD_REVEALED' } $pg->audit($id1);
    is($a->{user_id}, 'u1', 'releases audited with the user');
}

# --- odd tokens: 401, nothing breaks -----------------------------------------

{
    my $mark = $pg->log_mark;
    my @odd = (
        ["SQL in the token", "x' OR '1'='1"],
        ['SQL, token-shaped', "abcdefghijklmnop'--"],
        ['SQL with a semicolon', 'abcdefghijklmnop; DROP TABLE ocdz.audit'],
        ['oversized token', 'A' x 5000],
        ['a token at the size limit plus one', 'B' x 4097],
        ['short token', 'abc'],
        ['control character', "abcdefghijklmnop\x01qrstuvwxyz"],
        ['tab inside', "abcdefghijklmnop\tqrstuvwxyz"],
        ['DEL inside', "abcdefghijklmnop\x7fqrstuvwxyz"],
        ['high bytes', "abcdefghijklmnop\xc3\xa9\xff\xfe"],
        ['percent-encoded', 'abcdefghijklmnop%27%20OR%201%3D1'],
        ['quotes and backslash', 'abcdefghijklmnop"\\\\"'],
    );
    for my $o (@odd) {
        my ($what, $t) = @$o;
        for my $p ($API, '/shop', '/jwt') {
            refused("$what (Bearer, $p)", $p, $id1, token => $t);
        }
        refused("$what (cookie)", $API, $id1, cookie => "ocdz_session=$t");
        refused("$what (shop cookie)", '/shop', $id42,
                cookie => "shop_sid=$t");
    }
    # a token of exactly the limit is looked up (and unknown)
    refused('a 4096-character token', $API, $id1, token => 'C' x 4096);
    # a 12 KB cookie: nginx's own 400/494, no crash
    my ($s) = get($API, $id1, cookie => 'ocdz_session=' . ('D' x 12000));
    ok($s == 400 || $s == 494 || $s == 401, "12 KB cookie: $s");
    my $log = $pg->log_content($mark);
    unlike($log, qr/OR '1'='1|DROP TABLE/,
           'odd tokens never reached PostgreSQL');
    is(audit_count() > 0 ? $pg->value("SELECT count(*) FROM ocdz.audit "
       . "WHERE event NOT IN ('CARD_REVEALED', 'ORDER_NOT_FOUND')") : 0, 0,
       'no odd audit rows');
    gets_card('after the odd tokens', $API, $id1, $code1, token => $t1);
}

# --- nginx -t warns about client-controlled session variables ----------------

for my $c (['$http_x_user', 1], ['$cookie_user', 1], ['$arg_user', 1],
           ['$args', 1], ['$shop_user', 0], ['$remote_user', 0]) {
    my ($var, $warn) = @$c;
    my $t = Ocdz::Test::Nginx->new(pg => $pg, vars => { DIR => $dir },
        conf => card_conf(loc => "set \$shop_user u1; ocdz_session $var;"));
    my ($rc, $out) = $t->test_config;
    is($rc, 0, "nginx -t with ocdz_session $var: accepted") or diag $out;
    if ($warn) {
        like($out, qr/\[warn\].*\Q$var\E.*client/,
             "nginx -t warns for ocdz_session $var");
    } else {
        unlike($out, qr/\[warn\].*session variable/,
               "no warning for ocdz_session $var");
    }
}

hygiene($env);
$ngx->quit;
done_testing;

# The secret-leak audit (issue #6). One run covers reveals (GET, HEAD,
# every language, a JWT session, an old key), the poller fulfilling
# orders, a 401 that switches to the secondary access token, a redirect
# to another host, cards that fail to open (unknown key, tampered
# record), upstream replies carrying card codes that are refused
# (duplicate keys, a NUL, another order's id, oversized, truncated, a
# number, an error and an HTML page quoting a code), searches (unknown
# orders, someone else's, not ready, refunded, no session) and a reload.
# Then every secret of the run (card codes, access tokens, card keys,
# the JWT secret, the database password, session tokens), raw and in
# hex and base64, is looked for in: the error log at debug level, the
# access log, PostgreSQL's log (log_statement = all), every table but
# the encrypted column, every error body, nginx -T, and every request
# the mock saw (the access token belongs in X-Access-Token to the API
# host and nowhere else). Any hit fails.
#
# Session tokens are left out of the error log: at debug level nginx
# itself logs every request header ("http header: ..."); that is nginx,
# not the module, and is why debug logging stays off in production.

use v5.36;
use Test::More;
use MIME::Base64 qw(encode_base64);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Poller qw(:all);

require_module();

my $dbpw = random_hex(16);
my $env = card_env(pg => { password => $dbpw, log_statement => 'all',
                           log_connections => 1 });
my $pg = $env->{pg};
Ocdz::Card::add_key($env, 'k0');        # an old key, still in the ring
Ocdz::Card::add_key($env, 'k9');        # a key nginx does not have
my $mock = Ocdz::Test::Mock->start(secondary_token => 'tok2_'
                                                      . random_hex(16));
my $jwt_secret = random_token(40);
my $jwt_file = write_file("$env->{dir}/jwt.secret", $jwt_secret, 0600);

my %codes;              # every card code of the run: code => where
sub code_for ($what) {
    my $c = random_card_code();
    $codes{$c} = $what;
    return $c;
}

my $ngx = card_nginx($env, start => 0,
    nginx => { mock => $mock, workers => 2,
               vars => { JWT => $jwt_file } },
    keys => 'ocdz_card_key k1 %%DIR%%/k1.key current; '
          . 'ocdz_card_key k0 %%DIR%%/k0.key;',
    http => poller_directives(
            api_token_file => '%%TOKEN_FILE%% %%SECONDARY_TOKEN_FILE%%',
            poller_pause => '1s') . <<'EOF',
    ocdz_db_password_file %%PG_PASSWORD_FILE%%;
    log_format audit '$remote_addr [$time_local] "$request" $status '
                     '$body_bytes_sent "$http_user_agent" "$http_referer" '
                     '$ocdz_user_id $ocdz_topup_id $ocdz_result';
    access_log %%PREFIX%%/logs/audit.log audit;
EOF
    server => <<'EOF');
        location ~ "^/jwt/([0-9a-f]{24})/card$" {
            ocdz_card $1;
            ocdz_session jwt;
            ocdz_jwt_secret_file %%JWT%%;
        }
EOF

# --- stored cards -----------------------------------------------------------

my @stored;
for my $k (['k1:current'], ['k0']) {
    my $code = code_for('stored');
    my ($id) = new_card($env, user => 'u1', code => $code, keys => $k);
    push @stored, [$id, $code];
}
my ($unknown_key) = new_card($env, user => 'u1', keys => ['k9:current'],
                             code => code_for('under an unknown key'));
my ($tampered, $tcode) = new_card($env, user => 'u1',
                                  code => code_for('tampered'));
{
    my $rec = $pg->value("SELECT card_enc FROM ocdz.orders WHERE topup_id = "
                         . "'$tampered'");
    substr($rec, -5, 1) = substr($rec, -5, 1) eq 'A' ? 'B' : 'A';
    $pg->psql("UPDATE ocdz.orders SET card_enc = " . sql_quote($rec)
              . " WHERE topup_id = '$tampered'");
}
my ($others) = new_card($env, user => 'u2', code => code_for('u2s card'));
my $not_ready = $pg->insert_order(user_id => 'u1', status => 'QUEUED',
                                  next_check_at => "now() + interval '1 day'");
my $refunded = $pg->insert_order(user_id => 'u1', status => 'REFUNDED',
                                 refund_message => 'refunded',
                                 next_check_at => "now() + interval '1 day'");

$ngx->start;

my $tok = $pg->add_session(random_token(), 'u1');
my $tok_u2 = $pg->add_session(random_token(), 'u2');
my $jwt = jwt_hs256($jwt_secret, { sub => 'u1', exp => time + 600 });
my @sessions = ($tok, $tok_u2, $jwt);
my @bodies;             # every body that is not a card

sub reveal ($id, %o) {
    my ($s, $h, $j, $raw) = card_get($ngx, $id, %o);
    push @bodies, $raw unless $s == 200 && ($o{method} // 'GET') eq 'GET';
    return ($s, $h, $j, $raw);
}

# --- reveals and searches ---------------------------------------------------

for my $c (@stored) {
    my ($id, $code) = @$c;
    for my $lang (qw(en fr ar)) {
        my ($s, $h, $j) = reveal($id, token => $tok, query => "lang=$lang");
        is($s == 200 && $j->{cardCode}, $code, "reveal ($lang)");
    }
    my ($s) = reveal($id, cookie => "ocdz_session=$tok", method => 'HEAD');
    is($s, 200, 'HEAD');
    ($s, my $h, my $j) = reveal($id, token => $jwt, prefix => '/jwt');
    is($s == 200 && $j->{cardCode}, $code, 'reveal with a JWT session');
}
my @searches = ([$unknown_key, $tok, 500], [$tampered, $tok, 500],
                [$others, $tok, 404], [random_topup_id(), $tok, 404],
                [$not_ready, $tok, 409], [$refunded, $tok, 410],
                [$stored[0][0], $tok_u2, 404], [$stored[0][0], undef, 401],
                [$stored[0][0], random_token(), 401]);
for my $c (@searches) {
    my ($id, $t, $want) = @$c;
    my ($s) = reveal($id, defined $t ? (token => $t) : ());
    is($s, $want, "search: $want");
}
my ($s) = reveal($stored[0][0], prefix => '/jwt',
                 token => jwt_hs256('x' x 32, { sub => 'u1' }));
is($s, 401, 'a JWT signed with another secret: 401');

# --- the poller -------------------------------------------------------------

sub order_where ($id, $cond, $what) {
    my $r;
    ok(wait_until(sub { $r = $pg->order($id); $cond->($r) }, timeout => 20),
       $what) or diag explain $r;
    return $r;
}

my @fulfilled;
for (1 .. 3) {
    my $id = random_topup_id();
    my $code = code_for('fulfilled by the poller');
    $mock->set_order($id, status => 'HANDLING', card_code => $code,
                     fulfil_after_checks => 1);
    $pg->insert_order(topup_id => $id, user_id => 'u1');
    push @fulfilled, [$id, $code];
}
for my $c (@fulfilled) {
    order_where($c->[0], sub { $_[0]{status} eq 'FULFILLED' },
                'the poller fulfils an order');
    my ($s, $h, $j) = reveal($c->[0], token => $tok);
    is($s == 200 && $j->{cardCode}, $c->[1], 'its card is revealed');
}

# replies that carry card codes and are refused
my @bad_replies = (
    ['duplicate card_code', sub ($id) {
        sprintf '{"success":true,"data":{"_id":"%s","status":"FULFILLED",'
            . '"card_code":"%s","num_trans":"T1","card_code":"%s"}}', $id,
            code_for('duplicate, first'), code_for('duplicate, second') }],
    ['a NUL in the card', sub ($id) {
        sprintf '{"success":true,"data":{"_id":"%s","status":"FULFILLED",'
            . '"card_code":"%s\\u0000%s","num_trans":"T1"}}', $id,
            code_for('before a NUL'), code_for('after a NUL') }],
    ['another order\'s id', sub ($id) {
        sprintf '{"success":true,"data":{"_id":"%s","status":"FULFILLED",'
            . '"card_code":"%s","num_trans":"T1"}}', random_topup_id(),
            code_for('wrong id') }],
    ['oversized', sub ($id) {
        sprintf '{"success":true,"data":{"_id":"%s","status":"FULFILLED",'
            . '"card_code":"%s","num_trans":"T1","pad":"%s"}}', $id,
            code_for('oversized'), 'x' x 100_000 }],
    ['truncated', sub ($id) {
        sprintf '{"success":true,"data":{"_id":"%s","status":"FULFILLED",'
            . '"card_code":"%s","num_tr', $id, code_for('truncated') }],
    ['a card that is a number', sub ($id) {
        sprintf '{"success":true,"data":{"_id":"%s","status":"FULFILLED",'
            . '"card_code":%s,"num_trans":"T1"}}', $id,
            code_for('a number') }],
    ['an error quoting a card', sub ($id) {
        sprintf '{"success":false,"error":{"code":"CARD_%s","message":'
            . '"card %s failed"}}', code_for('in an error code'),
            code_for('in an error message') }, 200],
    ['an HTML page quoting a card', sub ($id) {
        sprintf '<html>card %s</html>', code_for('in HTML') }, 502],
);
for my $c (@bad_replies) {
    my ($what, $body, $status) = @$c;
    my $id = random_topup_id();
    my $good = code_for('after a refused reply');
    $mock->set_order($id, status => 'FULFILLED', card_code => $good);
    $mock->fault('raw', id => $id, code => $status // 200,
                 body_b64 => encode_base64($body->($id), ''));
    $pg->insert_order(topup_id => $id, user_id => 'u1');
    order_where($id, sub { ($_[0]{last_error} // '') ne '' },
                "refused: $what");
    $mock->reset_faults;
    order_where($id, sub { $_[0]{status} eq 'FULFILLED' },
                "$what: then fulfilled");
    my ($s, $h, $j) = reveal($id, token => $tok);
    is($s == 200 && $j->{cardCode}, $good, "$what: the right card");
}

# the primary access token refused: the secondary takes over
{
    $mock->set_tokens($mock->secondary_token);
    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED',
                     card_code => code_for('after a 401'));
    $pg->insert_order(topup_id => $id, user_id => 'u1');
    order_where($id, sub { $_[0]{status} eq 'FULFILLED' },
                '401: the secondary token fulfils');
    $mock->set_tokens($mock->token, $mock->secondary_token);
}

# a redirect to another host: not followed, no token sent there
{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED',
                     card_code => code_for('behind a redirect'));
    $mock->fault('redirect', id => $id, code => 302, count => 1,
                 location => $mock->catcher_base_url
                             . "/v3/internet/check-id/$id");
    $pg->insert_order(topup_id => $id, user_id => 'u1');
    ok(wait_until(sub { ($pg->value('SELECT pause_reason FROM '
                        . 'ocdz.poller_state') // '') =~ /redirect/ },
                  timeout => 20), 'redirect: the poller pauses');
    $pg->psql('UPDATE ocdz.poller_state SET paused_until = NULL');
    order_where($id, sub { $_[0]{status} eq 'FULFILLED' },
                'redirect: fulfilled afterwards');
}

ok($ngx->reload(timeout => 20), 'a reload (keys and tokens read again)');
# with master_process off (valgrind) nginx serves nothing after a
# reload, with or without the module
SKIP: {
    skip 'no answers after a reload with master_process off', 1
        if single_process();
    my $after;
    ok(wait_until(sub {
           my ($s2, $h2, $j2) = reveal($stored[0][0], token => $tok);
           $after = "$s2 " . ($j2 && $j2->{error} // '');
           $s2 == 200 && $j2->{cardCode} eq $stored[0][1];
       }, timeout => 10, interval => 0.2), 'reveal after the reload')
        or diag "last answer: $after";
}
my ($rc, $dump) = $ngx->test_config(dump => 1);
is($rc, 0, 'nginx -T');
$ngx->quit;
$mock->release;

# --- the secrets, and where they must not be --------------------------------

my @codes = sort keys %codes;
my @api = ($mock->token, $mock->secondary_token);
my @keys = map { ($env->{hex}{$_}, pack('H*', $env->{hex}{$_})) }
           sort keys %{ $env->{hex} };
my @server_secrets = (@codes, @api, @keys, $jwt_secret, $dbpw);
my @all = (@server_secrets, @sessions);
diag scalar(@codes) . ' card codes, ' . scalar(@api) . ' access tokens, '
     . scalar(keys %{ $env->{hex} }) . ' card keys, a JWT secret, a '
     . 'database password, ' . scalar(@sessions) . ' session tokens';

my $errlog = $ngx->error_log . $ngx->stderr_log;
ok(length($errlog) > 100_000, 'the error log is at debug level ('
   . length($errlog) . ' bytes)');
assert_no_secret('the error log (debug)', $errlog, @server_secrets);
my $acc = '';
for my $f (glob($ngx->prefix . '/logs/*.log')) {
    next if $f =~ m{/(error|stderr)\.log$};
    $acc .= slurp($f);
}
like($acc, qr/CARD_REVEALED/, 'the access logs have the reveals');
assert_no_secret('the access logs', $acc, @all);

my $pglog = $pg->log_content;
like($pglog, qr/execute|statement:/, 'PostgreSQL logged the statements');
# the harness gave ocdz_module its password in SQL, as the superuser
my @given = grep { /ALTER ROLE ocdz_module LOGIN PASSWORD/ } split /\n/, $pglog;
is(scalar @given, 1, "the test's own ALTER ROLE ... PASSWORD, left out");
$pglog =~ s/^.*ALTER ROLE ocdz_module LOGIN PASSWORD.*$//mg;
assert_no_secret("PostgreSQL's log", $pglog, @all);

# every table of the database, the encrypted column left out
{
    my @tables = $pg->psql("SELECT table_schema || '.' || table_name FROM "
        . "information_schema.tables WHERE table_type = 'BASE TABLE' AND "
        . "table_schema NOT IN ('pg_catalog', 'information_schema') "
        . 'ORDER BY 1');
    my $text = '';
    for my $t (map { $_->[0] } @tables) {
        $text .= "$t\n" . join("\n", map { $_->[0] } $pg->psql(
            "SELECT (to_jsonb(t) - 'card_enc')::text FROM $t t")) . "\n";
    }
    ok(scalar(@tables) >= 5, 'tables dumped: ' . join ' ',
       map { $_->[0] } @tables);
    assert_no_secret('the tables', $text, @all);
    my @cards = map { $_->[0] } $pg->psql('SELECT card_enc FROM ocdz.orders '
                                          . 'WHERE card_enc IS NOT NULL');
    assert_no_secret('the encrypted column', join("\n", @cards), @codes);
}

assert_no_secret('the error bodies', join("\n", @bodies), @all);
assert_no_secret('nginx -T', $dump, @all);

# what the mock saw: the access token in X-Access-Token to the API, and
# nowhere else
{
    my @req = $mock->requests;
    my $rest = '';
    my @bad_token;
    for my $r (@req) {
        my %copy = %$r;
        my @h = @{ $r->{headers} // [] };
        if ($r->{listener} eq 'main') {
            for my $h (grep { lc $_->[0] eq 'x-access-token' } @h) {
                push @bad_token, $h->[1] unless grep { $_ eq $h->[1] } @api;
            }
            @h = grep { lc $_->[0] ne 'x-access-token' } @h;
            delete $copy{token};
        }
        $copy{headers} = \@h;
        $rest .= json_encode(\%copy) . "\n";
    }
    ok(@req > 10, scalar(@req) . ' requests reached the mock');
    ok(!@bad_token, 'only the configured tokens were sent');
    is(scalar(grep { $_->{listener} ne 'main' && defined $_->{token} } @req),
       0, 'no token sent to another host');
    assert_no_secret('the requests the mock saw (X-Access-Token aside)',
                     $rest, @all);
}

# the checks themselves find what they look for
{
    my $code = $codes[0];
    ok(find_secret("x $code x", @codes), 'self-check: a raw code is found');
    ok(find_secret(encode_base64("ab$code", ''), @codes),
       'self-check: a code in base64 is found');
    ok(find_secret(unpack('H*', $api[0]), @api),
       'self-check: a token in hex is found');
}

hygiene($env);
done_testing;

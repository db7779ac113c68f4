use v5.36;
use Test::More;
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
require_module();

# Schema version 2 (delivery) applied over a version-1 database filled
# by the current code, in place, with nginx running: nothing lost,
# idempotent, the same schema as a fresh install, and the triggers that
# queue deliveries work under the module's role.

my $env = card_env(pg => { schema => 0, log_statement => 'none' });
my $pg = $env->{pg};
my $v1 = slurp(repo_root() . '/t/data/ocdz-v1.sql');
my $v2 = slurp(repo_root() . '/sql/ocdz.sql');
$pg->psql($v1);
is($pg->value('SELECT max(version) FROM ocdz.schema_version'), 1,
   'version 1 installed');

# --- a version-1 database filled with orders in every state ----------------
my @ids;
for my $st (qw(PENDING HANDLING QUEUED UNKNOWN_ERROR REFUNDED ERROR)) {
    push @ids, $pg->insert_order(status => $st, ref => "ref-$st",
                                 refund_message => $st eq 'REFUNDED'
                                     ? 'رصيد غير كاف' : undef);
}
my @cards;
for (1 .. 3) {
    my ($id, $code) = new_card($env);
    push @ids, $id;
    push @cards, $code;
}
$pg->add_session('tok-' . random_hex(8), 'u1');
$pg->psql("INSERT INTO ocdz.audit (event, topup_id, user_id, method) "
          . "VALUES ('CARD_REVEALED', " . sql_quote($ids[-1]) . ", 'u1', 'GET')");
$pg->psql("UPDATE ocdz.poller_state SET paused_until = now() + interval '1h', "
          . "pause_reason = 'test'");

sub snapshot {
    my %s;
    for my $t (qw(orders audit sessions poller_state)) {
        my $key = { orders => 'topup_id', audit => 'id',
                    sessions => 'token_hash', poller_state => 'id' }->{$t};
        # version-1 columns only: version 2 adds columns, changes none
        my @cols = map { $_->[0] } $pg->psql(
            "SELECT column_name FROM information_schema.columns "
            . "WHERE table_schema = 'ocdz' AND table_name = '$t' "
            . "AND column_name NOT IN ('email', 'phone', 'lang', 'channels') "
            . "ORDER BY ordinal_position");
        $s{$t} = join "\n", map { join "\x1f", map { $_ // '\N' } @$_ }
            $pg->psql('SELECT ' . join(', ', @cols) . " FROM ocdz.$t ORDER BY $key");
    }
    return \%s;
}
my $tok = $pg->add_session('tok-' . random_hex(8), 'u1');
my $before = snapshot();
like($before->{orders}, qr/FULFILLED/, 'fulfilled orders in the v1 data');

# --- nginx running on the version-1 database refuses it clearly -----------
my $ngx = card_nginx($env, db_conf => 'ocdz_db_connect_timeout 5s; '
    . 'ocdz_db_query_timeout 10s; ocdz_db_statement_timeout 9s; '
    . 'ocdz_db_retry_delay 200ms;');
my ($st) = card_get($ngx, $ids[-1], token => $tok);
is($st, 503, 'v1 database: the card endpoint answers 503');
ok($ngx->wait_for_log(qr/database schema version 1 is older than the module needs \(2\): run sql\/ocdz\.sql/,
                      timeout => 10 * slow_factor()),
   'v1 database: the log says to run sql/ocdz.sql');

# --- the upgrade, in place, twice -----------------------------------------
$pg->psql($v2);
$pg->psql($v2);
is($pg->value('SELECT max(version) FROM ocdz.schema_version'), 2,
   'version 2 after the upgrade');
is($pg->value('SELECT count(*) FROM ocdz.schema_version WHERE version = 2'), 1,
   'one version-2 row after two runs');
is_deeply(snapshot(), $before, 'nothing lost or changed by the upgrade');
is($pg->value('SELECT count(*) FROM ocdz.outbox'), 0,
   'orders final before the upgrade queue nothing');
is($pg->value('SELECT count(*) FROM ocdz.orders WHERE email IS NOT NULL '
              . 'OR phone IS NOT NULL OR lang IS NOT NULL OR channels IS NOT NULL'),
   0, 'new columns empty');

# the same nginx serves the card once the schema is there, no restart
my $ok = wait_until(sub {
    my ($s) = card_get($ngx, $ids[-1], token => $tok);
    $s == 200;
}, timeout => 15 * slow_factor());
ok($ok, 'nginx running through the upgrade serves the card');

# --- same schema as a fresh install ---------------------------------------
$pg->psql('CREATE DATABASE fresh');
$pg->psql($v2, dbname => 'fresh');
sub schema_dump ($db) {
    my ($rc, $out, $err) = run_cmd(['pg_dump', '--schema-only', '-n', 'ocdz',
        '-h', $pg->socket_dir, '-p', $pg->port, '-U', 'postgres', $db]);
    die "pg_dump: $err" if $rc;
    $out =~ s/^--.*\n//mg;
    $out =~ s/^\\(?:un)?restrict .*\n//mg;
    $out =~ s/\n{2,}/\n/g;
    return $out;
}
my ($a, $b) = (schema_dump('postgres'), schema_dump('fresh'));
ok(length $a > 1000, 'schema dumped');
is($a, $b, 'upgraded schema equals a fresh install (pg_dump --schema-only)');

# --- the triggers, as the module's role -----------------------------------
sub as_module ($sql) {
    return $pg->psql("SET ROLE ocdz_module; $sql");
}
sub outbox ($id) {
    return [ map { "$_->{channel}/$_->{event}/$_->{subject}/$_->{state}" }
        $pg->hashes("SELECT * FROM ocdz.outbox WHERE topup_id = "
                    . sql_quote($id) . ' ORDER BY channel, event, subject') ];
}
{
    my $id = $pg->insert_order(email => 'a@example.com', phone => '+213550000000',
                               lang => 'ar');
    as_module("UPDATE ocdz.orders SET status = 'HANDLING' WHERE topup_id = "
              . sql_quote($id));
    is_deeply(outbox($id), [], 'not final: nothing queued');
    as_module("UPDATE ocdz.orders SET status = 'FULFILLED', card_enc = 'x' "
              . 'WHERE topup_id = ' . sql_quote($id));
    is_deeply(outbox($id), [ 'email/card//pending', 'sms/card//pending',
                             'webhook/order.fulfilled//pending' ],
              'FULFILLED queues email, sms and the webhook');
    as_module("UPDATE ocdz.orders SET status = 'FULFILLED', last_error = NULL "
              . 'WHERE topup_id = ' . sql_quote($id));
    is($pg->value('SELECT count(*) FROM ocdz.outbox WHERE topup_id = '
                  . sql_quote($id)), 3, 'written again: queued once');

    my $eid = $pg->value("SELECT id FROM ocdz.outbox WHERE channel = 'email' "
                         . 'AND topup_id = ' . sql_quote($id));
    as_module("UPDATE ocdz.outbox SET state = 'sent', sent_at = now(), "
              . "message_id = '<m\@x>' WHERE id = $eid");
    my @aud = grep { $_->{event} eq 'CARD_DELIVERED' } $pg->audit($id);
    is(scalar @aud, 1, 'email sent: one CARD_DELIVERED audit row');
    is($aud[0]{method}, 'email', '... with the method');
    ok(defined $pg->order($id)->{delivered_at}, '... delivered_at set');
    my $sid = $pg->value("SELECT id FROM ocdz.outbox WHERE channel = 'sms' "
                         . 'AND topup_id = ' . sql_quote($id));
    as_module("UPDATE ocdz.outbox SET state = 'failed' WHERE id = $sid");
    is_deeply(outbox($id), [ 'email/card//sent', 'sms/card//failed',
                             'webhook/delivery.failed/sms/pending',
                             'webhook/delivery.sent/email/pending',
                             'webhook/order.fulfilled//pending' ],
              'delivery outcomes queue their webhooks');
    ok(!defined $pg->psql("SET ROLE ocdz_module; INSERT INTO ocdz.outbox "
        . "(topup_id, channel, event) VALUES (" . sql_quote($id)
        . ", 'email', 'card')", may_fail => 1) || 1, 'insert attempted');
    like($pg->{last_error} // '', qr/permission denied/,
         'the module role cannot insert outbox rows itself');
}
{
    my $id = $pg->insert_order(channels => '{email}');
    as_module("UPDATE ocdz.orders SET status = 'FULFILLED' WHERE topup_id = "
              . sql_quote($id));
    is_deeply(outbox($id), [ 'email/card//pending', 'sms/card//skipped',
                             'webhook/order.fulfilled//pending' ],
              'a channel not wanted is recorded as skipped');
    my $id2 = $pg->insert_order;
    as_module("UPDATE ocdz.orders SET status = 'REFUNDED' WHERE topup_id = "
              . sql_quote($id2));
    is_deeply(outbox($id2), [ 'webhook/order.refunded//pending' ],
              'REFUNDED: the webhook only');
    my $id3 = $pg->insert_order;
    as_module("UPDATE ocdz.orders SET status = 'ERROR' WHERE topup_id = "
              . sql_quote($id3));
    is_deeply(outbox($id3), [ 'webhook/order.error//pending' ],
              'ERROR: the webhook only');
}

# bad delivery fields are refused, nothing half-written
for my $bad ([ email => 'no-at-sign' ], [ phone => '12ab' ], [ lang => 'de' ],
             [ channels => '{fax}' ]) {
    my $n = $pg->value('SELECT count(*) FROM ocdz.orders');
    $pg->psql('INSERT INTO ocdz.orders (topup_id, user_id, type, number, '
        . "value, $bad->[0]) VALUES (" . sql_quote(random_topup_id())
        . ", 'u', 'ADSL', '1', 1, " . sql_quote($bad->[1]) . ')', may_fail => 1);
    like($pg->{last_error} // '', qr/violates check constraint/,
         "bad $bad->[0] refused");
    is($pg->value('SELECT count(*) FROM ocdz.orders'), $n, '... nothing written');
}

# no card code anywhere but the encrypted card
my $dump = join '', map { join ',', map { $_ // '' } @$_ }
    $pg->psql('SELECT o.*::text FROM ocdz.outbox o');
ok(!(grep { index($dump, $_) >= 0 } @cards), 'no card code in the outbox');

$ngx->stop;
done_testing();

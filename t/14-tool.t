# ocdz-card against a real database: encrypt, store (missing order, an
# existing card, --force), reencrypt (old-key v1, Node.js, PHP and
# Python rows to the current key; broken rows reported and left alone;
# --dry-run; a second run converts nothing), checked through the card
# endpoint with nginx holding ONLY the new key. No card code is ever
# printed.

use v5.36;
use Test::More;
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();
plan skip_all => 'ocdz-card not built: ' . tool_path() unless -x tool_path();

my $env = card_env();
my $pg = $env->{pg};
add_key($env, 'k2');
add_key($env, 'k9');
my $tok = $pg->add_session(random_token(), 'u1');
my @out;        # everything the tool printed

sub run_tool ($what, $args, %o) {
    my ($rc, $out, $err) = tool($args, %o);
    push @out, [$what, $out . $err];
    return ($rc, $out, $err);
}

sub record_of ($id) { $pg->order($id)->{card_enc} }

sub set_record ($id, $rec) {
    $pg->psql('UPDATE ocdz.orders SET card_enc = ' . sql_quote($rec)
              . ' WHERE topup_id = ' . sql_quote($id));
}

my @k1 = ('-k', "k1:$env->{keys}{k1}");
my @k1c = ('-k', "k1:$env->{keys}{k1}:current");
my @k2c = ('-k', "k2:$env->{keys}{k2}:current");
my @db = ('--db', $env->{db});

# --- encrypt -----------------------------------------------------------------

{
    my $id = random_topup_id();
    my $code = random_card_code();
    push @{ $env->{codes} }, $code;
    my ($rc, $out, $err) = run_tool('encrypt', ['encrypt', @k1,
        '--topup-id', $id], stdin => "$code\n");
    is($rc, 0, 'encrypt: exit 0') or diag $err;
    like($out, qr/^ocdz1\.k1\.[A-Za-z0-9_-]+\n\z/, 'encrypt: one v1 record');
    ($rc, my $out2) = run_tool('encrypt', ['encrypt', @k1,
        '--topup-id', $id], stdin => "$code\r\n");
    is($rc, 0, 'encrypt with CRLF: exit 0');
    isnt($out2, $out, 'a fresh nonce each time');
    ($rc, $out, $err) = run_tool('encrypt code in argv', ['encrypt', @k1,
        '--topup-id', $id, $code]);
    is($rc, 2, 'a code on the command line: usage error');
    is($out, '', 'nothing on stdout');
    ($rc, $out, $err) = run_tool('encrypt bad id', ['encrypt', @k1,
        '--topup-id', 'ABC'], stdin => "$code\n");
    is($rc, 2, 'encrypt: invalid top-up id refused');
    ($rc, $out, $err) = run_tool('encrypt empty', ['encrypt', @k1,
        '--topup-id', $id], stdin => "\n");
    is($rc, 1, 'encrypt: empty code refused');
    is($out, '', 'encrypt empty: no record');
    ($rc, $out, $err) = run_tool('encrypt two keys', ['encrypt', @k1,
        '-k', "k2:$env->{keys}{k2}", '--topup-id', $id], stdin => "$code\n");
    is($rc, 2, 'encrypt: two keys, none current: usage error');
}

my (%good, %broken);

# --- store -------------------------------------------------------------------

my $ngx = card_nginx($env,
    keys => 'ocdz_card_key k1 %%DIR%%/k1.key current;');

{
    my $code = random_card_code();
    push @{ $env->{codes} }, $code;
    my $missing = random_topup_id();
    my ($rc, $out, $err) = run_tool('store missing', ['store', @k1, @db,
        '--topup-id', $missing], stdin => "$code\n");
    is($rc, 1, 'store: a missing order fails');
    like($err, qr/no order/, 'store: says there is no order');
    is($pg->value("SELECT count(*) FROM ocdz.orders"), 0, 'nothing created');

    my $id = new_order($env, user_id => 'u1');
    fulfil($env, $id);
    ($rc, $out, $err) = run_tool('store', ['store', @k1, @db,
        '--topup-id', $id], stdin => "$code\n");
    is($rc, 0, 'store: exit 0') or diag $err;
    like($out, qr/\Q$id\E/, 'store: names the order');
    my $rec = record_of($id);
    like($rec, qr/^ocdz1\.k1\./, 'store: v1 record under k1');
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok);
    is($j && $j->{cardCode}, $code, 'store: the endpoint opens it');

    my $code2 = random_card_code();
    push @{ $env->{codes} }, $code2;
    ($rc, $out, $err) = run_tool('store again', ['store', @k1, @db,
        '--topup-id', $id], stdin => "$code2\n");
    is($rc, 1, 'store over an existing card without --force: fails');
    like($err, qr/already has a card/, 'store: says why');
    is(record_of($id), $rec, 'store: the card is untouched');
    ($rc, $out, $err) = run_tool('store --force', ['store', @k1, @db,
        '--topup-id', $id, '--force'], stdin => "$code2\n");
    is($rc, 0, 'store --force: exit 0');
    isnt(record_of($id), $rec, 'store --force: replaced');
    ($s, $h, $j) = card_get($ngx, $id, token => $tok);
    is($j && $j->{cardCode}, $code2, 'store --force: the new card');
    $good{'stored by the tool'} = [$id, $code2];

    ($rc) = run_tool('store no db', ['store', @k1, '--topup-id', $id],
                     stdin => "$code\n");
    is($rc, 2, 'store without --db: usage error');
    ($rc, $out, $err) = run_tool('store bad db', ['store', @k1, '--db',
        'host=127.0.0.1 port=1 dbname=x user=y connect_timeout=5',
        '--topup-id', $id], stdin => "$code\n");
    is($rc, 1, 'store with an unreachable database: fails');
}

# --- reencrypt ---------------------------------------------------------------

{
    # (name => [id, code]) converted to k2
    my $mk = sub ($name, %o) {
        my ($id, $code) = new_card($env, %o);
        $good{$name} = [$id, $code];
    };
    $mk->('v1 k1 a');
    $mk->('v1 k1 b');
    $mk->('node k1', record => sub ($i, $c) {
        legacy_record('node', $env->{hex}{k1}, $c) });
    $mk->('php k1', record => sub ($i, $c) {
        legacy_record('php', $env->{hex}{k1}, $c) });
    $mk->('python k1', record => sub ($i, $c) {
        legacy_record('python', $env->{hex}{k1}, $c) });
    $mk->('node k2', record => sub ($i, $c) {
        legacy_record('node', $env->{hex}{k2}, $c) });
    # already current
    my ($cid, $ccode) = new_card($env, keys => ['k1', 'k2:current']);
    $good{'v1 k2 (current)'} = [$cid, $ccode];

    my $bk = sub ($name, $rec) {
        my ($id, $code) = new_card($env, record => $rec);
        $broken{$name} = [$id, $code, record_of($id)];
    };
    $bk->('v1 under k9 (unknown)', sub ($i, $c) {
        tool_encrypt($env, $i, $c, keys => ['k9']) });
    $bk->('v1 tampered', sub ($i, $c) {
        my $r = tool_encrypt($env, $i, $c);
        $r =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/e;
        $r });
    $bk->('v1 of another order', sub ($i, $c) {
        tool_encrypt($env, random_topup_id(), $c) });
    $bk->('node under k9', sub ($i, $c) {
        legacy_record('node', $env->{hex}{k9}, $c) });
    $bk->('node 4-byte tag', sub ($i, $c) {
        legacy_record('node', $env->{hex}{k1}, $c, taglen => 4) });
    $bk->('garbage', sub ($i, $c) { 'not a record' });

    # orders without a card are not touched
    my $nocard = new_order($env, user_id => 'u1');

    my %before = map { $_->[0] => record_of($_->[0]) }
                 values %good, values %broken;
    my $n_current = 1;
    my $n_conv = keys(%good) - $n_current;
    my $n_broken = keys %broken;

    # dry run: reports, writes nothing
    my ($rc, $out, $err) = run_tool('reencrypt dry', ['reencrypt', @k1,
        @k2c, @db, '--dry-run', '--verbose']);
    is($rc, 1, 'dry run with broken rows: exit 1');
    like($out, qr/would convert: $n_conv, already current: $n_current, failed: $n_broken/,
         'dry run: the counts') or diag "$out$err";
    is_deeply({ map { $_ => record_of($_) } keys %before }, \%before,
              'dry run: nothing written');

    # the run, in small batches
    my $pmark = $pg->log_mark;
    ($rc, $out, $err) = run_tool('reencrypt', ['reencrypt', @k1, @k2c, @db,
        '--batch', '2', '--verbose']);
    is($rc, 1, 'reencrypt with broken rows: exit 1');
    like($out, qr/^converted: $n_conv, already current: $n_current, failed: $n_broken$/m,
         'reencrypt: the counts') or diag "$out$err";
    for my $b (sort keys %broken) {
        my ($id, undef, $rec) = @{ $broken{$b} };
        like($err, qr/order \Q$id\E: cannot/, "reencrypt reports $b");
        is(record_of($id), $rec, "reencrypt leaves $b untouched");
    }
    for my $g (sort keys %good) {
        my ($id) = @{ $good{$g} };
        like(record_of($id), qr/^ocdz1\.k2\./, "$g: now v1 under k2");
        like($out, qr/order \Q$id\E: converted/, "$g: listed")
            unless $g =~ /current/;
    }
    is(record_of($good{'v1 k2 (current)'}[0]),
       $before{ $good{'v1 k2 (current)'}[0] }, 'the current row untouched');
    ok(!defined record_of($nocard), 'an order without a card untouched');

    # second run: nothing left to convert
    ($rc, $out, $err) = run_tool('reencrypt 2', ['reencrypt', @k1, @k2c,
        @db]);
    like($out, qr/^converted: 0, already current: ${\ ($n_conv + 1)}, failed: $n_broken$/m,
         'second run converts 0') or diag "$out$err";
    is($rc, 1, 'second run: still exit 1 (broken rows remain)');

    # nginx holding ONLY the new key reads every converted card
    my $k2only = card_nginx($env,
        keys => 'ocdz_card_key k2 %%DIR%%/k2.key current;');
    for my $g (sort keys %good) {
        my ($id, $code) = @{ $good{$g} };
        my ($s, $h, $j) = card_get($k2only, $id, token => $tok);
        is($s, 200, "$g: opens with only k2");
        is($j && $j->{cardCode}, $code, "$g: the code");
    }
    for my $b (sort keys %broken) {
        my ($s) = card_get($k2only, $broken{$b}[0], token => $tok);
        is($s, 500, "$b: still refused");
    }
    unlike($k2only->error_log, qr/legacy/,
           'no legacy notice after the conversion');

    # the broken rows cleared: a clean run, exit 0
    $pg->psql('UPDATE ocdz.orders SET card_enc = NULL WHERE topup_id IN ('
              . join(', ', map { sql_quote($_->[0]) } values %broken) . ')');
    ($rc, $out, $err) = run_tool('reencrypt 3', ['reencrypt', @k1, @k2c,
        @db]);
    is($rc, 0, 'without broken rows: exit 0') or diag "$out$err";
    like($out, qr/^converted: 0, already current: ${\ ($n_conv + 1)}, failed: 0$/m,
         'third run: all current');

    # reencrypt with a ring missing k1: the k1 rows would fail, but all
    # are k2 now
    ($rc, $out) = run_tool('reencrypt k2 only', ['reencrypt', @k2c, @db]);
    is($rc, 0, 'k2 alone: nothing to do');

    # a wrong conninfo: fails, exit 1
    ($rc) = run_tool('reencrypt bad db', ['reencrypt', @k2c, '--db',
        'host=127.0.0.1 port=1 dbname=x user=y connect_timeout=5']);
    is($rc, 1, 'reencrypt with an unreachable database: exit 1');
    $k2only->quit;
}

# nothing the tool printed holds a code
{
    my $all = join "\n", map { $_->[1] } @out;
    ok(length $all, 'the tool printed something');
    assert_no_secret('ocdz-card output', $all, @{ $env->{codes} });
}

hygiene($env);
$ngx->quit;
done_testing;

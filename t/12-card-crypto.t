# Opening stored cards: tampered and swapped records, a wrong key under
# the right id, key rotation (an old key kept, a new one current), the
# OneClickDz guide's Node.js, PHP and Python records (made here with the
# recipes' exact algorithms by a small C program), shortened tags,
# garbage, and the one [notice] per legacy order. Failures answer 500
# DELIVERY_FAILED, are logged with the top-up id and key id (never the
# code), add a CARD_REVEAL_FAILED audit row and leave delivered_at as it
# was: a first reveal whose card does not open takes back its mark (and
# only its own, not one set since), alone or in a batch.

use v5.36;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use MIME::Base64 qw(decode_base64url encode_base64url);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();

my $env = card_env();
my $pg = $env->{pg};
add_key($env, 'k2');
add_key($env, 'k9');
# same id as k1, another key
add_key($env, 'k1other');

my $ngx = card_nginx($env);
my $tok = $pg->add_session(random_token(), 'u1');

sub set_record ($id, $rec) {
    $pg->psql('UPDATE ocdz.orders SET card_enc = ' . sql_quote($rec)
              . ' WHERE topup_id = ' . sql_quote($id));
}

sub record_of ($id) { $pg->order($id)->{card_enc} }

sub delivered ($id) { $pg->order($id)->{delivered_at} }

# opens: 200 with the code; the first reveal marks the order delivered,
# later ones keep that mark
sub opens ($ngx, $what, $id, $code) {
    my $before = delivered($id);
    my ($s, $h, $j, $raw) = card_get($ngx, $id, token => $tok);
    is($s, 200, "$what: 200") or diag $raw;
    is($j && $j->{cardCode}, $code, "$what: the code");
    if (defined $before) {
        is(delivered($id), $before, "$what: delivered_at kept");
    } else {
        ok(defined delivered($id), "$what: delivered_at set");
    }
}

# refused: 500 DELIVERY_FAILED, an [error] line naming the order (and the
# key id when given), a CARD_REVEAL_FAILED audit row.
sub refused ($ngx, $what, $id, %o) {
    my $mark = $ngx->log_mark;
    my $n = () = $pg->audit($id);
    my $before = delivered($id);
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok);
    is(delivered($id), $before, "$what: delivered_at as it was ("
       . ($before // 'NULL') . ')');
    is($s, 500, "$what: 500");
    is($j && $j->{error}, 'DELIVERY_FAILED', "$what: DELIVERY_FAILED");
    ok(!grep({ /card|code/i } keys %{ $j // {} }), "$what: no card field");
    my $log = $ngx->error_log($mark);
    my ($line) = $log =~ /^(.*\[error\].*\Q$id\E.*)$/m;
    ok($line, "$what: [error] names the top-up id") or diag $log;
    like($line // '', qr/key "\Q$o{key}\E"/, "$what: [error] names key $o{key}")
        if $o{key};
    my @ev = map { $_->{event} } $pg->audit($id);
    is($ev[-1], 'CARD_REVEAL_FAILED', "$what: CARD_REVEAL_FAILED audited");
    is(scalar @ev, $n + 2, "$what: the attempt and the failure audited");
    my ($fail) = grep { $_->{event} eq 'CARD_REVEAL_FAILED' }
                 reverse $pg->audit($id);
    is($fail->{user_id}, 'u1', "$what: failure row has the user");
    is($fail->{method}, 'in-app', "$what: failure row method");
    like($fail->{detail} // '', qr/key \Q$o{key}\E/,
         "$what: failure row names the key") if $o{key};
}

# --- v1 records --------------------------------------------------------------

my ($id, $code) = new_card($env);
like(record_of($id), qr/^ocdz1\.k1\.[A-Za-z0-9_-]+$/, 'the tool seals v1/k1');
opens($ngx, 'v1 record', $id, $code);

# tampered: each part of the payload (nonce, ciphertext, tag) in turn
{
    my $rec = record_of($id);
    my ($pfx, $b64) = $rec =~ /^(ocdz1\.k1\.)(.*)$/;
    my $raw = decode_base64url($b64);
    my $len = length $raw;
    for my $c (['nonce', 3], ['ciphertext', 12 + 2], ['tag', $len - 1]) {
        my ($what, $at) = @$c;
        my ($tid, $tcode) = new_card($env);
        my $r = decode_base64url(substr(record_of($tid), length $pfx));
        substr($r, $at, 1) = chr(ord(substr($r, $at, 1)) ^ 0x01);
        set_record($tid, $pfx . encode_base64url($r));
        refused($ngx, "tampered $what", $tid, key => 'k1');
    }
    # truncated and extended
    my ($tid) = new_card($env);
    my $r = record_of($tid);
    set_record($tid, substr($r, 0, length($r) - 4));
    refused($ngx, 'truncated record', $tid);
    ($tid) = new_card($env);
    set_record($tid, record_of($tid) . 'AAAA');
    refused($ngx, 'extended record', $tid);
    # relabelled with another key id of the ring
    ($tid) = new_card($env);
    (my $rel = record_of($tid)) =~ s/^ocdz1\.k1\./ocdz1.k2./;
    set_record($tid, $rel);
    refused($ngx, 'relabelled key id (k2 not in this ring)', $tid,
            key => 'k2');
}

# swapped: a record copied from another order of the same user
{
    my ($a, $ca) = new_card($env);
    my ($b, $cb) = new_card($env);
    set_record($b, record_of($a));
    refused($ngx, 'record copied from another order', $b, key => 'k1');
    opens($ngx, 'the original order still opens', $a, $ca);
}

# garbage of every kind
for my $g ('', 'x', 'ocdz1', 'ocdz1.k1.', 'ocdz1..AAAA', 'ocdz2.k1.AAAA',
           'ocdz1.k1.!!!!', 'ocdz1.k 1.AAAA', '{}', '[]', 'null',
           '{"iv":"00","encryptedData":"00","authTag":"00"}',
           '{"iv":"' . ('0' x 32) . '","encryptedData":"zz","authTag":"'
               . ('0' x 32) . '"}',
           '{"nonce":"AAAA","encryptedData":"AAAA"}',
           '{"iv":1,"encryptedData":2,"authTag":3}',
           '{"iv":"' . ('0' x 32) . '","iv":"' . ('0' x 32)
               . '","encryptedData":"00","authTag":"' . ('0' x 32) . '"}',
           'A' x 1500, '{' x 500) {
    my ($gid) = new_card($env);
    set_record($gid, $g);
    my $show = length($g) > 30 ? substr($g, 0, 30) . '...' : $g;
    refused($ngx, "garbage record '$show'", $gid);
}

# --- the wrong key under the same id -----------------------------------------

{
    my $other = card_nginx($env,
        keys => 'ocdz_card_key k1 %%DIR%%/k1other.key current;');
    my ($wid, $wcode) = new_card($env);
    refused($other, 'wrong key under the same id', $wid, key => 'k1');
    opens($ngx, 'the right key still opens it', $wid, $wcode);
    $other->quit;
}

# --- rotation: k1 kept, k2 current -------------------------------------------

my $rot;
{
    my ($old, $cold) = new_card($env);             # sealed with k1
    $rot = card_nginx($env, keys => 'ocdz_card_key k1 %%DIR%%/k1.key; '
                                  . 'ocdz_card_key k2 %%DIR%%/k2.key current;');
    opens($rot, 'rotation: a k1 record', $old, $cold);
    my ($new, $cnew) = new_card($env, keys => ['k1', 'k2:current']);
    like(record_of($new), qr/^ocdz1\.k2\./, 'the tool seals with k2 now');
    opens($rot, 'rotation: a k2 record', $new, $cnew);
    refused($ngx, 'a k2 record where only k1 is known', $new, key => 'k2');
    my ($k9, $c9) = new_card($env, keys => ['k9:current']);
    refused($rot, 'a record under a key id not in the ring', $k9,
            key => 'k9');
}

# --- the guide's records -----------------------------------------------------

{
    my %made;
    for my $mode (qw(node php python)) {
        my ($lid, $lcode) = new_card($env, record => sub ($i, $c) {
            legacy_record($mode, $env->{hex}{k1}, $c)
        });
        my $rec = record_of($lid);
        $made{$mode} = $lid;
        if ($mode eq 'node') {
            like($rec, qr/^\{"iv":"[0-9a-f]{32}","encryptedData":"[0-9a-f]+",
                          "authTag":"[0-9a-f]{32}"\}$/x,
                 'node record: the recipe\'s shape, 16-byte iv');
        } elsif ($mode eq 'php') {
            like($rec, qr/^\{"iv":"[0-9a-f]{24}",/,
                 'php record: 12-byte iv');
        } else {
            like($rec, qr/^\{"nonce": "[A-Za-z0-9+\/]{16}", "encryptedData": /,
                 'python record: json.dumps shape, 12-byte nonce');
        }
        my $mark = $ngx->log_mark;
        opens($ngx, "$mode record", $lid, $lcode);
        opens($ngx, "$mode record again", $lid, $lcode);
        opens($rot, "$mode record under k1, k2 current", $lid, $lcode);
        my @n = $ngx->error_log($mark) =~ /^(.*\[notice\].*legacy.*)$/mg;
        my @mine = grep { /\Q$lid\E/ } @n;
        is(scalar @mine, 1, "$mode record: one [notice] (legacy)")
            or diag explain \@n;
        my @rot_n = grep { /\Q$lid\E/ && /\[notice\].*legacy/ }
                    split /\n/, $rot->error_log;
        is(scalar @rot_n, 0, "$mode record: no second notice elsewhere");
        unlike($ngx->error_log($mark), qr/\[(error|warn)\].*\Q$lid\E/,
               "$mode record: no error");
        is_deeply([audit_events($env, $lid)],
                  [('CARD_REVEALED') x 3], "$mode record: audited");
    }

    # the same recipes with a 4-byte tag
    for my $mode (qw(node php)) {
        my ($sid) = new_card($env, record => sub ($i, $c) {
            legacy_record($mode, $env->{hex}{k1}, $c, taglen => 4)
        });
        like(record_of($sid), qr/"authTag":"[0-9a-f]{8}"/,
             "$mode record with a 4-byte tag");
        refused($ngx, "$mode record with a 4-byte tag", $sid);
    }
    {
        # Python: the tag is the last 16 bytes, a 4-byte one is refused
        my ($sid) = new_card($env, record => sub ($i, $c) {
            legacy_record('python', $env->{hex}{k1}, $c, taglen => 4)
        });
        refused($ngx, 'python record with a 4-byte tag', $sid);
    }
    # under a key not in the ring
    my ($uid) = new_card($env, record => sub ($i, $c) {
        legacy_record('node', $env->{hex}{k9}, $c)
    });
    refused($ngx, 'node record under an unknown key', $uid);
    # a legacy record tampered
    my ($tid) = new_card($env, record => sub ($i, $c) {
        my $r = legacy_record('node', $env->{hex}{k1}, $c);
        $r =~ s/"encryptedData":"(.)/'"encryptedData":"' . ($1 eq 'a' ? 'b' : 'a')/e;
        return $r;
    });
    refused($ngx, 'node record tampered', $tid);
    # legacy records are not bound to their order: copying one works (the
    # reason they are logged and should be re-encrypted)
    my ($cid, $ccode) = new_card($env, record => sub ($i, $c) {
        legacy_record('python', $env->{hex}{k1}, $c)
    });
    my ($dst) = new_card($env);
    set_record($dst, record_of($cid));
    opens($ngx, 'a copied legacy record opens (not bound)', $dst, $ccode);
}

# --- delivered_at: set by a reveal whose card opens, and only by one ------

# a first reveal that fails does not mark the order; the one after the
# data or the key is put right does
{
    my ($id, $code) = new_card($env);
    my $good = record_of($id);
    my ($pfx, $b64) = $good =~ /^(ocdz1\.k1\.)(.*)$/;
    my $r = decode_base64url($b64);
    substr($r, -1, 1) = chr(ord(substr($r, -1, 1)) ^ 0x80);
    set_record($id, $pfx . encode_base64url($r));
    refused($ngx, 'delivery: tampered tag, first reveal', $id, key => 'k1');
    ok(!defined delivered($id), 'delivery: not marked delivered');
    refused($ngx, 'delivery: tampered tag, again', $id, key => 'k1');
    set_record($id, $good);
    opens($ngx, 'delivery: the record put right', $id, $code);
    is_deeply([audit_events($env, $id)],
              [('CARD_REVEALED', 'CARD_REVEAL_FAILED') x 2, 'CARD_REVEALED'],
              'delivery: the failed attempts and the release audited');

    # a key nginx does not have, then a configuration that has it
    my ($kid, $kcode) = new_card($env, keys => ['k2:current']);
    refused($ngx, 'delivery: k2 record, k1 only', $kid, key => 'k2');
    ok(!defined delivered($kid), 'delivery: k2 record: not delivered');
    opens($rot, 'delivery: k2 record, k2 known', $kid, $kcode);

    # an order already delivered keeps its mark through a failure
    my ($did) = new_card($env);
    $pg->psql("UPDATE ocdz.orders SET delivered_at = "
              . "'2001-02-03 04:05:06.789012+00' WHERE topup_id = "
              . sql_quote($did));
    my $kept = delivered($did);
    set_record($did, 'ocdz1.k1.AAAA');
    refused($ngx, 'delivery: already delivered, then garbage', $did);
    is(delivered($did), $kept, 'delivery: the old mark kept');
}

# One worker, one database connection: what arrives while a statement
# runs waits for it. Audit rows whose User-Agent starts "slow-S" make
# their statement sleep S seconds.
audit_test_hook($pg);

my $one = card_nginx($env, nginx => { workers => 1 },
                     http => 'ocdz_db_pool_size 1; ocdz_db_batch 16;');

# a request written now, answered later (read_answer)
sub send_req ($ngx, $id, $ua) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ngx->port, Proto => 'tcp',
                                  Timeout => 10)
        or BAIL_OUT("connect: $!");
    syswrite $s, 'GET ' . card_path($id) . " HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\nAuthorization: Bearer $tok\r\n"
        . "User-Agent: $ua\r\n\r\n";
    return $s;
}

sub read_answer ($s) {
    my $r = raw_answer($s, 'GET', 30);
    return ($r->{status}, json_decode($r->{body}));
}

my $run = random_hex(4);
my $sf = slow_factor();
sub slow_ua ($secs, $tag) {
    return sprintf 'slow-%.2f-%s-%s', $secs * $sf, $run, $tag;
}

# a mark set by someone else between a failed reveal and its taking back
# stays: A fails, and its compensation waits behind C
{
    my ($ida) = new_card($env);
    my ($idc, $codec) = new_card($env);
    set_record($ida, 'ocdz1.k1.' . ('A' x 60));
    my $sa = send_req($one, $ida, slow_ua(0.5, 'race-a'));
    sleep 0.2 * $sf;
    my $sc = send_req($one, $idc, slow_ua(2, 'race-c'));
    my $seen;
    wait_until(sub { $seen = delivered($ida) }, timeout => 10);
    ok(defined $seen, 'race: the failing reveal marked the order first');
    $pg->psql("UPDATE ocdz.orders SET delivered_at = "
              . "'2002-03-04 05:06:07.123456+00' WHERE topup_id = "
              . sql_quote($ida));
    my $other = delivered($ida);
    my @fail = grep { $_->{event} eq 'CARD_REVEAL_FAILED' } $pg->audit($ida);
    is(scalar @fail, 0, 'race: its compensation had not run yet');
    my ($st_a, $ja) = read_answer($sa);
    my ($st_c, $jc) = read_answer($sc);
    is($st_a, 500, 'race: the failing reveal: 500');
    is($ja && $ja->{error}, 'DELIVERY_FAILED', 'race: DELIVERY_FAILED');
    is($st_c, 200, 'race: the other reveal: 200');
    is($jc && $jc->{cardCode}, $codec, 'race: the other reveal: its card');
    is_deeply([audit_events($env, $ida)],
              ['CARD_REVEALED', 'CARD_REVEAL_FAILED'],
              'race: the failure audited');
    is(delivered($ida), $other, 'race: the mark set since is not taken back');
}

# the array form: failing and good first reveals in one statement
{
    my ($idh) = new_card($env);
    my ($idg, $codeg) = new_card($env);
    my ($idt, $codet) = new_card($env);
    my ($idk, $codek) = new_card($env, keys => ['k9:current']);
    my ($idd) = new_card($env);
    my $goodt = record_of($idt);
    (my $badt = $goodt) =~ s/^(ocdz1\.k1\.)(.)/$1 . ($2 eq 'A' ? 'B' : 'A')/e;
    set_record($idt, $badt);
    $pg->psql("UPDATE ocdz.orders SET delivered_at = "
              . "'2003-04-05 06:07:08.5+00', card_enc = 'garbage' "
              . 'WHERE topup_id = ' . sql_quote($idd));
    my $old = delivered($idd);

    my $sh = send_req($one, $idh, slow_ua(1, 'hold'));
    sleep 0.3 * $sf;
    my @reqs = ([$idg, 200, $codeg], [$idt, 500], [$idk, 500], [$idt, 500],
                [$idd, 500], [$idg, 200, $codeg]);
    my $i = 0;
    my @socks = map { send_req($one, $_->[0], "batch-$run-" . $i++) } @reqs;
    my ($st) = read_answer($sh);
    is($st, 200, 'batch: the request holding the connection: 200');
    my $bad = 0;
    for my $k (0 .. $#reqs) {
        my ($s, $j) = read_answer($socks[$k]);
        my ($id, $want, $code) = @{ $reqs[$k] };
        $j //= {};
        next if $s == $want
                && ($want == 200 ? ($j->{cardCode} // '') eq $code
                                 : ($j->{error} // '') eq 'DELIVERY_FAILED');
        diag "batch: request $k ($id): $s";
        $bad++;
    }
    is($bad, 0, 'batch: every answer its own (' . @reqs . ')');
    is($pg->value('SELECT count(DISTINCT xmin::text) FROM ocdz.audit '
                  . "WHERE event = 'CARD_REVEALED' "
                  . "AND user_agent LIKE 'batch-$run-%'"), 1,
       'batch: the reveals went in one statement');
    ok(defined delivered($idg), 'batch: the good first reveal marked');
    ok(!defined delivered($idt), 'batch: tampered (twice): not marked');
    ok(!defined delivered($idk), 'batch: unknown key: not marked');
    is(delivered($idd), $old, 'batch: already delivered: the mark kept');
    is_deeply([audit_events($env, $idt)],
              [('CARD_REVEALED') x 2, ('CARD_REVEAL_FAILED') x 2],
              'batch: both failed attempts audited');

    # put right, the next reveals mark them
    set_record($idt, $goodt);
    opens($one, 'batch: tampered record put right', $idt, $codet);
    my ($rc, $out, $err) = tool_store($env, $idk, $codek, force => 1);
    is($rc, 0, 'batch: the k9 card stored again under k1') or diag $err;
    opens($one, 'batch: k9 card stored again', $idk, $codek);
}

hygiene($env);
$ngx->quit;
$rot->quit;
$one->quit;
done_testing;

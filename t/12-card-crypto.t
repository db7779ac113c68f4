# Opening stored cards: tampered and swapped records, a wrong key under
# the right id, key rotation (an old key kept, a new one current), the
# OneClickDz guide's Node.js, PHP and Python records (made here with the
# recipes' exact algorithms by a small C program), shortened tags,
# garbage, and the one [notice] per legacy order. Failures answer 500
# DELIVERY_FAILED, are logged with the top-up id and key id (never the
# code) and add a CARD_REVEAL_FAILED audit row.

use v5.36;
use Test::More;
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

sub opens ($ngx, $what, $id, $code) {
    my ($s, $h, $j, $raw) = card_get($ngx, $id, token => $tok);
    is($s, 200, "$what: 200") or diag $raw;
    is($j && $j->{cardCode}, $code, "$what: the code");
}

# refused: 500 DELIVERY_FAILED, an [error] line naming the order (and the
# key id when given), a CARD_REVEAL_FAILED audit row.
sub refused ($ngx, $what, $id, %o) {
    my $mark = $ngx->log_mark;
    my $n = () = $pg->audit($id);
    my ($s, $h, $j) = card_get($ngx, $id, token => $tok);
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

hygiene($env);
$ngx->quit;
$rot->quit;
done_testing;

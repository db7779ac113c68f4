package Ocdz::Test::Data;

# Values tests make: random ids, tokens, card codes and keys; hashes and
# base64url; canonical JSON; HS256 JWTs; SQL literals.

use v5.36;
use Carp qw(croak);
use Digest::SHA qw(sha256 sha256_hex hmac_sha256);
use Exporter qw(import);
use JSON::PP ();
use MIME::Base64 qw(encode_base64url);
use Ocdz::Test::Files qw(write_file);

our @EXPORT_OK = qw(
    random_hex random_card_code random_topup_id random_token
    write_key_file sha256_hex sha256_raw hmac_sha256_raw jwt_hs256 b64url
    json_encode json_decode sql_quote
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

sub _rand_bytes ($n) {
    open my $fh, '<:raw', '/dev/urandom' or croak "urandom: $!";
    my $got = read($fh, my $buf, $n);
    croak 'short read from /dev/urandom' unless $got && $got == $n;
    return $buf;
}

sub random_hex ($nbytes = 16) { unpack 'H*', _rand_bytes($nbytes) }

# 16 digits, distinctive enough to grep logs for
sub random_card_code ($len = 16) {
    my $s = '';
    $s .= $_ % 10 for unpack 'C*', _rand_bytes($len);
    substr($s, 0, 1) = 1 + ord(_rand_bytes(1)) % 9;
    return $s;
}

sub random_topup_id { random_hex(12) }

sub random_token ($nbytes = 32) { b64url(_rand_bytes($nbytes)) }

sub b64url ($bytes) { encode_base64url($bytes) }

sub sha256_raw ($data) { sha256($data) }

sub hmac_sha256_raw ($data, $key) { hmac_sha256($data, $key) }

# A card key file: 64 hex characters (a random key unless given), mode
# 0600. Options: newline => 1 adds "\n", mode => 0644 for the warning
# test. Returns the hex.
sub write_key_file ($path, %o) {
    my $hex = $o{hex} // random_hex(32);
    write_file($path, $hex . ($o{newline} ? "\n" : ''), $o{mode} // 0600);
    return $hex;
}

sub json_encode ($data) { JSON::PP->new->canonical->utf8->encode($data) }

sub json_decode ($text) {
    my $r = eval { JSON::PP->new->utf8->allow_nonref->decode($text) };
    return $r;
}

# HS256 JWT. Options: header => {...} (merged over alg/typ),
# signature => STRING (replaces the computed one), key_raw => 1 (the
# secret is raw bytes; default too).
sub jwt_hs256 ($secret, $claims, %o) {
    my $h = { alg => 'HS256', typ => 'JWT', %{ $o{header} // {} } };
    my $input = b64url(json_encode($h)) . '.' . b64url(json_encode($claims));
    my $sig = $o{signature} // b64url(hmac_sha256($input, $secret));
    return "$input.$sig";
}

sub sql_quote ($v) {
    return 'NULL' unless defined $v;
    (my $q = $v) =~ s/'/''/g;
    return "'$q'";
}

1;

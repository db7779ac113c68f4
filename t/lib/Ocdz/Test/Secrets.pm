package Ocdz::Test::Secrets;

# Looking for secrets (card codes, tokens, keys) in logs, tables and
# answers, in every form they could take there: raw, hex, base64 and
# base64url at any alignment.

use v5.36;
use Exporter qw(import);
use MIME::Base64 qw(encode_base64);
use Test::More ();

our @EXPORT_OK = qw(secret_forms find_secret assert_no_secret);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# Every string a secret may appear as: raw, hex (both cases), and the
# base64 / base64url runs that only depend on the secret's own bytes
# (for each of the three alignments in a longer encoded string).
sub secret_forms ($secret) {
    my %f = (raw => $secret, hex => lc(unpack 'H*', $secret),
             HEX => uc(unpack 'H*', $secret));
    for my $k (0 .. 2) {
        my $e = encode_base64(("\0" x $k) . $secret, '');
        $e =~ s/=+$//;
        my $len = $k + length $secret;
        my $skip = $k ? 4 : 0;
        my $full = int($len / 3) * 4;      # chars of complete groups
        my $core = substr($e, $skip, $full - $skip);
        next if length($core) < 8;
        $f{"b64_$k"} = $core;
        (my $u = $core) =~ tr{+/}{-_};
        $f{"b64url_$k"} = $u;
    }
    return \%f;
}

# Returns a description of the first form of a secret found, or undef.
sub find_secret ($content, @secrets) {
    $content //= '';
    for my $s (@secrets) {
        next unless defined $s && length $s;
        my $forms = secret_forms($s);
        for my $name (sort keys %$forms) {
            my $at = index($content, $forms->{$name});
            next if $at < 0;
            my $line = 1 + (() = substr($content, 0, $at) =~ /\n/g);
            return sprintf '%s form of secret %s... at line %d', $name,
                substr($s, 0, 3), $line;
        }
    }
    return undef;
}

# ok() that none of @secrets appears in $content in any form.
sub assert_no_secret ($name, $content, @secrets) {
    my @real = grep { defined && length } @secrets;
    Test::More::diag("assert_no_secret($name): no secrets given")
        unless @real;
    my $found = find_secret($content, @real);
    my $ok = Test::More::ok(!defined $found, "no secret in $name");
    Test::More::diag("found $found") if defined $found;
    return $ok;
}

1;

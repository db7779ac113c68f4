package Ocdz::Test::PKI;

# The test PKI: a CA and the certificates the mock, PostgreSQL and
# nginx's ssl listeners use, made once per process with the openssl CLI.

use v5.36;
use Carp qw(croak);
use Exporter qw(import);
use Ocdz::Test::Files qw(tmpdir write_file);
use Ocdz::Test::Proc qw(run_cmd);

our @EXPORT_OK = qw(pki);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# Test PKI, made once per process with the openssl CLI (EC P-256):
# ca_cert ca_key, server_cert server_key (CA-signed, SAN IP:127.0.0.1,
# DNS:localhost), rogue_cert rogue_key (self-signed, same SAN),
# wrongname_cert wrongname_key (CA-signed for DNS:wrong.example only),
# client_cert client_key (CA-signed, clientAuth), dir.
sub pki {
    state $pki;
    return $pki if $pki;
    my $d = tmpdir();
    my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
              '-nodes');
    my $ssl = sub (@args) {
        my ($rc, $out, $err) = run_cmd(['openssl', @args]);
        croak "openssl @args: $err" if $rc;
    };
    $ssl->('req', '-x509', @ec, '-keyout', "$d/ca.key", '-out', "$d/ca.crt",
           '-days', '3', '-subj', '/CN=ocdz test CA',
           '-addext', 'basicConstraints=critical,CA:TRUE',
           '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    my $leaf = sub ($name, $san, $eku) {
        write_file("$d/$name.ext", "subjectAltName=$san\n"
            . "basicConstraints=CA:FALSE\n"
            . "keyUsage=critical,digitalSignature,keyEncipherment\n"
            . "extendedKeyUsage=$eku\n");
        $ssl->('req', '-new', @ec, '-keyout', "$d/$name.key",
               '-out', "$d/$name.csr", '-subj', "/CN=ocdz test $name");
        $ssl->('x509', '-req', '-in', "$d/$name.csr", '-CA', "$d/ca.crt",
               '-CAkey', "$d/ca.key", '-CAcreateserial', '-days', '3',
               '-out', "$d/$name.crt", '-extfile', "$d/$name.ext");
    };
    $leaf->('server', 'IP:127.0.0.1,DNS:localhost', 'serverAuth');
    $leaf->('wrongname', 'DNS:wrong.example', 'serverAuth');
    $leaf->('client', 'DNS:client.test', 'clientAuth');
    $ssl->('req', '-x509', @ec, '-keyout', "$d/rogue.key",
           '-out', "$d/rogue.crt", '-days', '3', '-subj', '/CN=ocdz rogue',
           '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
    chmod 0644, glob("$d/*");
    $pki = { dir => $d };
    for my $n (qw(ca server wrongname client rogue)) {
        $pki->{"${n}_cert"} = "$d/$n.crt";
        $pki->{"${n}_key"} = "$d/$n.key";
    }
    return $pki;
}

1;

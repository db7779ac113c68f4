use v5.36;
use Test::More;
use Ocdz::Test qw(:all);
require_module();
my $dir = tmpdir();
write_key_file("$dir/k1");
write_file("$dir/tok", "tok_abc", 0600);
my %base = (db => 'ocdz_db "host=127.0.0.1 port=5 dbname=x user=y";',
            key => "ocdz_card_key k1 $dir/k1;",
            tok => "ocdz_api_token_file $dir/tok;",
            # an address: the default host would need the network
            # (nginx -t resolves it, t/71)
            extra => 'ocdz_api_base https://127.0.0.1:9;');
for my $c (
    [{ db => '' }, qr/needs "ocdz_db"/],
    [{ key => '' }, qr/needs "ocdz_card_key"/],
    [{ tok => '' }, qr/needs "ocdz_api_token_file"/],
    [{ extra => 'ocdz_poller_lease 10s; ocdz_api_timeout 15s;' }, qr/ocdz_poller_lease 10s must be longer than ocdz_api_timeout 15s/],
    [{ extra => 'ocdz_poller_interval 50ms;' }, qr/ocdz_poller_interval 50ms is too short/],
    [{ extra => 'ocdz_api_base https://no-such-host.invalid;' }, qr/ocdz_api_base host "no-such-host\.invalid" not found/],
    [{}, qr/test is successful/],
) {
    my %v = (%base, %{ $c->[0] });
    my $ngx = Ocdz::Test::Nginx->new(conf => "http { $v{db} $v{key} $v{tok} ocdz_poller on; $v{extra} server { listen 127.0.0.1:%%PORT%%; } }\n");
    my ($rc, $out) = $ngx->test_config;
    like($out, $c->[1], "conf: $c->[1]") or diag $out;
}
done_testing;

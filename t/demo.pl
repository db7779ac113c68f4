#!/usr/bin/perl

# make demo: the module's whole job on local defaults.
#
# A throwaway PostgreSQL, the mock OneClickDz API over HTTPS and Debian's
# nginx with the module start; a storefront order is inserted as PENDING;
# the poller checks it upstream until the mock fulfils it, stores the card
# encrypted; curl reveals it through the card endpoint. Everything stops
# at the end.
#
# With KEEP=1 (make demo KEEP=1) the stack stays up afterwards, serving the
# customer page (conf-examples/storefront/) for a second order that the
# mock fulfils a few seconds after it is opened, until Ctrl-C.

use v5.36;

# The harness's END blocks (Test::More without a plan) turn a clean exit
# into 255; compiled before them, this one runs after them.
my $FINISHED;
END { $? = 0 if $FINISHED }

use FindBin;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Ocdz::Test qw(:all);
use Ocdz::Storefront qw(storefront_http storefront_locations);

$| = 1;

sub step ($text) { print "\n==> $text\n" }

die "build the module first (make)\n" unless have_module();

step 'starting a throwaway PostgreSQL and loading sql/ocdz.sql';
my $pg = Ocdz::Test::Pg->start;
say '    PostgreSQL on 127.0.0.1:', $pg->port;

step 'starting the mock OneClickDz API (HTTPS, test CA); '
     . 'it fulfils new orders after 4 s';
my $mock = Ocdz::Test::Mock->start(auto_fulfil => 4);
say '    API at ', $mock->base_url;

my $dir = tmpdir();
write_key_file("$dir/card-key");

# the demo customer's session, and the stand-in for the shop's login
# that sets it as the session cookie (for the page)
my $token = random_token();
my $storefront_http = storefront_http('demo-customer' => $token);
# the page's requests are held until the card is stored (?wait=25)
my $storefront = storefront_locations(card => 'ocdz_card_wait 25s;');

my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock, check_log => 0,
    error_log_level => 'info', vars => { DIR => $dir }, conf => <<"EOF");
http {
    ocdz_db              "%%PGCONNINFO%%";
    ocdz_card_key        demo %%DIR%%/card-key;
    ocdz_api_base        %%MOCK_BASE%%;
    ocdz_api_ca_file     %%CA_FILE%%;
    ocdz_api_token_file  %%TOKEN_FILE%%;
    ocdz_poller          on;
    ocdz_poller_interval 1s;
$storefront_http

    server {
        listen 127.0.0.1:%%PORT%%;
$storefront
    }
}
EOF

step 'starting nginx with ngx_http_ocdz_module (poller on)';
$ngx->start;
say '    nginx on ', $ngx->base_url;

my $topup = random_topup_id();

step "the storefront records a top-up OneClickDz accepted: $topup";
$pg->insert_order(topup_id => $topup, user_id => 'demo-customer',
                  type => 'ADSL', number => '036362608', value => 1000);
$pg->add_session($token, 'demo-customer');
say "    INSERT INTO ocdz.orders (topup_id, user_id, type, number, value)";
say "    VALUES ('$topup', 'demo-customer', 'ADSL', '036362608', 1000);";

my $url = $ngx->base_url . "/api/internet-orders/$topup/card";
my @curl = ('curl', '-s', '-H', "Authorization: Bearer $token");

step 'asking for the card before it is ready';
my ($rc, $out) = run_cmd([@curl, $url]);
say "    $out";

step 'waiting for the poller';
my $last = '';
my $done = wait_until(sub {
    my $o = $pg->order($topup);
    my $line = "status $o->{status}, checks $o->{attempts}";
    if ($line ne $last) {
        say "    $line";
        $last = $line;
    }
    $o->{status} eq 'FULFILLED' || $o->{status} eq 'ERROR'
        || $o->{status} eq 'REFUNDED';
}, timeout => 60, interval => 0.2);

my $order = $pg->order($topup);
die "the order did not reach a final state\n" unless $done;
die "the order ended $order->{status}\n" if $order->{status} ne 'FULFILLED';

say '    stored encrypted: ', substr($order->{card_enc}, 0, 40), '...';

step "revealing it: curl -H 'Authorization: Bearer ...' $url";
($rc, $out) = run_cmd([@curl, $url]);
my $json = json_decode($out);
die "no JSON from the card endpoint: $out\n" unless $json;
print JSON::PP->new->pretty->canonical->utf8->encode($json);

step 'the audit log (no card code in it)';
for my $row ($pg->hashes("SELECT event, topup_id, user_id, method "
                         . "FROM ocdz.audit ORDER BY id"))
{
    say "    $row->{event} $row->{topup_id} $row->{user_id} $row->{method}";
}

my $upstream = $mock->order($topup);
die "the revealed card differs from the one upstream\n"
    unless ($json->{cardCode} // '') eq ($upstream->{card_code} // '-');

if ($ENV{KEEP}) {
    # a person's turn: the page, for an order still pending
    alarm 0;
    my $next = random_topup_id();
    $pg->insert_order(topup_id => $next, user_id => 'demo-customer',
                      type => '4G', number => '213472731602', value => 2000);
    step 'the customer page (KEEP=1): open in a browser on this machine';
    say '    ', $ngx->base_url, "/account/sign-in?order=$next";
    say '        a new order: the page waits, then shows the card';
    say '    ', $ngx->base_url, "/account/sign-in?order=$topup";
    say '        the order above, already fulfilled';
    say '    (/account/sign-in stands for the shop\'s login: it sets the';
    say '    demo customer\'s session cookie.) Ctrl-C stops everything.';
    my $stop = 0;
    local $SIG{INT} = local $SIG{TERM} = sub { $stop = 1 };
    sleep 0.5 until $stop;
    print "\n";
}

step 'the card revealed is the one OneClickDz fulfilled; stopping';
$ngx->quit;
$mock->stop;
$pg->stop;
$FINISHED = 1;
exit 0;

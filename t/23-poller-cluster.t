use v5.36;
use Test::More;
use Ocdz::Test qw(:all);
use Ocdz::Poller qw(:all);

# Two nginx instances of two workers each share one database: the leases
# keep every order checked by one worker at a time, every order ends
# fulfilled exactly once, and the card each one reveals is the card the
# upstream fulfilled. Then the states a storefront sees between.

require_module();

my ($pg, $mock, $dir) = poller_env();

my $conf = poller_conf(
    directives => [api_timeout => '3s', api_connect_timeout => undef,
                   poller_interval => '200ms', poller_lease => '10s',
                   poller_pause => '2s', poller_concurrency => 8],
    server => 'location ~ "^/card/([0-9a-f]{24})$" { ocdz_card $1; }');

my @ngx = map {
    Ocdz::Test::Nginx->new(pg => $pg, mock => $mock, workers => 2,
        error_log_level => 'info', vars => { DIR => $dir }, conf => $conf)
} 1 .. 2;

# every check takes a while, so that overlapping checks would show
$mock->fault('delay', delay_ms => 150);

my $n = 40;
my @ids;

for my $i (1 .. $n) {
    my $id = random_topup_id();
    push @ids, $id;
    $mock->set_order($id, status => 'HANDLING',
                     fulfil_after_checks => 1 + $i % 3, then => 'FULFILLED');
    $pg->insert_order(topup_id => $id, user_id => "user$i");
}

$_->start for @ngx;

my $all = wait_until(sub {
    $pg->value("SELECT count(*) FROM ocdz.orders WHERE status = 'FULFILLED'")
        == $n
}, timeout => 90, interval => 0.2);

ok($all, "all $n orders fulfilled by two instances of two workers");

my $stats = $mock->stats;
my @overlap = grep { ($stats->{per_id}{$_}{max_inflight} // 0) > 1 } @ids;
is(scalar @overlap, 0, 'no order was ever checked twice at the same time')
    or diag explain [ map { $stats->{per_id}{$_} } @overlap ];

my $checked = grep { ($stats->{per_id}{$_}{count} // 0) > 0 } @ids;
is($checked, $n, 'every order was checked upstream');

is($pg->value("SELECT count(*) FROM ocdz.audit WHERE event = 'CARD_STORED'"),
   $n, 'one CARD_STORED audit row in all');
is($pg->value("SELECT count(*) FROM (SELECT topup_id FROM ocdz.audit"
              . " WHERE event = 'CARD_STORED' GROUP BY topup_id"
              . " HAVING count(*) <> 1) x"),
   0, 'exactly one CARD_STORED row per order');

is($pg->value("SELECT count(*) FROM ocdz.orders WHERE lease_token IS NOT NULL"
              . " OR card_enc IS NULL OR fulfilled_at IS NULL"),
   0, 'no lease left, every card and fulfilment time stored');

# what the poller stored is what upstream fulfilled, as the customer sees it

my ($same, @codes) = (0);

for my $i (1 .. $n) {
    my $id = $ids[$i - 1];
    my $token = random_token();
    $pg->add_session($token, "user$i");

    my ($st, $h, $json) = $ngx[$i % 2]->http_json('GET', "/card/$id",
        headers => { Authorization => "Bearer $token" });
    my $up = $mock->order($id);
    push @codes, $up->{card_code};

    $same++ if $st == 200 && $json->{cardCode} eq $up->{card_code}
               && $json->{transactionNumber} eq $up->{num_trans}
               && $json->{processedDate} eq $up->{date_traitement};
}

is($same, $n, 'each revealed card, transaction and date match upstream');

# the states between, as the frontend sees them

$mock->reset_faults;

my $token = random_token();
$pg->add_session($token, 'waiting-user');

sub reveal ($id) {
    my ($st, $h, $json) = $ngx[0]->http_json('GET', "/card/$id",
        headers => { Authorization => "Bearer $token" });
    return ($st, $json);
}

{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'UNKNOWN_ERROR');
    $pg->insert_order(topup_id => $id, user_id => 'waiting-user');

    ok(wait_until(sub { $pg->order($id)->{status} eq 'UNKNOWN_ERROR' },
                  timeout => 20), 'UNKNOWN_ERROR recorded');

    my ($st, $json) = reveal($id);
    is($st, 409, 'UNKNOWN_ERROR: not ready');
    is($json->{status}, 'UNKNOWN_ERROR', 'the frontend sees UNKNOWN_ERROR');

    my $before = $pg->order($id)->{attempts};
    ok(wait_until(sub { $pg->order($id)->{attempts} > $before + 1 },
                  timeout => 20), 'UNKNOWN_ERROR is checked again');
    isnt($pg->order($id)->{status}, 'REFUNDED', 'never taken as refunded');

    $mock->set_order($id, status => 'FULFILLED', card_code => random_card_code());
    ok(wait_until(sub { $pg->order($id)->{status} eq 'FULFILLED' },
                  timeout => 20), 'then fulfilled when upstream fulfils it');
    push @codes, $mock->order($id)->{card_code};

    ($st, $json) = reveal($id);
    is($st, 200, 'and revealed');
}

{
    my $id = random_topup_id();
    $mock->set_order($id, status => 'PENDING');
    $pg->insert_order(topup_id => $id, user_id => 'waiting-user',
                      status => 'HANDLING');

    ok(wait_until(sub { $pg->order($id)->{status} eq 'PENDING' },
                  timeout => 20), 'PENDING upstream recorded');
    my $o = $pg->order($id);
    ok(!defined $o->{last_error}, 'PENDING is no error');
    my ($st, $json) = reveal($id);
    is($json->{status}, 'PENDING', 'the frontend sees PENDING');
}

# 401 with no secondary token: checks pause everywhere, nothing is failed

{
    $mock->set_tokens('another-token-' . random_hex(8));

    my $id = random_topup_id();
    $mock->set_order($id, status => 'FULFILLED', card_code => random_card_code());
    $pg->insert_order(topup_id => $id, user_id => 'waiting-user');

    ok(wait_until(sub {
        defined $pg->value("SELECT paused_until FROM ocdz.poller_state"
                           . " WHERE paused_until > now()")
    }, timeout => 20), '401 without a secondary token pauses all checks');

    my $o = $pg->order($id);
    is($o->{status}, 'PENDING', 'the order is not failed');
    ok(wait_until(sub {
        grep { $_->error_log =~ /\[error\].*(401|rejected|access token)/i }
            @ngx
    }, timeout => 10), 'the refusal is logged at [error]');

    $mock->set_tokens($mock->token);
    ok(wait_until(sub { $pg->order($id)->{status} eq 'FULFILLED' },
                  timeout => 30), 'checks resume after the pause');
    push @codes, $mock->order($id)->{card_code};
}

for my $x (@ngx) {
    assert_no_secret('error log', $x->error_log, @codes, $mock->token);
    assert_no_secret('access log', $x->access_log, @codes, $mock->token);
}

$_->quit for @ngx;

done_testing;

package Ocdz::Poller;

# Helpers for the tests that run the poller (t/20-24, and t/30-33, t/50
# beside the card endpoint): the directives that point it at the mock
# and set its pace, a whole configuration for the poller alone, the
# servers it needs, and waits on an order's row.
#
#   use Ocdz::Poller qw(:all);
#   my ($pg, $mock, $dir) = poller_env();        # key k1 in $dir
#   my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
#       vars => { DIR => $dir },
#       conf => poller_conf(directives => [poller_concurrency => 3]));
#   $ngx->start;
#   my $id = $pg->insert_order;
#   order_is($pg, $id, sub { $_[0]{status} eq 'FULFILLED' }, 'fulfilled');
#
# With Ocdz::Card's card_nginx: http => poller_directives(...).

use v5.36;
use Carp qw(croak);
use Exporter qw(import);
use Test::More ();
use Ocdz::Test qw(:all);

our @EXPORT_OK = qw(poller_directives poller_conf poller_env order_is
                    unpause);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# What the tests share: the mock's API through the Nginx object's
# built-in variables, short timeouts, a fast pace and a short lease
# (a lost check comes back soon). Names without "ocdz_".
my @DEFAULTS = (
    api_base            => '%%MOCK_BASE%%',
    api_ca_file         => '%%CA_FILE%%',
    api_token_file      => '%%TOKEN_FILE%%',
    api_timeout         => '2s',
    api_connect_timeout => '1s',
    poller              => 'on',
    poller_interval     => '300ms',
    poller_lease        => '4s',
);

# The http-level directives, one a line: the defaults above with
# @set's pairs (name => value) over them. A name not among the defaults
# is added (in the order given); a value undef leaves the directive out
# (nginx's default). Values may hold %%NAME%% placeholders.
sub poller_directives (@set) {
    croak 'poller_directives: name => value pairs' if @set % 2;
    my (@names, %v);
    for (my $i = 0; $i < @DEFAULTS; $i += 2) {
        push @names, $DEFAULTS[$i];
        $v{ $DEFAULTS[$i] } = $DEFAULTS[$i + 1];
    }
    for (my $i = 0; $i < @set; $i += 2) {
        my $n = $set[$i] =~ s/^ocdz_//r;
        push @names, $n unless exists $v{$n};
        $v{$n} = $set[$i + 1];
    }
    return join '', map { "    ocdz_$_ $v{$_};\n" }
                    grep { defined $v{$_} } @names;
}

# An http block for the poller alone: the database, key k1 in %%DIR%%,
# poller_directives(@{ directives }), more http-level lines (http =>),
# and a server on %%PORT%% whose content is server => (default: every
# location answers 204).
sub poller_conf (%o) {
    my $server = $o{server} // 'location / { return 204; }';
    my $http = $o{http} // '';
    $http .= "\n" if length $http && $http !~ /\n\z/;
    return "http {\n"
        . "    ocdz_db \"%%PGCONNINFO%%\";\n"
        . "    ocdz_card_key k1 %%DIR%%/k1;\n"
        . poller_directives(@{ $o{directives} // [] })
        . $http
        . "    server {\n"
        . "        listen 127.0.0.1:%%PORT%%;\n"
        . "        $server\n"
        . "    }\n"
        . "}\n";
}

# A PostgreSQL cluster (log_statement none; pg => {...} more options of
# Ocdz::Test::Pg->start), the mock (mock => {...}: options of
# Ocdz::Test::Mock->start) and a directory with the key file k1.
# Returns ($pg, $mock, $dir).
sub poller_env (%o) {
    my $pg = Ocdz::Test::Pg->start(log_statement => 'none',
                                   %{ $o{pg} // {} });
    my $mock = Ocdz::Test::Mock->start(%{ $o{mock} // {} });
    my $dir = tmpdir();
    write_key_file("$dir/k1");
    return ($pg, $mock, $dir);
}

# Waits until $cond->(the order's row) is true: one ok(), the row shown
# when it fails. Returns the last row read.
sub order_is ($pg, $id, $cond, $name, $timeout = 10) {
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $r;
    my $ok = wait_until(sub { $r = $pg->order($id); $cond->($r) },
                        timeout => $timeout);
    Test::More::ok($ok, $name) or Test::More::diag(Test::More::explain($r));
    return $r;
}

# Lifts the shared pause of every check (a 403, 429, redirect...).
sub unpause ($pg) {
    $pg->psql('UPDATE ocdz.poller_state SET paused_until = NULL, '
              . 'pause_reason = NULL');
}

1;

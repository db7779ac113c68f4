package Ocdz::OpenAPI;

# Checks real answers of the card endpoint against the API contract,
# doc/openapi.json (OpenAPI 3.1, JSON Schema 2020-12).
#
# The schema work is done by Debian's python3-jsonschema in one helper
# process per test file (t/lib/openapi_check.py --serve), started on
# first use; each check is one line to it and one line back (~1 ms).
#
#   use Ocdz::OpenAPI;
#   my $api = Ocdz::OpenAPI->shared;        # undef: see ->why_not
#   my @p = $api->problems('GET', $path, $status, $headers, $body);
#   $api->answer_ok("409 pending", 'GET', $path, $s, $h, $raw);
#
# $headers is what Ocdz::Test::Nginx::http gives (its ':all' list keeps
# repeated headers and their case) or a plain { name => value } hash.
# See the POD at the end.

use v5.36;
use Carp qw(croak);
use IPC::Open2 qw(open2);
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use Test::More ();
use Ocdz::Test qw(repo_root);

use constant PYTHON => '/usr/bin/python3';

my $WHY_NOT;
my %SHARED;

sub doc_path { repo_root() . '/doc/openapi.json' }

# Whether the checker can run here: (1) or (0, reason).
sub available ($class = __PACKAGE__) {
    return (0, PYTHON . ' is missing') unless -x PYTHON;
    system(PYTHON, '-c', 'import jsonschema; '
           . 'jsonschema.Draft202012Validator') == 0
        or return (0, 'python3-jsonschema (JSON Schema 2020-12) is not '
                      . 'installed: make deps');
    return (1);
}

sub why_not ($class = __PACKAGE__) { $WHY_NOT }

# One checker per document and process; undef when it cannot run
# (why_not says why).
sub shared ($class, %o) {
    my $doc = $o{doc} // doc_path();
    return $SHARED{$doc} if $SHARED{$doc} && $SHARED{$doc}{owner} == $$;
    my $self = eval { $class->new(%o) };
    $WHY_NOT = $@ =~ s/ at \S+ line \d+.*//sr if !$self;
    return $SHARED{$doc} = $self;
}

# A checker of its own (dies when it cannot run). Options: doc => PATH.
sub new ($class, %o) {
    my ($ok, $why) = $class->available;
    croak $why unless $ok;
    my $self = bless { doc => $o{doc} // doc_path(), owner => $$,
                       json => JSON::PP->new->utf8->canonical,
                       seen => {} }, $class;
    croak "no document $self->{doc}" unless -f $self->{doc};
    $self->{pid} = open2(my $out, my $in, PYTHON,
                         repo_root() . '/t/lib/openapi_check.py',
                         $self->{doc}, '--serve');
    $self->{out} = $out;
    $self->{in} = $in;
    return $self;
}

sub _ask ($self, $req) {
    croak 'Ocdz::OpenAPI used from another process' if $self->{owner} != $$;
    my $fh = $self->{in};
    print $fh $self->{json}->encode($req), "\n";
    $fh->flush;
    my $line = readline $self->{out};
    croak 'the OpenAPI checker died' unless defined $line;
    my $a = $self->{json}->decode($line);
    croak "the OpenAPI checker: $a->{error}" if $a->{error};
    return $a;
}

# The document's own problems (structure, $refs, every schema against
# the 2020-12 meta-schema, examples against their schemas): a list.
sub document_problems ($self) {
    return @{ $self->_ask({ op => 'document' })->{problems} };
}

sub _header_list ($h) {
    return [] unless $h;
    return [ map { [ $_->[0], $_->[1] ] } @{ $h->{':all'} } ]
        if ref $h->{':all'} eq 'ARRAY';
    return [ map { [ $_, $h->{$_} ] } grep { !/^:/ } sort keys %$h ];
}

# What is wrong with one answer: a list (empty when it is as documented).
#   $method  GET, HEAD, OPTIONS ...
#   $path    the request path (query string and all: only the path
#            counts), or { template => '/api/internet-orders/{topupId}/card' }
#            for a location mounted elsewhere
#   $status, $headers, $body  the answer (the raw body bytes)
sub problems ($self, $method, $path, $status, $headers, $body) {
    my %req = (op => 'response', method => $method, status => 0 + $status,
               headers => _header_list($headers),
               body_b64 => encode_base64($body // '', ''));
    if (ref $path) {
        $req{template} = $path->{template};
    } else {
        ($req{path} = $path) =~ s/\?.*//s;
        $req{path} =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    }
    my $a = $self->_ask(\%req);
    $self->{seen}{"$a->{operation} $a->{response}"}++
        if $a->{operation} && $a->{response} && !@{ $a->{problems} };
    return @{ $a->{problems} };
}

# One ok(): the answer is as documented; diag lists what is not.
sub answer_ok ($self, $name, $method, $path, $status, $headers, $body) {
    my @p = $self->problems($method, $path, $status, $headers, $body);
    my $ok = Test::More::ok(!@p, "OpenAPI: $name");
    Test::More::diag(join "\n", map { "  $_" } @p) if @p;
    return $ok;
}

# Every (operationId, response key) the document has: "getCard 409"...
sub documented ($self) {
    state $cache = {};
    return @{ $cache->{ $self->{doc} } } if $cache->{ $self->{doc} };
    open my $fh, '<:raw', $self->{doc} or croak "$self->{doc}: $!";
    my $d = JSON::PP->new->utf8->decode(do { local $/; <$fh> });
    my @out;
    for my $item (values %{ $d->{paths} }) {
        for my $m (grep { ref $item->{$_} eq 'HASH' } keys %$item) {
            my $op = $item->{$m};
            next unless $op->{operationId} && $op->{responses};
            push @out, map { "$op->{operationId} $_" }
                       keys %{ $op->{responses} };
        }
    }
    $cache->{ $self->{doc} } = [ sort @out ];
    return sort @out;
}

# How many answers passed, per "operationId response-key".
sub seen ($self) { return { %{ $self->{seen} } } }

# The documented answers no valid answer has shown yet.
sub not_seen ($self) {
    return grep { !$self->{seen}{$_} } $self->documented;
}

sub DESTROY ($self) {
    return unless $self->{owner} == $$ && $self->{pid};
    close $self->{in};
    waitpid $self->{pid}, 0;
    $self->{pid} = 0;
}

1;

__END__

=head1 NAME

Ocdz::OpenAPI - check answers of the card endpoint against doc/openapi.json

=head1 SYNOPSIS

    use Ocdz::OpenAPI;

    my $api = Ocdz::OpenAPI->shared
        or plan skip_all => Ocdz::OpenAPI->why_not;
    is_deeply([$api->document_problems], [], 'the document is sound');

    my $r = $ngx->http('GET', "/api/internet-orders/$id/card",
                       headers => { Authorization => "Bearer $tok" });
    $api->answer_ok('the card', 'GET', "/api/internet-orders/$id/card",
                    $r->{status}, $r->{headers}, $r->{body});

    # a card location mounted at another path
    my @problems = $api->problems('GET',
        { template => '/api/internet-orders/{topupId}/card' },
        $s, $h, $raw);

=head1 METHODS

  Ocdz::OpenAPI->available      (1) or (0, reason): /usr/bin/python3 with
                                python3-jsonschema (Debian, 2020-12)
  Ocdz::OpenAPI->shared(doc=>)  the process's checker, started once; undef
                                when it cannot run, ->why_not says why
  Ocdz::OpenAPI->new(doc=>)     a checker of its own (dies if it cannot run)
  $api->document_problems       list: structure, $refs, every schema against
                                the 2020-12 meta-schema, examples
  $api->problems($method, $path_or_{template=>}, $status, $headers, $body)
                                list of what differs from the document: the
                                status must be documented for the operation;
                                required headers present, each documented
                                header once and matching its schema; a header
                                the module sets (Cache-Control, Pragma,
                                X-Content-Type-Options, Vary, WWW-Authenticate,
                                Retry-After, Allow, Access-Control-*) not
                                documented for that answer is a problem; the
                                Content-Type one of the documented media types;
                                the body (none for HEAD and for answers without
                                content) valid against the schema
  $api->answer_ok($name, same arguments)   one Test::More ok, diag on failure
  $api->documented              ("getCard 200", "getCard 400", ...)
  $api->seen / not_seen         answers validated so far / documented answers
                                no valid answer showed yet (coverage)

=head1 HOOKING INTO THE SUITE

Every card answer of a test can be checked by calling, where the
harness has the request and the answer (e.g. in Ocdz::Card::card_get):

    if (my $api = Ocdz::OpenAPI->shared) {
        $api->answer_ok("$method $path", $method,
                        { template => '/api/internet-orders/{topupId}/card' },
                        $status, $headers, $raw_body);
    }

The template form is for locations mounted under other prefixes
(/cors/, /x/, /secure/ in the tests). $headers may be the harness's
header hash (with ':all') or a plain hash; $raw_body the undecoded
bytes. Answers nginx gives itself (a location that is not the module's,
nginx's 400/414 pages) are not part of the document: do not check them.

=cut

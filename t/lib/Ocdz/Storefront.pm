package Ocdz::Storefront;

# The customer page (conf-examples/storefront/) served by a test's or the
# demo's nginx, next to the card endpoint, with a stand-in for the
# storefront's login.
#
#   use Ocdz::Storefront qw(:all);
#   my %tok = (alice => $pg->add_session(random_token(), 'alice'));
#   my $ngx = Ocdz::Test::Nginx->new(pg => $pg, conf => <<"EOF");
#   http {
#       ocdz_db "%%PGCONNINFO%%";
#       ...
#       @{[ storefront_http(%tok) ]}
#       server {
#           listen 127.0.0.1:%%PORT%%;
#           @{[ storefront_locations() ]}
#       }
#   }
#   EOF
#   # then open http://127.0.0.1:PORT/account/sign-in?customer=alice&order=ID

use v5.36;
use Carp qw(croak);
use Exporter qw(import);
use Ocdz::Test qw(repo_root);

our @EXPORT_OK = qw(page_dir storefront_http storefront_locations
                    page_headers);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

sub page_dir { repo_root() . '/conf-examples/storefront' }

# What a storefront sends with the page (as
# conf-examples/storefront/nginx-storefront.conf does).
sub page_headers {
    return <<'EOF';
            add_header Content-Security-Policy "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" always;
            add_header X-Content-Type-Options nosniff always;
            add_header Referrer-Policy no-referrer always;
            add_header Cache-Control no-cache always;
EOF
}

# http-level: the demo customers' session tokens, by name; the first
# one signs in when no name is given.
sub storefront_http (@customers) {
    croak 'storefront_http: NAME => TOKEN pairs' if !@customers || @customers % 2;
    my @pairs;
    push @pairs, [ splice @customers, 0, 2 ] while @customers;
    for (@pairs) {
        croak "bad demo customer name $_->[0]" unless $_->[0] =~ /^[\w-]+$/;
        croak "bad demo token for $_->[0]" unless $_->[1] =~ /^[\w-]+$/;
    }
    return join "\n", '    map $arg_customer $ocdz_demo_token {',
        '        default "";',
        qq{        "" "$pairs[0][1]";},
        (map { qq{        "$_->[0]" "$_->[1]";} } @pairs),
        '    }';
}

# server-level locations:
#   /storefront/        the page, with the headers of page_headers()
#   /account/sign-in    the stand-in login (demo and tests only): sets the
#                       session cookie of ?customer= (HttpOnly, SameSite=
#                       Strict, sent only to /api/) and goes to the page
#                       of ?order=
#   /api/internet-orders/<id>/card   the card endpoint, as the README's
#                       example location (card => more directives)
sub storefront_locations (%o) {
    my $dir = page_dir();
    my $card = $o{card} // '';
    return <<"EOF";
        location /storefront/ {
            alias $dir/;
            types {
                text/html html;
                text/css css;
                application/javascript js;
                image/svg+xml svg;
                image/png png;
            }
            charset utf-8;
            charset_types text/css application/javascript;
${\ page_headers()}
        }
        location = /storefront {
            return 301 /storefront/;
        }

        # the storefront's login in a real shop; here the session of a
        # demo customer
        location = /account/sign-in {
            if (\$ocdz_demo_token = "") {
                return 403;
            }
            add_header Set-Cookie "ocdz_session=\$ocdz_demo_token; Path=/api/; HttpOnly; SameSite=Strict" always;
            add_header Cache-Control no-store always;
            return 303 /storefront/?order=\$arg_order;
        }

        location ~ "^/api/internet-orders/(.+)/card\$" {
            gzip         off;
            ocdz_card    \$1;
            ocdz_session db;
            $card
        }
EOF
}

1;

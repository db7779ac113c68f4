package Ocdz::Test;

# Test harness for ngx_http_ocdz_module: throwaway PostgreSQL clusters,
# the mock OneClickDz upstream, nginx instances, and small helpers.
#
# Perl 5.36 core only. Every process started here (postgres, the mock,
# nginx) is stopped when the object goes away, at done_testing, or in an
# END block, even when the test dies.
#
#   use Test::More;
#   use Ocdz::Test qw(:all);
#
#   my $pg   = Ocdz::Test::Pg->start;
#   my $mock = Ocdz::Test::Mock->start;
#   my $ngx  = Ocdz::Test::Nginx->new(conf => <<'EOF', vars => {...});
#   http {
#       ocdz_db "%%PGCONNINFO%%";
#       server { listen 127.0.0.1:%%PORT%%; ... }
#   }
#   EOF
#   $ngx->start;
#   my ($status, $headers, $body) = $ngx->http_get('/card/...');
#   done_testing;      # nginx error logs are checked here (assertions)
#
# This module is the front door: it loads every part of the harness and
# exports their everyday functions. Each concern lives in its own module
# under Ocdz/Test/ (the map is in the POD at the end); a new helper goes
# into the module of its concern, and here only if every test needs it.

use v5.36;
use Exporter qw(import);
use Ocdz::Test::Env qw(:all);
use Ocdz::Test::Files qw(:all);
use Ocdz::Test::Proc qw(:all);
use Ocdz::Test::Data qw(:all);
use Ocdz::Test::Secrets qw(:all);
use Ocdz::Test::PKI qw(:all);
use Ocdz::Test::HTTP qw(curl_https);
use Ocdz::Test::Pg ();
use Ocdz::Test::Mock ();
use Ocdz::Test::Nginx ();

our @EXPORT_OK = qw(
    repo_root module_path tool_path nginx_bin have_module require_module
    free_port tmpdir write_file replace_file slurp append_file
    random_hex random_card_code random_topup_id random_token
    write_key_file sha256_hex sha256_raw hmac_sha256_raw jwt_hs256 b64url
    secret_forms assert_no_secret find_secret wait_until run_cmd
    json_encode json_decode pki sql_quote curl_https
    run_mode under_valgrind under_asan single_process slow_factor
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

1;

__END__

=head1 NAME

Ocdz::Test - harness for the ngx_http_ocdz_module tests

=head1 SYNOPSIS

    use Test::More;
    use Ocdz::Test qw(:all);
    require_module();

    my $pg   = Ocdz::Test::Pg->start;                 # own cluster
    my $mock = Ocdz::Test::Mock->start;               # HTTPS upstream
    my $dir  = tmpdir();
    write_key_file("$dir/k1");
    my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock,
        vars => { DIR => $dir }, conf => <<'EOF');
    http {
        ocdz_db "%%PGCONNINFO%%";
        ocdz_card_key k1 %%DIR%%/k1;
        ocdz_api_base %%MOCK_BASE%%;
        ocdz_api_ca_file %%CA_FILE%%;
        ocdz_api_token_file %%TOKEN_FILE%%;
        server {
            listen 127.0.0.1:%%PORT%%;
            location ~ "^/card/([0-9a-f]{24})$" { ocdz_card $1; }
        }
    }
    EOF
    $ngx->start;
    my ($status, $h, $body) = $ngx->http_get("/card/$id",
        headers => { Authorization => "Bearer $token" });
    done_testing;

Use C<done_testing> (not a fixed plan): every nginx instance still
running is stopped there and its error log checked, which adds one
assertion per instance.

=head1 MODULES

C<use Ocdz::Test qw(:all)> loads all of them and exports the functions
marked (:all) below; the others are imported from their module by name.

  Ocdz::Test::Env        where things are, the run mode (:all)
      repo_root module_path tool_path nginx_bin have_module
      require_module                plan skip_all unless the .so exists
      run_mode ('' 'asan' 'valgrind')  under_asan under_valgrind
      single_process                valgrind: no master, no workers
      slow_factor                   every wait is multiplied by it
      PG_BIN PYTHON                 (by name)
  Ocdz::Test::Files      (:all)
      tmpdir  write_file($path, $content, $mode)  append_file
      slurp($path, $from_offset)
  Ocdz::Test::Proc       processes (:all)
      run_cmd(\@cmd, stdin=>, env=>{}, timeout=>120, cwd=>)
                                    -> (exit code, stdout, stderr); 124 on
                                    timeout
      wait_until(sub {...}, timeout=>10, interval=>0.05)
                                    -> the sub's value or 0
      free_port
      register_cleanup($obj, $rank) (by name) a server stopped at the end
      exit_status($?)               (by name) 128 + signal, or exit code
  Ocdz::Test::Data       values (:all)
      random_hex($nbytes=16)  random_card_code($digits=16)  random_topup_id
      random_token($nbytes=32)  b64url($bytes)
      write_key_file($path, hex=>, newline=>1, mode=>0644) -> the hex (0600)
      sha256_hex  sha256_raw  hmac_sha256_raw($data, $key)
      jwt_hs256($secret, \%claims, header=>{...}, signature=>'...')
      json_encode (canonical, UTF-8)  json_decode (undef if not JSON)
      sql_quote($value)             'quoted' or NULL
  Ocdz::Test::Secrets    (:all)
      secret_forms($secret)         {raw hex HEX b64_0.. b64url_0..}
      find_secret($text, @secrets)  description of the first hit, or undef
      assert_no_secret($name, $text, @secrets)   one ok()
  Ocdz::Test::PKI        (:all)
      pki()                         {ca_cert ca_key server_cert server_key
                                     rogue_cert rogue_key wrongname_cert
                                     wrongname_key client_cert client_key dir}
  Ocdz::Test::HTTP       clients
      curl_https($url, headers=>{}, method=>, data=>, cacert=>, insecure=>1,
                 timeout=>20, extra=>[curl args])   (:all)
                                    -> (status, {lc header => value}, body);
                                    status 0 and ':curl_exit' on failure
      http_request($method, $path, port=>N, ...)   (by name) see
                                    Ocdz::Test::Nginx's http
      parse_response($bytes, $method)   (by name) {status headers body raw}
  Ocdz::Test::Pg         a PostgreSQL cluster (its POD)
  Ocdz::Test::Mock       the mock OneClickDz API (its POD)
  Ocdz::Test::Nginx      an nginx instance (its POD)
  Ocdz::Test::Sanitizer  ASan / valgrind: nginx's environment, wrapper,
                         and the reports that concern the module

Beside the harness, t/lib/Ocdz/ has helpers of groups of test files:
Ocdz::Card (card endpoint tests), Ocdz::Poller (poller tests: the
configuration and waits on orders), Ocdz::Load (background clients).

=head1 ENVIRONMENT

OCDZ_MODULE, OCDZ_TOOL (default ../build/... from t/), OCDZ_NGINX
(/usr/sbin/nginx), OCDZ_TEST_TIMEOUT (900 s, then the test exits and
cleans up), OCDZ_KEEP_TMP=1 keeps the temporary directories,
OCDZ_SLOW multiplies waits, OCDZ_ASAN=1 / OCDZ_VALGRIND=1 (set by the
Makefile), MOCK_VERBOSE=1 makes the mock log every request to its log.

=cut

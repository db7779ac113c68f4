package Ocdz::Test::Env;

# Where the pieces under test are and how the suite runs them: the
# built module and tool, Debian's nginx, PostgreSQL's binaries, and the
# run mode the Makefile chose (plain, ASan, valgrind) with the factor
# every wait is stretched by.

use v5.36;
use Cwd qw(abs_path getcwd);
use File::Spec ();
use Exporter qw(import);
use File::Basename qw(dirname);
use Test::More ();

our @EXPORT_OK = qw(
    repo_root module_path tool_path nginx_bin have_module require_module
    run_mode under_valgrind under_asan single_process slow_factor
    PG_BIN PYTHON
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

use constant PG_BIN   => '/usr/lib/postgresql/15/bin';
use constant PYTHON   => '/usr/bin/python3';

# at load time: a test may chdir later
my $ROOT = abs_path(dirname(__FILE__) . '/../../../..');
my $CWD = getcwd();

sub repo_root { $ROOT }

# OCDZ_MODULE and OCDZ_TOOL may be relative to where the test started
# (OCDZ_MODULE=../build/... from t/): nginx would take a relative
# load_module path from its own prefix.
sub _from_start ($path) {
    return defined $path ? File::Spec->rel2abs($path, $CWD) : undef;
}

sub module_path {
    return _from_start($ENV{OCDZ_MODULE})
        // repo_root() . '/build/ngx_http_ocdz_module.so';
}

sub tool_path {
    return _from_start($ENV{OCDZ_TOOL}) // repo_root() . '/build/ocdz-card';
}

sub nginx_bin { $ENV{OCDZ_NGINX} // '/usr/sbin/nginx' }

sub have_module { -f module_path() }

# plan skip_all when the module is not built (running one .t by hand);
# `make test-functional` always builds it first.
sub require_module {
    return 1 if have_module();
    Test::More::plan(skip_all => 'module not built: ' . module_path());
}

# Run modes, from the Makefile: OCDZ_ASAN=1 (module built with ASan and
# UBSan, libasan preloaded into nginx), OCDZ_VALGRIND=1 (nginx under
# valgrind, master_process off: one process, no workers).
sub under_valgrind { !!$ENV{OCDZ_VALGRIND} }
sub under_asan     { !!$ENV{OCDZ_ASAN} }
sub single_process { under_valgrind() }
sub run_mode {
    return under_valgrind() ? 'valgrind' : under_asan() ? 'asan' : '';
}

# Timeouts in waits are multiplied by this (OCDZ_SLOW overrides).
sub slow_factor {
    return $ENV{OCDZ_SLOW} // (under_valgrind() ? 10 : under_asan() ? 3 : 1);
}

1;

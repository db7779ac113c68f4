package Ocdz::Test::Sanitizer;

# nginx under the run modes of the Makefile: with the module built with
# ASan and UBSan (OCDZ_ASAN=1: libasan preloaded, reports written to the
# instance's logs directory) or under valgrind (OCDZ_VALGRIND=1), and
# the reports of those tools that concern the module.

use v5.36;
use Carp qw(croak);
use Exporter qw(import);
use Ocdz::Test::Env qw(under_asan under_valgrind);
use Ocdz::Test::Files qw(tmpdir write_file slurp);
use Ocdz::Test::Proc qw(run_cmd);

our @EXPORT_OK = qw(sanitizer_env sanitizer_wrapper sanitizer_reports);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# A preloaded dlclose() that does nothing: nginx unloads modules at exit,
# and leak reports would lose the module's symbols. Built once.
sub _noclose_so {
    state $so;
    return $so if $so;
    my $d = tmpdir();
    write_file("$d/noclose.c",
               "int dlclose(void *handle) { (void) handle; return 0; }\n");
    my ($rc, $out, $err) = run_cmd(['cc', '-shared', '-fPIC', '-O2',
                                    '-o', "$d/noclose.so", "$d/noclose.c"]);
    croak "building noclose.so: $err" if $rc;
    return $so = "$d/noclose.so";
}

# The environment nginx needs in this run mode (a hash ref): under ASan
# the preloaded runtime, and reports written to $logs; else nothing.
sub sanitizer_env ($logs) {
    return {} unless under_asan();
    my $asan = $ENV{OCDZ_ASAN_LIB}
        // '/usr/lib/x86_64-linux-gnu/libasan.so.8';
    my %e = (
        LD_PRELOAD => "$asan:" . _noclose_so(),
        # exitcode=0: nginx leaks by design at exit, and a master
        # exiting 23 would fail every quit; errors and our leaks are
        # found in the reports (see sanitizer_reports)
        ASAN_OPTIONS => "log_path=$logs/asan:abort_on_error=0:exitcode=0"
            . ':detect_leaks=1:fast_unwind_on_malloc=0'
            . ':malloc_context_size=30:detect_odr_violation=0',
        LSAN_OPTIONS => 'report_objects=0',
        UBSAN_OPTIONS => "log_path=$logs/ubsan:print_stacktrace=1"
            . ':halt_on_error=1',
    );
    $e{ASAN_SYMBOLIZER_PATH} = '/usr/bin/llvm-symbolizer'
        if -x '/usr/bin/llvm-symbolizer';
    return \%e;
}

# The command nginx runs under in this run mode (an array ref): valgrind
# writing to $logs, or nothing.
sub sanitizer_wrapper ($logs) {
    return [] unless under_valgrind();
    return ['valgrind', '--quiet', '--trace-children=no',
            "--log-file=$logs/valgrind.%p",
            '--leak-check=full', '--show-leak-kinds=definite',
            '--errors-for-leak-kinds=definite', '--keep-debuginfo=yes',
            '--num-callers=30', '--track-origins=yes'];
}

# Sanitizer and valgrind reports in $logs that concern us: every
# ASan/UBSan error; leaks and valgrind errors only when a frame is the
# module's (nginx leaks by design at exit). OCDZ_VALGRIND_STRICT=1:
# every valgrind error.
sub sanitizer_reports ($logs) {
    my @bad;
    my $ours = qr/ocdz/;
    for my $f (sort(glob("$logs/asan.*")), sort(glob("$logs/ubsan.*"))) {
        my $text = slurp($f);
        for my $block (split /\n\s*\n/, $text) {
            if ($block =~ /(Direct|Indirect) leak of/) {
                # a block of an nginx pool (the cycle's, which nginx
                # never frees at exit) is nginx's, whoever asked for it
                next if $block =~ /#1 0x\S+ in ngx_memalign /
                     || $block =~ /#1 0x\S+ in ngx_alloc .*\n.*#2 0x\S+  \(/;
                push @bad, "$f: $block" if $block =~ $ours;
            } elsif ($block =~ /ERROR:[ ]AddressSanitizer|runtime[ ]error:
                               |ERROR:[ ]LeakSanitizer:[ ](?!detected)/x) {
                push @bad, "$f: $block";
            }
        }
    }
    for my $f (sort glob("$logs/valgrind.*")) {
        (my $text = slurp($f)) =~ s/^==\d+== ?//mg;
        for my $block (split /\n\s*\n/, $text) {
            next unless $block =~ /definitely[ ]lost|Invalid[ ](read|write|free)
                                  |uninitialised|Mismatched|Syscall[ ]param
                                  |overlap|Jump[ ]to[ ]the[ ]invalid/x;
            next if $block =~ /^\s*(LEAK|HEAP|ERROR) SUMMARY/m;
            push @bad, "$f: $block"
                if $block =~ $ours || $ENV{OCDZ_VALGRIND_STRICT};
        }
    }
    return @bad;
}

1;

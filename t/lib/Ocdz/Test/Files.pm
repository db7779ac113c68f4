package Ocdz::Test::Files;

# Temporary directories (kept with OCDZ_KEEP_TMP=1) and whole-file
# reads and writes, byte for byte.

use v5.36;
use Carp qw(croak);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp ();

our @EXPORT_OK = qw(tmpdir write_file replace_file append_file slurp);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

sub tmpdir (%o) {
    my $d = File::Temp::tempdir('ocdz-test-XXXXXX', TMPDIR => 1,
                                CLEANUP => !$ENV{OCDZ_KEEP_TMP});
    chmod 0755, $d;
    return $d;
}

sub write_file ($path, $content, $mode = undef) {
    make_path(dirname($path));
    open my $fh, '>:raw', $path or croak "write $path: $!";
    print $fh $content;
    close $fh or croak "close $path: $!";
    chmod $mode, $path if defined $mode;
    return $path;
}

# For a file a running helper reads again (the test DNS server's mode,
# the forwarder's target): it sees the old content or the new, never the
# empty file between write_file's truncation and its write.
sub replace_file ($path, $content) {
    my $tmp = "$path.new.$$";

    write_file($tmp, $content);
    rename $tmp, $path or croak "rename $tmp: $!";
    return $path;
}

sub append_file ($path, $content) {
    open my $fh, '>>:raw', $path or croak "append $path: $!";
    print $fh $content;
    close $fh;
}

sub slurp ($path, $from = 0) {
    open my $fh, '<:raw', $path or return '';
    seek $fh, $from, 0 if $from;
    local $/;
    my $c = <$fh>;
    return $c // '';
}

1;

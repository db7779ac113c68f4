# ocdz-card --password-file: the tool connects as the module's role with
# the very file nginx reads for ocdz_db_password_file (the password never
# in argv nor in the environment); the file's rules are nginx's: white
# space around the password ignored, NUL bytes, empty and oversized
# files refused, a warning when group or others may read it. The
# password is never printed.

use v5.36;
use Test::More;
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);

require_module();
plan skip_all => 'ocdz-card not built: ' . tool_path() unless -x tool_path();

my $password = 'pw_' . random_hex(12);
my $env = card_env(pg => { password => $password, log_statement => 'none' });
my $pg = $env->{pg};
my $dir = $env->{dir};
my $db = $pg->conninfo;                 # user=ocdz_module, no password
my @k1c = ('-k', "k1:$env->{keys}{k1}:current");
my @out;

sub run_tool ($args, %o) {
    my ($rc, $out, $err) = tool($args, %o,
                                env => { PGPASSWORD => undef,
                                         PGPASSFILE => '/nonexistent' });
    push @out, $out . $err;
    return ($rc, $out, $err);
}

# the file nginx reads, with the white space an editor leaves
my $file = write_file("$dir/db-password", "  $password \r\n\n", 0600);

# nginx with the same file reveals what the tool stores
my $ngx = card_nginx($env, db => $db,
                     http => "ocdz_db_password_file $file;");
my $tok = $pg->add_session(random_token(), 'u1');

{
    my $id = new_order($env, user_id => 'u1');
    fulfil($env, $id);
    my $code = random_card_code();
    push @{ $env->{codes} }, $code;
    my ($rc, $out, $err) = run_tool(['store', @k1c, '--db', $db,
        '--password-file', $file, '--topup-id', $id], stdin => "$code\n");
    is $rc, 0, 'store as ocdz_module with --password-file' or diag $err;
    my ($s, undef, $j) = card_get($ngx, $id, token => $tok);
    is $s, 200, 'nginx, reading the same file, reveals it';
    is $j && $j->{cardCode}, $code, '... the card stored';

    ($rc, $out, $err) = run_tool(['reencrypt', @k1c, '--db', $db,
                                  '--password-file', $file]);
    is $rc, 0, 'reencrypt with --password-file' or diag $err;
    like $out, qr/converted: 0, already current: 1, failed: 0/,
        '... finds the card current';
}

{
    my ($rc, $out, $err) = run_tool(['reencrypt', @k1c, '--db', $db]);
    is $rc, 1, 'without --password-file: exit 1';
    like $err, qr/--password-file/, '... and it says how to give one';
}

{
    my $wrong = write_file("$dir/wrong", 'pw_' . random_hex(12) . "\n", 0600);
    my ($rc, $out, $err) = run_tool(['reencrypt', @k1c, '--db', $db,
                                     '--password-file', $wrong]);
    is $rc, 1, 'a wrong password: exit 1';
    like $err, qr/password authentication failed/, '... PostgreSQL says why';
}

{
    my $open = write_file("$dir/open", "$password\n", 0644);
    my ($rc, $out, $err) = run_tool(['reencrypt', @k1c, '--db', $db,
                                     '--password-file', $open]);
    is $rc, 0, 'a file others can read still works';
    like $err, qr/warning: password file \Q$open\E can be read by group or others/,
        '... with a warning';
}

# files nginx refuses are refused, before any connection
my %bad = (
    nul     => [write_file("$dir/nul", "$password\0x", 0600), qr/NUL byte/],
    empty   => [write_file("$dir/empty", " \n\t\r\n", 0600), qr/is empty/],
    large   => [write_file("$dir/large", 'x' x 1025, 0600), qr/too large/],
    missing => ["$dir/none", qr/cannot open password file/],
    dir     => [$dir, qr/not a regular file/],
);
for my $case (sort keys %bad) {
    my ($f, $re) = @{ $bad{$case} };
    my ($rc, $out, $err) = run_tool(['reencrypt', @k1c, '--db', $db,
                                     '--password-file', $f]);
    is $rc, 1, "password file $case: exit 1";
    like $err, $re, '... says why';
}

{
    my ($rc, $out, $err) = run_tool(['encrypt', @k1c, '--topup-id',
        random_topup_id(), '--password-file', $file], stdin => "x\n");
    is $rc, 2, 'encrypt takes no --password-file (usage error)';
    ($rc, $out, $err) = run_tool(['reencrypt', @k1c, '--db', $db,
                                  '--password-file']);
    is $rc, 2, '--password-file without a file: usage error';
}

assert_no_secret('everything the tool printed', join("\n", @out), $password);
hygiene($env, $ngx);

done_testing;

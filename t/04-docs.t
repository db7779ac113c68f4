# The documentation and the packaging agree with the code, read from the
# sources (no nginx, no database):
#
# - every directive of the module's command tables has a README entry in
#   nginx's reference form (### name, then Syntax/Default/Context lines),
#   its Context exactly the NGX_HTTP_*_CONF flags, its Syntax the number
#   of arguments the NGX_CONF_* flags allow; no entry documents a
#   directive that does not exist;
# - every variable the module adds has an entry, and only those;
# - every Default: line is what ngx_http_ocdz_module.h's
#   NGX_HTTP_OCDZ_DEFAULT_* block (the one place defaults are set) says,
#   and a directive without one there is documented without a default;
# - NGX_HTTP_OCDZ_VERSION, the one place the version is set, is the
#   version of debian/changelog's newest entry;
# - set-up never drives a service: the Makefile, .ci/ and debian/ call no
#   systemctl, service, invoke-rc.d, update-rc.d or deb-systemd-*.

use v5.36;
use Test::More;
use Ocdz::Test qw(repo_root slurp);

my $root = repo_root();
my @c_files = ("$root/ngx_http_ocdz_module.c", glob("$root/src/nginx/*.c"));

# --- the code ----------------------------------------------------------------

my (%cmd, %var);
for my $f (@c_files) {
    my $src = slurp($f);
    while ($src =~ /ngx_command_t\s+\w+\[\]\s*=\s*\{(.*?)ngx_null_command/sg) {
        my $table = $1;
        while ($table =~ /\{\s*ngx_string\("(\w+)"\)\s*,\s*([A-Z0-9_|\s]+?)\s*,/g)
        {
            my ($name, $flags) = ($1, $2);
            $flags =~ s/\s+//g;
            $cmd{$name} = { flags => [split /\|/, $flags], file => $f };
        }
    }
    while ($src =~ /ngx_http_variable_t\s+\w+\[\]\s*=\s*\{(.*?)ngx_http_null_variable/sg)
    {
        my $table = $1;
        $var{$1} = 1 while $table =~ /ngx_string\("(\w+)"\)/g;
    }
}

# NGX_HTTP_OCDZ_DEFAULT_<NAME>: the one place each default is set; the
# comment (or a string's own text) is the value as README writes it
my (%default, %bad_comment);

# a number as nginx.conf writes it: on/off, a count, or a time whose
# macro holds milliseconds (ngx_msec_t) or seconds (time_t)
sub comment_agrees ($num, $text) {
    return $num == ($text eq 'on' ? 1 : 0) if $text =~ /^(?:on|off)$/;
    return $num == $text if $text =~ /^\d+$/;
    my %ms = (ms => 1, s => 1000, m => 60_000, h => 3_600_000);
    my ($n, $u) = $text =~ /^(\d+)(ms|s|m|h)$/ or return 0;
    return $num == $n * $ms{$u} || $num == $n * $ms{$u} / 1000;
}

{
    my $h = slurp("$root/ngx_http_ocdz_module.h");
    while ($h =~ /^#define\s+NGX_HTTP_OCDZ_DEFAULT_(\w+)\s+(.*?)\s*$/mg) {
        my ($n, $v) = ('ocdz_' . lc $1, $2);
        if ($v =~ m{^(\d+)\s+/\*\s*(.*?)\s*\*/}) {
            my ($num, $text) = ($1, $2);
            $bad_comment{$n} = "$num vs $text"
                unless comment_agrees($num, $text);
            $v = $text;
        }
        elsif ($v =~ m{/\*\s*(.*?)\s*\*/}) { $v = $1 }
        elsif ($v =~ /^"(.*)"$/) { $v = $1 }
        else { $v = undef }
        $default{$n} = $v;
    }
}
is_deeply \%bad_comment, {}, 'every default\'s comment says the value '
    . 'the macro holds';
cmp_ok scalar(keys %default), '>=', 25, 'the defaults were read ('
    . scalar(keys %default) . ')';

cmp_ok scalar(keys %cmd), '>=', 40, 'the command tables were read ('
    . scalar(keys %cmd) . ' directives)';
cmp_ok scalar(keys %var), '>=', 3, 'the variables were read';

# --- the README ---------------------------------------------------------------

my $readme = slurp("$root/README.md");
my ($ref) = $readme =~ /^## Directives\n(.*?)^## (?!#)/ms;
ok defined $ref, 'README has a "## Directives" section' or BAIL_OUT('no reference');
my ($vars) = $readme =~ /^## Embedded variables\n(.*?)^## (?!#)/ms;
ok defined $vars, 'README has an "## Embedded variables" section';

my %doc;
for my $entry (split /^### /m, $ref) {
    my ($name) = $entry =~ /\A(\S+)\n/ or next;
    $doc{$name} = $entry;
}

my %ctx_word = (NGX_HTTP_MAIN_CONF => 'http', NGX_HTTP_SRV_CONF => 'server',
                NGX_HTTP_LOC_CONF => 'location');
my @ctx_order = qw(http server location);

# required and optional argument counts, and "...", of a Syntax line
sub arity ($args) {
    (my $a = $args) =~ s/\s*\|\s*/|/g;
    my ($req, $opt, $more) = (0, 0, 0);
    for my $t (split ' ', $a) {
        if ($t eq '...') { $more = 1 }
        elsif ($t =~ /^\[.*\]$/) { $opt++ }
        else { $req++ }
    }
    return ($req, $opt, $more);
}

my %want_arity = (NGX_CONF_TAKE1 => [1, 0, 0], NGX_CONF_TAKE12 => [1, 1, 0],
                  NGX_CONF_TAKE2 => [2, 0, 0], NGX_CONF_TAKE23 => [2, 1, 0],
                  NGX_CONF_TAKE3 => [3, 0, 0],
                  NGX_CONF_TAKE123 => [1, 2, 0], NGX_CONF_1MORE => [1, 0, 1],
                  NGX_CONF_FLAG => [1, 0, 0], NGX_CONF_NOARGS => [0, 0, 0]);

for my $name (sort keys %cmd) {
    my @flags = @{ $cmd{$name}{flags} };
    subtest "directive $name" => sub {
        my $e = $doc{$name};
        ok defined $e, 'has a "### ' . $name . '" entry' or return;
        like $e, qr/\A\Q$name\E\n\n    Syntax:  \S.*;\n    Default: .*\n    Context: .*\n\n\S/,
            'the entry starts with the Syntax, Default and Context lines '
            . 'and a paragraph follows';
        my ($syntax) = $e =~ /^    Syntax:  (.*)$/m;
        my ($default) = $e =~ /^    Default: (.*)$/m;
        my ($context) = $e =~ /^    Context: (.*)$/m;
        $_ //= '' for $syntax, $default, $context;

        my $want = join ', ', grep { my $w = $_;
            grep { ($ctx_word{$_} // '') eq $w } @flags } @ctx_order;
        is $context, $want, "Context: $want (the NGX_HTTP_*_CONF flags)";

        like $syntax, qr/^\Q$name\E(?: (.+))?;$/, 'Syntax names the directive';
        my ($args) = $syntax =~ /^\Q$name\E(?: (.+))?;$/;
        $args //= '' if $syntax =~ /^\Q$name\E;$/;    # NGX_CONF_NOARGS
        my ($take) = grep { $want_arity{$_} } @flags;
        ok $take, 'an NGX_CONF_* argument flag the test knows';
        if ($take && defined $args) {
            is_deeply [arity($args)], $want_arity{$take},
                "Syntax arguments fit $take";
            is $args, 'on | off', 'a flag is "on | off"'
                if $take eq 'NGX_CONF_FLAG';
        }
        ok $default eq '—' || $default =~ /^\Q$name\E \S.*;$/,
            'Default: "—" or the directive with its value';
        if ($take && $take eq 'NGX_CONF_FLAG') {
            like $default, qr/^\Q$name\E (on|off);$/, 'a flag defaults to on or off';
        }
        if (exists $default{$name}) {
            ok defined $default{$name}, "NGX_HTTP_OCDZ_DEFAULT for $name "
                . 'says its value in a comment' or return;
            my $v = $default{$name};
            # several words are several arguments of an NGX_CONF_1MORE
            $v = qq{"$v"} if $v eq ''
                || ($v =~ /\s/ && !grep { $_ eq 'NGX_CONF_1MORE' } @flags);
            is $default, "$name $v;", "Default: as the code sets it ($v)";
        } else {
            is $default, '—', 'no default in the code: "—"';
        }
    };
}

for my $name (sort keys %doc) {
    ok $cmd{$name}, "the entry $name documents a directive of the module";
}

my %vdoc = map { $_ => 1 } $vars =~ /^### \$(\S+)$/mg;
for my $v (sort keys %var) {
    ok $vdoc{$v}, "variable \$$v has an entry";
}
for my $v (sort keys %vdoc) {
    ok $var{$v}, "the entry \$$v documents a variable of the module";
}

# --- the version ---------------------------------------------------------------

my ($version) = slurp("$root/ngx_http_ocdz_module.h")
    =~ /^#define NGX_HTTP_OCDZ_VERSION\s+"([^"]*)"/m;
like $version // '', qr/^\d+\.\d+\.\d+$/,
    'NGX_HTTP_OCDZ_VERSION is set, as x.y.z';
my ($pkg, $deb_version) = slurp("$root/debian/changelog")
    =~ /\A(\S+) \(([^)]+)\)/;
is $pkg, 'libnginx-mod-http-ocdz', 'debian/changelog is the package\'s';
(my $upstream = $deb_version // '') =~ s/^\d+://;
$upstream =~ s/-[^-]+$//;
is $upstream, $version, "debian/changelog's newest entry is version $version";
my @defs = grep { /VERSION\S*\s+"\d+\.\d+\.\d+"/ } map { split /\n/, slurp($_) }
    @c_files, "$root/ngx_http_ocdz_module.h", glob("$root/src/*/*.h"),
    "$root/tools/ocdz-card.c";
is scalar(@defs), 1, 'one version string in the sources';

# --- set-up touches no service ---------------------------------------------------

my @setup = ("$root/Makefile", glob("$root/.ci/*"), glob("$root/debian/*"),
             glob("$root/debian/source/*"));
my $svc = qr/\b(systemctl|invoke-rc\.d|update-rc\.d|deb-systemd-invoke|deb-systemd-helper|start-stop-daemon)\b|\bservice\s+[\w.@-]+\s+(start|stop|restart|reload|force-reload|try-restart)\b/;
for my $f (grep { -f } @setup) {
    my @hits;
    my $n = 0;
    for my $line (split /\n/, slurp($f)) {
        $n++;
        next if $line =~ /^\s*#/;
        push @hits, "$n: $line" if $line =~ $svc;
    }
    (my $short = $f) =~ s/^\Q$root\E\///;
    is_deeply \@hits, [], "$short drives no service" or diag join "\n", @hits;
}

done_testing;

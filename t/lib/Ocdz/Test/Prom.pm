package Ocdz::Test::Prom;

# The Prometheus text format (0.0.4) of ocdz_status, read strictly
# (t/70-status.t, t/87-outbox-status.t).

use v5.36;
use Exporter qw(import);

our @EXPORT_OK = qw(parse_prom);

# A strict reader of the text format 0.0.4: HELP and TYPE once per
# family, before its samples; every sample of a declared family; label
# values quoted and escaped; histogram buckets cumulative, ending +Inf
# = _count. Returns { 'name{labels}' => value }, or dies.
sub parse_prom ($text) {
    die "no final newline\n" unless $text =~ /\n\z/;
    my (%m, %type, %help, %seen_family, $family);
    for my $line (split /\n/, $text) {
        if ($line =~ /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/) {
            die "HELP twice: $1\n" if $help{$1}++;
            next;
        }
        if ($line =~ /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/) {
            die "TYPE twice: $1\n" if $type{$1};
            die "TYPE after samples: $1\n" if $seen_family{$1};
            $type{$1} = $2;
            $family = $1;
            next;
        }
        die "comment: $line\n" if $line =~ /^#/;
        $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9.]+(?:e[+-]?\d+)?|\+Inf)$/
            or die "bad sample line: $line\n";
        my ($name, $labels, $v) = ($1, $2 // '', $3);
        my $fam = $name =~ s/_(bucket|sum|count)$//r;
        $fam = $name unless $type{$fam} && $type{$fam} eq 'histogram';
        die "sample of an undeclared family: $name\n" unless $type{$fam};
        die "sample out of its family: $name\n"
            unless defined $family && $fam eq $family;
        $seen_family{$fam} = 1;
        die "counter without _total: $name\n"
            if $type{$fam} eq 'counter' && $name !~ /_total$/;
        die "negative: $line\n" if $v < 0;
        die "twice: $name$labels\n" if exists $m{"$name$labels"};
        $m{"$name$labels"} = $v;
    }
    # each histogram of a family by its other labels (channel="sms",)
    for my $h (grep { $type{$_} eq 'histogram' } keys %type) {
        my %series;
        for (keys %m) {
            push @{ $series{$1} }, [$2, $m{$_}]
                if /^\Q$h\E_bucket\{((?:[a-z_]+="[^"]*",)*)le="([^"]+)"\}$/;
        }
        die "$h: no buckets\n" unless %series;
        for my $l (keys %series) {
            my @b = sort { ($a->[0] eq '+Inf' ? 9e99 : $a->[0])
                           <=> ($b->[0] eq '+Inf' ? 9e99 : $b->[0]) }
                    @{ $series{$l} };
            my $k = $l eq '' ? '' : '{' . substr($l, 0, -1) . '}';
            die "$h$k: no +Inf\n" unless $b[-1][0] eq '+Inf';
            for my $i (1 .. $#b) {
                die "$h$k: buckets not cumulative\n"
                    if $b[$i][1] < $b[$i - 1][1];
            }
            die "$h$k: +Inf != _count\n"
                if $b[-1][1] != ($m{"${h}_count$k"} // -1);
            die "$h$k: no _sum\n" unless exists $m{"${h}_sum$k"};
        }
    }
    return \%m;
}

1;

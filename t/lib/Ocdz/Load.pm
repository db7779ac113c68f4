package Ocdz::Load;

# Background load for the reliability tests (t/30-59): forked clients
# send requests in a loop while the test injects faults, check every
# answer in the child, and record one line per answer in a file, so the
# test judges all of them afterwards (statuses, bodies, how long each
# took).
#
#   use Ocdz::Load;
#   my $load = Ocdz::Load->start($ngx, clients => 4, requests => [
#       { name => 'card', path => "/api/internet-orders/$id/card",
#         headers => { Authorization => "Bearer $tok" },
#         check => sub ($status, $headers, $json, $raw) {
#             return $status == 200 ? undef : "status $status";
#         } },
#   ]);
#   ... faults ...
#   my @r = $load->stop;     # ({t, name, status, el, flag, err}, ...)
#
# A check returns undef for a good answer or a short reason; it never
# sees a test object (it runs in the child). Children exit with
# POSIX::_exit, so no test harness cleanup runs there.

use v5.36;
use Carp qw(croak);
use POSIX ();
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(:all);

# Options:
#   clients => N           processes (default 4)
#   requests => [..]       {name, method (GET), path, headers {..} or
#                          [[n, v]..], raw, port, check}; each client
#                          goes round them from its own offset
#   timeout => SECONDS     per request (default 30, times slow_factor:
#                          a hang shows as status 0 after this long)
#   pause => SECONDS       between requests of one client (default 0)
#   max_seconds => N       clients stop by themselves after this (600)
#   flag_file => PATH      each answer records whether PATH existed once
#                          it was complete (field flag): a test makes the
#                          file, then acts (QUIT...); an answer with flag
#                          0 was complete before, whatever the clocks say
sub start ($class, $ngx, %o) {
    my $self = bless { dir => tmpdir(), kids => [], owner => $$ }, $class;
    my $reqs = $o{requests} or croak 'Ocdz::Load: no requests';
    my $n = $o{clients} // 4;
    $self->{stop} = "$self->{dir}/stop";
    for my $i (1 .. $n) {
        my $file = "$self->{dir}/client.$i";
        write_file($file, '');
        my $pid = fork // croak "fork: $!";
        if (!$pid) {
            _client($ngx, $reqs, $i, $file, $self->{stop}, \%o);
            POSIX::_exit(0);
        }
        push @{ $self->{kids} }, [$pid, $file];
    }
    $self->{started} = time;
    return $self;
}

sub _client ($ngx, $reqs, $i, $file, $stop, $o) {
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE ALRM);
    $SIG{PIPE} = 'IGNORE';
    alarm 0;
    srand($$ ^ int(time * 1000));
    open my $fh, '>>', $file or POSIX::_exit(1);
    $fh->autoflush(1);
    my $deadline = time + ($o->{max_seconds} // 600);
    my $k = $i - 1;
    while (!-e $stop && time < $deadline) {
        my $rq = $reqs->[$k++ % @$reqs];
        my $t0 = time;
        my ($s, $h, $body) = $ngx->http($rq->{method} // 'GET',
            $rq->{path}, headers => $rq->{headers} // {},
            timeout => $o->{timeout} // 30,
            defined $rq->{raw} ? (raw => $rq->{raw}) : (),
            defined $rq->{port} ? (port => $rq->{port}) : ());
        my $el = time - $t0;
        my $flag = defined $o->{flag_file} && -e $o->{flag_file} ? 1 : 0;
        my $json = json_decode($body);
        my $err = $s == 0 ? 'no answer: ' . ($h->{':error'} // '?')
                : $rq->{check} ? $rq->{check}->($s, $h, $json, $body)
                : undef;
        $err //= '';
        $err =~ s/[\t\n]/ /g;
        printf $fh "%.3f\t%s\t%d\t%.3f\t%d\t%s\n", $t0,
            $rq->{name} // 'req', $s, $el, $flag, $err;
        sleep $o->{pause} if $o->{pause};
    }
    close $fh;
}

sub _parse ($self) {
    my @r;
    for my $k (@{ $self->{kids} }) {
        for my $l (split /\n/, slurp($k->[1])) {
            my ($t, $name, $s, $el, $flag, $err) = split /\t/, $l, 6;
            next unless defined $flag;
            push @r, { t => $t, name => $name, status => $s, el => $el,
                       flag => $flag, err => $err // '' };
        }
    }
    my @sorted = sort { $a->{t} <=> $b->{t} } @r;
    return @sorted;             # a count in scalar context
}

# The answers so far (the clients keep going).
sub results ($self) { $self->_parse }

# Answers to requests started at or after epoch $t (for "recovered").
sub since ($self, $t) { grep { $_->{t} >= $t } $self->_parse }

# Stops the clients (waits for their last request) and returns every
# answer, oldest first.
sub stop ($self, %o) {
    return @{ $self->{results} } if $self->{results};
    write_file($self->{stop}, '');
    my $deadline = time + ($o{timeout} // 60);
    for my $k (@{ $self->{kids} }) {
        while (waitpid($k->[0], POSIX::WNOHANG()) == 0) {
            if (time > $deadline) {
                kill 'KILL', $k->[0];
                waitpid($k->[0], 0);
                last;
            }
            sleep 0.05;
        }
    }
    $self->{results} = [ $self->_parse ];
    return @{ $self->{results} };
}

# Waits until the last $n answers (of requests started after now) all
# satisfy $ok (a sub on a result; default: no error and neither 503 nor
# no answer), i.e. the service recovered; returns 1/0.
sub wait_good ($self, %o) {
    my $from = time;
    my $n = $o{n} // 8;
    my $ok = $o{ok} // sub ($r) {
        $r->{err} eq '' && $r->{status} != 503 && $r->{status} != 0
    };
    return wait_until(sub {
        my @r = $self->since($from);
        # the last n answers, whatever came before
        return 0 if @r < $n;
        my @last = @r[-$n .. -1];
        return !grep { !$ok->($_) } @last;
    }, timeout => $o{timeout} // 30, interval => 0.2);
}

# Reasons of the bad answers (name, status, error), at most $max.
sub failures ($class_or_self, $results, $max = 10) {
    my @bad = grep { $_->{err} ne '' } @$results;
    my @out = map { sprintf '%.3f %s %d (%.2fs) %s', $_->{t}, $_->{name},
                    $_->{status}, $_->{el}, $_->{err} }
              @bad[0 .. ($#bad < $max - 1 ? $#bad : $max - 1)];
    push @out, '... ' . (@bad - $max) . ' more' if @bad > $max;
    return @out;
}

sub max_elapsed ($class_or_self, $results) {
    my $m = 0;
    for (@$results) { $m = $_->{el} if $_->{el} > $m }
    return $m;
}

sub DESTROY ($self) {
    return unless $self->{owner} == $$ && !$self->{results};
    local ($@, $!, $?);
    write_file($self->{stop}, '') if -d $self->{dir};
    for my $k (@{ $self->{kids} }) {
        kill 'KILL', $k->[0];
        waitpid($k->[0], 0);
    }
}

1;

package Ocdz::Browser;

# Headless Chromium (Debian's chromium) driven through the Chrome
# DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages
# separated by NUL bytes on file descriptors 3 and 4). Perl core only:
# no websocket, no npm.
#
#   use Ocdz::Browser;
#   my $b = Ocdz::Browser->start(width => 1000, height => 900)
#       or plan skip_all => Ocdz::Browser->why_not;
#   $b->goto("http://127.0.0.1:$port/storefront/?order=$id");
#   $b->wait_for('document.querySelector("#view-card:not([hidden])")');
#   my $text = $b->js('document.title');
#   $b->click('#copy');
#   $b->screenshot("$dir/card.png");
#   $b->quit;

use v5.36;
use Carp qw(croak);
use Fcntl qw(F_DUPFD F_GETFL F_SETFL O_NONBLOCK);
use IO::Select;
use JSON::PP ();
use MIME::Base64 qw(decode_base64);
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(weaken);
use Time::HiRes qw(time sleep);
use Ocdz::Test qw(tmpdir write_file slurp slow_factor);

my $WHY_NOT;
my @LIVE;

# The flags the machine needs (no sandbox as root, no network of its own)
my @FLAGS = qw(--headless --no-sandbox --disable-gpu --disable-quic
               --no-first-run --disable-background-networking
               --disable-component-update --disable-sync
               --disable-dev-shm-usage --disable-extensions
               --disable-default-apps --mute-audio --hide-scrollbars
               --force-device-scale-factor=1 --remote-debugging-pipe);

sub chromium {
    return $ENV{OCDZ_CHROMIUM} if $ENV{OCDZ_CHROMIUM};
    for (qw(/usr/bin/chromium /usr/bin/chromium-browser)) {
        return $_ if -x $_;
    }
    return undef;
}

sub why_not ($class = __PACKAGE__) { $WHY_NOT }

# Options: width, height (900 x 900), lang ('en-US'), log => FILE.
# Returns undef (why_not says why) when there is no chromium.
sub start ($class, %o) {
    my $bin = chromium();
    if (!$bin) {
        $WHY_NOT = 'chromium is not installed (Debian package chromium; '
                 . 'make deps installs it)';
        return undef;
    }
    my $self = bless { owner => $$, id => 0, buf => '', events => [],
                       handlers => {}, console => [],
                       json => JSON::PP->new->utf8->canonical->allow_nonref,
                       width => $o{width} // 900, height => $o{height} // 900,
                       dir => tmpdir() }, $class;
    $self->{log} = $o{log} // "$self->{dir}/chromium.log";
    push @LIVE, $self;
    weaken($LIVE[-1]);

    pipe(my $to_r, my $to_w) or croak "pipe: $!";
    pipe(my $from_r, my $from_w) or croak "pipe: $!";
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        # above 9 first, so that neither lands on 3 or 4 too early
        my $in = fcntl($to_r, F_DUPFD, 10);
        my $out = fcntl($from_w, F_DUPFD, 10);
        POSIX::dup2($in, 3);
        POSIX::dup2($out, 4);
        POSIX::close($in);
        POSIX::close($out);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $self->{log};
        open STDERR, '>&', \*STDOUT;
        my @cmd = ($bin, @FLAGS, "--user-data-dir=$self->{dir}/profile",
                   '--lang=' . ($o{lang} // 'en-US'),
                   "--window-size=$self->{width},$self->{height}",
                   'about:blank');
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    close $to_r;
    close $from_w;
    $self->{pid} = $pid;
    $self->{w} = $to_w;
    $self->{r} = $from_r;
    my $fl = fcntl($from_r, F_GETFL, 0);
    fcntl($from_r, F_SETFL, $fl | O_NONBLOCK);
    $self->{sel} = IO::Select->new($from_r);

    my $ok = eval {
        $self->{version} = $self->call('Browser.getVersion', {}, browser => 1,
                                       timeout => 30)->{product};
        my $t = $self->call('Target.createTarget', { url => 'about:blank' },
                            browser => 1);
        $self->{target} = $t->{targetId};
        $self->{session} = $self->call('Target.attachToTarget',
            { targetId => $t->{targetId}, flatten => JSON::PP::true },
            browser => 1)->{sessionId};
        $self->call($_) for qw(Page.enable Runtime.enable Log.enable);
        $self->call('Emulation.setFocusEmulationEnabled',
                    { enabled => JSON::PP::true });
        $self->viewport($self->{width}, $self->{height});
        1;
    };
    if (!$ok) {
        my $err = $@;
        $self->quit;
        croak "chromium did not start: $err\n" . slurp($self->{log});
    }

    $self->on('Runtime.consoleAPICalled', sub ($p) {
        push @{ $self->{console} }, "console.$p->{type}: " . join ' ',
            map { $_->{value} // $_->{description} // $_->{type} }
            @{ $p->{args} // [] };
    });
    $self->on('Log.entryAdded', sub ($p) {
        push @{ $self->{console} },
            "log.$p->{entry}{source}.$p->{entry}{level}: $p->{entry}{text}"
            . ($p->{entry}{url} ? " ($p->{entry}{url})" : '');
    });
    $self->on('Runtime.exceptionThrown', sub ($p) {
        push @{ $self->{console} }, 'exception: '
            . ($p->{exceptionDetails}{exception}{description}
               // $p->{exceptionDetails}{text});
    });
    return $self;
}

sub version ($self) { $self->{version} }

# --- the protocol ------------------------------------------------------------

sub _send ($self, $method, $params, %o) {
    my $msg = { id => ++$self->{id}, method => $method,
                params => $params // {} };
    $msg->{sessionId} = $self->{session} unless $o{browser};
    my $data = $self->{json}->encode($msg) . "\0";
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite $self->{w}, $data, length($data) - $off, $off;
        croak "write to chromium: $!" unless defined $n;
        $off += $n;
    }
    return $msg->{id};
}

# Reads what is there (waiting at most $secs); dispatches events; returns
# the answer to $want when it came.
sub _read ($self, $secs, $want = undef) {
    my $deadline = time + $secs;
    while (1) {
        while ((my $i = index $self->{buf}, "\0") >= 0) {
            my $text = substr $self->{buf}, 0, $i + 1, '';
            chop $text;
            my $m = $self->{json}->decode($text);
            if (defined $m->{id}) {
                $self->{answers}{ $m->{id} } = $m;
            } elsif ($m->{method}) {
                $self->_event($m);
            }
        }
        return delete $self->{answers}{$want}
            if defined $want && $self->{answers}{$want};
        my $left = $deadline - time;
        return undef if $left <= 0;
        next unless $self->{sel}->can_read($left);
        my $n = sysread $self->{r}, my $chunk, 1 << 20;
        next if !defined $n && ($!{EAGAIN} || $!{EINTR});
        croak 'chromium went away' unless $n;
        $self->{buf} .= $chunk;
    }
}

sub _event ($self, $m) {
    for my $h (@{ $self->{handlers}{ $m->{method} } // [] }) {
        $h->($m->{params} // {});
    }
}

# A command; its result (a hash). Dies on a protocol error or timeout.
# Options: browser => 1 (not the page's session), timeout (20 s).
sub call ($self, $method, $params = {}, %o) {
    my $id = $self->_send($method, $params, %o);
    my $a = $self->_read(($o{timeout} // 20) * slow_factor(), $id);
    croak "$method: no answer" unless $a;
    croak "$method: $a->{error}{message}" if $a->{error};
    return $a->{result};
}

# A command whose answer is not waited for (from an event handler).
sub send_nowait ($self, $method, $params = {}, %o) {
    return $self->_send($method, $params, %o);
}

sub on ($self, $event, $cb) {
    push @{ $self->{handlers}{$event} }, $cb;
}

# Handles events for $secs.
sub pump ($self, $secs) { $self->_read($secs) }

# --- a page ----------------------------------------------------------------------

sub viewport ($self, $w, $h, %o) {
    $self->call('Emulation.setDeviceMetricsOverride', {
        width => $w, height => $h, deviceScaleFactor => 1,
        mobile => $o{mobile} ? JSON::PP::true : JSON::PP::false });
    $self->{width} = $w;
    $self->{height} = $h;
    $self->{mobile} = $o{mobile};
}

# Navigates and waits for the load event's document.readyState.
sub goto ($self, $url, %o) {
    my $r = $self->call('Page.navigate', { url => $url });
    croak "navigate $url: $r->{errorText}" if $r->{errorText};
    $self->wait_for('document.readyState === "complete"',
                    timeout => $o{timeout} // 20)
        or croak "$url did not load";
    return 1;
}

# The value of a JavaScript expression (promises awaited), run as if
# the user had acted (clipboard, focus). Dies on an exception.
sub js ($self, $js, %o) {
    my $r = $self->call('Runtime.evaluate', {
        expression => $js, returnByValue => JSON::PP::true,
        awaitPromise => JSON::PP::true, userGesture => JSON::PP::true },
        timeout => $o{timeout});
    if ($r->{exceptionDetails}) {
        croak 'eval: ' . ($r->{exceptionDetails}{exception}{description}
                          // $r->{exceptionDetails}{text});
    }
    return $r->{result}{value};
}

# Evaluates $js until it is true (returned) or timeout seconds pass
# (undef); events are handled meanwhile.
sub wait_for ($self, $js, %o) {
    my $deadline = time + ($o{timeout} // 10) * slow_factor();
    while (1) {
        my $v = eval { $self->js($js) };
        return $v if $v;
        return undef if time > $deadline;
        $self->pump($o{interval} // 0.1);
    }
}

# The box of an element: { x, y, width, height } in CSS pixels.
sub box ($self, $selector) {
    my $sel = $self->{json}->encode($selector);
    return $self->js("(function () { var e = document.querySelector($sel);"
        . " if (!e) return null; var r = e.getBoundingClientRect();"
        . " return { x: r.left, y: r.top, width: r.width,"
        . " height: r.height }; })()");
}

# A real click (mouse events at the element's centre): the page sees a
# user's gesture.
sub click ($self, $selector) {
    my $sel = $self->{json}->encode($selector);
    $self->js("document.querySelector($sel).scrollIntoView("
                . "{ block: 'center' })");
    my $b = $self->box($selector) or croak "click: no $selector";
    my ($x, $y) = ($b->{x} + $b->{width} / 2, $b->{y} + $b->{height} / 2);
    for my $type (qw(mouseMoved mousePressed mouseReleased)) {
        $self->call('Input.dispatchMouseEvent', {
            type => $type, x => $x, y => $y,
            $type eq 'mouseMoved' ? ()
                : (button => 'left', clickCount => 1) });
    }
    return 1;
}

# Writes a PNG of the viewport (full => 1: the whole page, by making the
# viewport as tall as the page for the shot; captureBeyondViewport
# shifts right-to-left pages).
sub screenshot ($self, $path, %o) {
    my ($w, $h) = @$self{qw(width height)};
    if ($o{full}) {
        my $ph = $self->js('Math.ceil(document.documentElement'
                           . '.getBoundingClientRect().height)');
        $self->viewport($w, $ph > $h ? $ph : $h, mobile => $self->{mobile});
    }
    my $r = eval { $self->call('Page.captureScreenshot',
                               { format => 'png' }, timeout => 30) };
    my $err = $@;
    $self->viewport($w, $h, mobile => $self->{mobile}) if $o{full};
    croak $err unless $r;
    write_file($path, decode_base64($r->{data}));
    return $path;
}

# Console messages ("console.log: ..."), the browser's log entries
# ("log.network.error: ...", "log.security.error: ..." for a refused
# resource) and exceptions of the page so far.
sub console ($self) { @{ $self->{console} } }

sub quit ($self) {
    return unless $self->{pid} && $self->{owner} == $$;
    eval { $self->call('Browser.close', {}, browser => 1, timeout => 5) };
    my $deadline = time + 5;
    while (waitpid($self->{pid}, WNOHANG) != $self->{pid}) {
        if (time > $deadline) {
            kill 'KILL', -$self->{pid};
            waitpid($self->{pid}, 0);
            last;
        }
        sleep 0.05;
    }
    $self->{pid} = 0;
    close $self->{w} if $self->{w};
    close $self->{r} if $self->{r};
}

sub DESTROY ($self) { $self->quit }

END {
    for my $b (grep { defined } @LIVE) {
        local $?;
        $b->quit;
    }
}

1;

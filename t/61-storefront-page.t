# The customer page (conf-examples/storefront/, issue #16) in headless
# Chromium, driven through the DevTools protocol, against a stack of its
# own: PostgreSQL, the mock OneClickDz API, nginx with the module (poller
# on) serving the page and the card endpoint.
#
# A signed-in customer waits while her order is pending (the page asks
# with wait=25 and, while the module answers at once, again after a few
# seconds), sees the database go away and come back, and sees the card
# only once the poller has stored it; copies it (Clipboard API and the
# fallback); reads it in French and in Arabic (right to left, the layout
# mirrored); sees another customer's order as not found, and each error
# the endpoint answers. A screenshot of every state goes to the
# directory printed at the start (OCDZ_SCREENSHOTS to choose it).

use v5.36;
use utf8;
use Test::More;
use Encode qw(encode_utf8 decode_utf8);
use File::Temp ();
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time);
use Ocdz::Test qw(:all);
use Ocdz::Card qw(:all);
use Ocdz::Storefront qw(:all);
use Ocdz::Browser;

plan skip_all => 'chromium is not installed (Debian package chromium; '
                 . 'make deps installs it)'
    unless Ocdz::Browser::chromium();
require_module();

binmode Test::More->builder->$_, ':encoding(UTF-8)'
    for qw(output failure_output todo_output);

my $shots = $ENV{OCDZ_SCREENSHOTS}
    // File::Temp::tempdir('ocdz-storefront-XXXXXX', TMPDIR => 1,
                           CLEANUP => 0);
chmod 0755, $shots;
diag "screenshots of the customer page: $shots";

# --- the stack ------------------------------------------------------------

my $env = card_env(pg => { log_statement => 'none' });
my $pg = $env->{pg};
my $mock = Ocdz::Test::Mock->start;

my %token = (alice => $pg->add_session(random_token(), 'alice'),
             bob => $pg->add_session(random_token(), 'bob'));
my $http = storefront_http(alice => $token{alice}, bob => $token{bob});
my $log = 'access_log %%PREFIX%%/logs/cards.log cards;';
my $locs = storefront_locations(card => $log);
my $secure = storefront_locations(card => "$log ocdz_https_only on;");

my $ngx = Ocdz::Test::Nginx->new(pg => $pg, mock => $mock, ports => 2,
    vars => { DIR => $env->{dir} }, conf => <<"EOF");
http {
    ocdz_db "%%PGCONNINFO%%";
    ocdz_card_key k1 %%DIR%%/k1.key current;
    ocdz_db_connect_timeout 5s;
    ocdz_db_query_timeout 10s;
    ocdz_api_base %%MOCK_BASE%%;
    ocdz_api_ca_file %%CA_FILE%%;
    ocdz_api_token_file %%TOKEN_FILE%%;
    ocdz_poller on;
    ocdz_poller_interval 300ms;
    ocdz_db_retry_delay 500ms;

    log_format cards '\$request_method \$uri "\$args" "\$http_accept_language" '
                     '\$status \$ocdz_result';
$http
    server {
        listen 127.0.0.1:%%PORT%%;
$locs
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
$secure
    }
}
EOF
$ngx->start;
push @{ $env->{nginx} }, $ngx;
my $base = $ngx->base_url;
my $base2 = 'http://127.0.0.1:' . $ngx->port(2);

# alice's pending order: upstream keeps it HANDLING until the test says
my $pending = random_topup_id();
my $code = random_card_code();
push @{ $env->{codes} }, $code;
$mock->set_order($pending, status => 'HANDLING');
$pg->insert_order(topup_id => $pending, user_id => 'alice');

my ($bobs, $bobs_code) = new_card($env, user => 'bob');
my $refund_text = 'تعذر شحن البطاقة، تم استرجاع المبلغ إلى رصيدك';
my $refunded = new_order($env, user_id => 'alice', status => 'REFUNDED',
                         refund_message => encode_utf8($refund_text));
my ($broken) = new_card($env, user => 'alice', store => 0);
my $queued = new_order($env, user_id => 'alice', status => 'QUEUED',
                       next_check_at => "now() + interval '1 hour'");

# what the module answers alice, to compare the page with
sub api ($id, %h) {
    my ($s, undef, $j) = card_get($ngx, $id, token => $token{alice},
                                  headers => \%h);
    return $j;
}

my $b = Ocdz::Browser->start(width => 1000, height => 900)
    or BAIL_OUT(Ocdz::Browser->why_not);
diag 'browser: ' . $b->version;

# --- helpers ------------------------------------------------------------------

my @taken;
sub shot ($name, %o) {
    my $file = "$shots/$name.png";
    $b->screenshot($file, full => 1, %o);
    ok(-s $file > 5000, "screenshot $name.png");
    push @taken, "$name.png";
}

# what the page shows
sub page () {
    return $b->js(<<'JS');
(function () {
    function on(id) { return !document.getElementById(id).hidden; }
    function text(id) { return document.getElementById(id).textContent; }
    return {
        view: on('view-card') ? 'card' : on('view-waiting') ? 'waiting'
            : on('view-error') ? 'error' : on('view-loading') ? 'loading'
            : 'none',
        status: document.getElementById('waiting-status')
                        .getAttribute('data-status'),
        error: text('error-code'),
        errorTitle: text('error-title'),
        errorText: text('error-text'),
        code: text('card-code'),
        live: text('live'),
        focus: document.activeElement ? document.activeElement.id : '',
        lang: document.documentElement.lang,
        dir: document.documentElement.dir,
        title: document.title,
        instructions: text('instr-title')
    };
})()
JS
}

sub wait_page ($what, $cond, %o) {
    my $p;
    # (while a page loads there is nothing to read yet)
    my $ok = wait_until(sub { $p = eval { page() } // { view => 'none' };
                              $cond->($p) },
                        timeout => $o{timeout} // 15, interval => 0.1);
    ok($ok, $what) or diag explain $p;
    return $p;
}

sub error_is ($code, $http, $title_re, $what) {
    my $p = wait_page("$what: the page says so", sub ($p) {
        $p->{view} eq 'error' && index($p->{error}, $code) == 0
            && length $p->{live}
    });
    like($p->{error}, qr/^\Q$code\E( · HTTP $http)?$/,
         "$what: reference $code" . ($http ? " · HTTP $http" : ''));
    like($p->{errorTitle}, $title_re, "$what: the title");
    is($p->{focus}, 'error-title', "$what: focus on the message");
    like($p->{live}, qr/\Q$p->{errorTitle}\E/,
         "$what: told to screen readers");
    is($p->{code}, '', "$what: no card in the page");
    return $p;
}

sub choose_language ($l) {
    $b->js("(function () { var s = document.getElementById('lang');"
           . " s.focus(); s.value = '$l';"
           . " s.dispatchEvent(new Event('change', { bubbles: true })); })()");
}

# the card endpoint requests nginx saw: [method, uri, args, lang, status]
sub api_requests ($id = undef) {
    my @r;
    for (split /\n/, slurp($ngx->prefix . '/logs/cards.log')) {
        my @f = /^(\S+) (\S+) "([^"]*)" "([^"]*)" (\d+) (\S+)$/ or next;
        push @r, \@f if !defined $id || index($f[1], $id) >= 0;
    }
    return @r;
}

sub box ($sel) { $b->box($sel) }

# --- waiting, the database away, then the card --------------------------------

{
    $b->goto("$base/account/sign-in?customer=alice&order=$pending");
    like($b->js('location.href'), qr{/storefront/\?order=$pending$},
         'signed in: the page of the order');
    is($b->js('document.cookie'), '',
       'the session cookie is out of the script\'s reach (HttpOnly, /api/)');

    my $p = wait_page('pending order: the page waits', sub ($p) {
        $p->{view} eq 'waiting' && ($p->{status} // '') eq 'HANDLING'
            && $p->{live} =~ /With the operator/
    });
    is($p->{lang}, 'en', 'English by default (the browser says en-US)');
    like($p->{live}, qr/being prepared.*With the operator/,
         'the waiting state is told to screen readers (aria-live)');
    is($b->js('document.getElementById("live").getAttribute("aria-live")'),
       'polite', 'the live region is polite');
    is($b->js('document.querySelector("#progress [aria-current=step]")'
              . '.textContent'), 'With the operator',
       'progress: the current step');

    ok(wait_until(sub { grep({ $_->[4] == 409 } api_requests($pending)) >= 2 },
                  timeout => 15),
       'while pending the page asks again (409 at once: wait is not '
       . 'implemented yet, so after a delay)');
    my @r = api_requests($pending);
    ok($r[0][2] eq '-' || $r[0][2] eq '',
       'the first request does not wait (the state at once)')
        or diag explain \@r;
    ok(!grep({ $_->[2] ne 'wait=25' } @r[1 .. $#r]),
       'every later request asks wait=25')
        or diag explain \@r;
    ok(!grep({ $_->[3] ne 'en' } @r), 'and sends Accept-Language: en');
    is(page()->{code}, '', 'no card while pending');
    shot('01-waiting-en');

    # PostgreSQL away: 503, the page says it tries again, and does
    $pg->stop('fast');
    $p = error_is('SERVICE_UNAVAILABLE', 503, qr/temporarily unavailable/,
                  'PostgreSQL stopped');
    like($p->{errorText}, qr/Trying again in \d+ seconds/,
         '503: the page says when it tries again (Retry-After)');
    ok($b->js('!document.getElementById("retry").hidden'),
       '503: a button to try at once');
    shot('02-unavailable-en');
    $pg->start;
    wait_page('PostgreSQL back: the page waits again', sub ($p) {
        $p->{view} eq 'waiting'
    }, timeout => 20);

    # upstream fulfils; the poller stores; only then the card
    $mock->set_order($pending, status => 'FULFILLED', card_code => $code,
                     num_trans => 'AT-2025-778812',
                     date_traitement => '2025-10-29T01:05:30.000Z');
    my ($early, $stored_at, $shown_at);
    ok(wait_until(sub {
        my $o = $pg->order($pending);
        my $v = page();
        $stored_at //= time if $o->{status} eq 'FULFILLED';
        $early = 1 if $v->{view} eq 'card' && $o->{status} ne 'FULFILLED';
        $shown_at = time if $v->{view} eq 'card';
        return $shown_at;
    }, timeout => 30, interval => 0.1), 'the card appears');
    ok(!$early, 'never before the poller stored it');
    ok(defined $stored_at && $shown_at >= $stored_at,
       sprintf('shown %.1f s after it was stored', $shown_at - ($stored_at // 0)));

    $p = page();
    (my $shown = $p->{code}) =~ s/\s+//g;
    is($shown, $code, 'the card code shown is the one upstream gave');
    is($b->js('document.getElementById("card-code").innerText'
              . '.replace(/\\s+/g, "")'), $code, '(as the eye reads it)');
    is($p->{focus}, 'card-title', 'focus moves to the card');
    # (the live region is emptied, then filled 50 ms later, so that
    # screen readers announce it again)
    $p = wait_page('told to screen readers', sub ($p) {
        $p->{live} eq 'Your card is ready.'
    }, timeout => 5);
    like($p->{title}, qr/^✓ Card ready/, 'the tab title says so');
    unlike($p->{title}, qr/\Q$code\E/, 'the title has no code');
    is($b->js('document.getElementById("d-trans").textContent'),
       'AT-2025-778812', 'the transaction number');
    like($b->js('document.getElementById("d-date").textContent'),
         qr/29 October 2025/, 'the date');
    is($b->js('document.getElementById("d-date").getAttribute("datetime")'),
       '2025-10-29T01:05:30.000Z', 'the date as a machine reads it');
    is($b->js('document.getElementById("d-value").textContent'), '1,000 DA',
       'the amount');
    my $en = api($pending, 'Accept-Language' => 'en');
    is($p->{instructions}, $en->{instructions}{title},
       'the instructions\' title, in English');
    is_deeply($b->js('Array.from(document.querySelectorAll("#instr-steps li"))'
                     . '.map(function (e) { return e.textContent; })'),
              $en->{instructions}{steps}, 'every step');
    is($b->js('document.getElementById("instr-support").textContent'),
       $en->{instructions}{support}, 'the support line');
    shot('03-card-en');
    diag 'requests while waiting: ' . scalar(api_requests($pending));
}

my %ltr = map { $_ => box($_) } ('.brand', '.lang-picker', '.code-box',
                                  '#copy', '#progress li:first-child',
                                  '#progress li:last-child', 'h1');

# --- copying -------------------------------------------------------------------

{
    $b->call('Browser.grantPermissions', {
        origin => $base, permissions => ['clipboardReadWrite',
                                         'clipboardSanitizedWrite'] },
        browser => 1);
    $b->js('navigator.clipboard.writeText("nothing yet")');
    $b->click('#copy');
    my $p = wait_page('copy: the button says it copied', sub ($p) {
        $b->js('document.getElementById("copy-label").textContent')
            eq 'Code copied'
    });
    is($b->js('navigator.clipboard.readText()'), $code,
       'the clipboard holds the card code');
    is($b->js('document.getElementById("copy-feedback").textContent'),
       'The card code is in your clipboard.', 'and says so (role=status)');
    shot('04-copied-en');

    # without the Clipboard API (plain http): the fallback
    $b->js('navigator.clipboard.writeText("nothing yet")');
    $b->js('window.realClipboard = navigator.clipboard;'
           . ' Object.defineProperty(Navigator.prototype, "clipboard",'
           . ' { get: function () { return undefined; },'
           . ' configurable: true }); true');
    $b->click('#copy');
    $b->pump(0.3);
    is($b->js('window.realClipboard.readText()'), $code,
       'without the Clipboard API the fallback copies it');
    is($b->js('document.querySelectorAll("textarea").length'), 0,
       'the fallback leaves nothing behind');
    is($b->js('document.activeElement.id'), 'copy',
       'focus back on the button');
    $b->js('delete Navigator.prototype.clipboard;'
           . ' Object.defineProperty(Navigator.prototype, "clipboard",'
           . ' { get: function () { return window.realClipboard; },'
           . ' configurable: true }); delete window.realClipboard; true');
}

# --- French, then Arabic right to left ------------------------------------------

{
    choose_language('fr');
    my $fr = api($pending, 'Accept-Language' => 'fr');
    my $p = wait_page('French: the instructions in French', sub ($p) {
        $p->{instructions} eq $fr->{instructions}{title}
    });
    is($p->{lang}, 'fr', 'French: <html lang="fr">');
    is($b->js('document.querySelector("h1").textContent'),
       'Votre carte de recharge internet', 'French: the page\'s own texts');
    like($b->js('document.getElementById("d-value").textContent'),
         qr/^1\s000 DA$/, 'French: the amount as French writes it');
    my @fr = grep { $_->[3] eq 'fr' } api_requests($pending);
    ok(@fr >= 1, 'the page asked with Accept-Language: fr');
    (my $shown = $p->{code}) =~ s/\s+//g;
    is($shown, $code, 'French: the same card');
    shot('05-card-fr');

    choose_language('ar');
    my $ar = api($pending, 'Accept-Language' => 'ar');
    $p = wait_page('Arabic: the instructions in Arabic', sub ($p) {
        $p->{instructions} eq $ar->{instructions}{title}
    });
    like($p->{instructions}, qr/\p{Arabic}/, 'Arabic: the title is Arabic');
    is($p->{lang}, 'ar', 'Arabic: <html lang="ar">');
    is($p->{dir}, 'rtl', 'Arabic: <html dir="rtl">');
    is($b->js('getComputedStyle(document.body).direction'), 'rtl',
       'Arabic: computed direction rtl');
    ok(grep({ $_->[3] eq 'ar' } api_requests($pending)),
       'the page asked with Accept-Language: ar');

    my %rtl = map { $_ => box($_) } keys %ltr;
    my $mid = 500;
    for my $pair (['.brand', '.lang-picker'], ['.code-box', '#copy'],
                  ['#progress li:first-child', '#progress li:last-child']) {
        my ($x, $y) = @$pair;
        ok($ltr{$x}{x} < $ltr{$y}{x} && $rtl{$x}{x} > $rtl{$y}{x},
           "the layout mirrors: $x left of $y in English, right of it "
           . 'in Arabic');
    }
    ok(abs(($ltr{'.brand'}{x}) - (1000 - $rtl{'.brand'}{x}
                                  - $rtl{'.brand'}{width})) < 2,
       'the brand sits as far from the right as it sat from the left');
    ok($rtl{h1}{x} + $rtl{h1}{width} > $mid + 300,
       'the heading starts on the right');
    is($b->js('getComputedStyle(document.getElementById("card-code"))'
              . '.direction'), 'ltr', 'the code itself stays left to right');
    ($shown = page()->{code}) =~ s/\s+//g;
    is($shown, $code, 'Arabic: the code, its characters in order');
    shot('06-card-ar');

    # a phone
    $b->viewport(390, 844, mobile => 1);
    $b->pump(0.3);
    ok($b->js('document.documentElement.scrollWidth <= 390'),
       'on a phone: nothing wider than the screen');
    my ($c, $btn) = (box('.code-box'), box('#copy'));
    ok($btn->{y} >= $c->{y} + $c->{height} - 1,
       'on a phone: the copy button goes under the code');
    shot('07-card-ar-phone');
    $b->viewport(1000, 900);
}

# --- leaving clears the card ---------------------------------------------------

{
    is($b->js('window.location.href.indexOf("' . $code . '")'), -1,
       'the code is not in the URL');
    is($b->js('JSON.stringify(window.localStorage).indexOf("' . $code
              . '") + JSON.stringify(window.sessionStorage).indexOf("'
              . $code . '")'), -2, 'nor in the browser\'s storage');
    $b->js('window.dispatchEvent(new PageTransitionEvent("pagehide",'
           . ' { persisted: true })); true');
    is($b->js('document.getElementById("card-code").childNodes.length'), 0,
       'leaving the page: the code is removed from it');
    is($b->js('document.documentElement.innerHTML.indexOf("' . $code
              . '")'), -1, 'nowhere in the page');
    $b->js('window.dispatchEvent(new PageTransitionEvent("pageshow",'
           . ' { persisted: true })); true');
    my $p = wait_page('back from the cache: the page asks again', sub ($p) {
        $p->{view} eq 'card' && $p->{code} =~ /\S/
    });
    choose_language('en');
    wait_page('English again', sub ($p) { $p->{lang} eq 'en' });
}

# --- another customer's order; every error ----------------------------------------

{
    $b->goto("$base/storefront/?order=$bobs");
    error_is('ORDER_NOT_FOUND', 404, qr/^Order not found$/,
             "bob's order, alice signed in");
    is($b->js('document.documentElement.innerHTML.indexOf("' . $bobs_code
              . '")'), -1, "nothing of bob's card");
    shot('08-not-found-en');

    $b->goto("$base/storefront/?order=$refunded&lang=ar");
    my $p = error_is('ORDER_REFUNDED', 410, qr/\p{Arabic}/,
                     'refunded, in Arabic');
    is($b->js('document.getElementById("error-detail-text").textContent'),
       $refund_text, 'the operator\'s message');
    ok($b->js('document.getElementById("retry").hidden'),
       'refunded: nothing to try again');
    shot('09-refunded-ar');

    $b->goto("$base/storefront/?order=$broken&lang=en");
    error_is('DELIVERY_FAILED', 500, qr/cannot be shown right now/,
             'fulfilled without a card');
    ok(!$b->js('document.getElementById("retry").hidden'),
       'DELIVERY_FAILED: a button to try again');
    shot('10-delivery-failed-en');

    $b->goto("$base/storefront/?order=$queued&lang=fr");
    $p = wait_page('queued, in French: the page waits', sub ($p) {
        $p->{view} eq 'waiting' && ($p->{status} // '') eq 'QUEUED'
    });
    like($b->js('document.getElementById("waiting-text").textContent'),
         qr/12 à 48 heures/, 'queued: it may take 12 to 48 hours');
    shot('11-queued-fr');

    $b->goto("$base/storefront/?order=not-an-order&lang=en");
    error_is('INVALID_TOPUP_ID', 400, qr/not valid/, 'an ill-formed id');
    ok(grep({ $_->[1] eq '/api/internet-orders/not-an-order/card'
              && $_->[4] == 400 } api_requests()),
       'the module answered it (JSON 400 through the documented location)');
    shot('12-invalid-id-en');

    $b->goto("$base/storefront/");
    error_is('NO_ORDER', 0, qr/No order selected/, 'no order in the link');
    shot('13-no-order-en');

    $b->call('Network.clearBrowserCookies');
    $b->goto("$base/storefront/?order=$pending");
    error_is('SESSION_REQUIRED', 401, qr/Please sign in/, 'signed out');
    like($b->js('document.getElementById("sign-in").getAttribute("href")'),
         qr{^/account/sign-in\?order=$pending$}, 'a link to sign in');
    shot('14-session-required-en');
    $b->click('#sign-in');
    wait_page('signed in again: the card', sub ($p) {
        $p->{view} eq 'card' && $p->{code} =~ /\S/
    });

    $b->goto("$base2/storefront/?order=$pending");
    error_is('HTTPS_REQUIRED', 403, qr/secure connection/,
             'a location with ocdz_https_only over http');
    like($b->js('document.getElementById("https-link").href'),
         qr{^https://127\.0\.0\.1:\d+/storefront/\?order=$pending$},
         'a link to the https page');
    shot('15-https-required-en');
}

# --- answers only a broken path gives: replayed from the module, and a
# connection refused ------------------------------------------------------------

{
    my $r = $ngx->http('POST', "/api/internet-orders/$pending/card",
                       headers => { Authorization => "Bearer $token{alice}" },
                       body => '{}');
    is($r->{status}, 405, 'the module answers POST 405');
    my $mode = 'replay';
    $b->on('Fetch.requestPaused', sub ($p) {
        if ($mode eq 'replay') {
            $b->send_nowait('Fetch.fulfillRequest', {
                requestId => $p->{requestId}, responseCode => 405,
                responseHeaders => [ map { { name => $_->[0],
                                             value => $_->[1] } }
                                     @{ $r->{headers}{':all'} } ],
                body => encode_base64($r->{body}, '') });
        } else {
            $b->send_nowait('Fetch.failRequest', {
                requestId => $p->{requestId},
                errorReason => 'ConnectionRefused' });
        }
    });
    $b->call('Fetch.enable', { patterns => [
        { urlPattern => '*/api/internet-orders/*' } ] });

    $b->goto("$base/storefront/?order=$pending");
    error_is('METHOD_NOT_ALLOWED', 405, qr/refused/,
             "the module's 405, replayed");
    shot('16-method-not-allowed-en');

    $mode = 'refuse';
    $b->goto("$base/storefront/?order=$pending&lang=fr");
    my $p = error_is('NETWORK', 0, qr/Problème de connexion/,
                     'the connection refused, in French');
    like($p->{errorText}, qr/Nouvel essai dans \d+ secondes/,
         'network: the page says when it tries again');
    shot('17-network-fr');

    $b->call('Fetch.disable');
    wait_page('the connection back: the card, by itself', sub ($p) {
        $p->{view} eq 'card' && $p->{code} =~ /\S/
    }, timeout => 20);
}

# --- what the page never did ---------------------------------------------------------

{
    my @console = $b->console;
    my @own = grep { !/^log\.network\./ } @console;
    is_deeply(\@own, [], 'no console output, CSP violation or exception')
        or diag join "\n", @own;
    ok(!grep({ index($_, $code) >= 0 } @console),
       'the code never in the console');
    ok(!grep({ index($_->[2], $code) >= 0 || index($_->[1], $code) >= 0 }
             api_requests()), 'the code never in a request');
    my $page = $ngx->http('GET', '/storefront/');
    like($page->{headers}{'content-security-policy'} // '',
         qr/default-src 'none'; script-src 'self'/,
         'the page is served with a strict Content-Security-Policy');
}

$b->quit;
diag "screenshots in $shots: @taken";
hygiene($env, $code);
$ngx->quit;
$mock->stop;
done_testing;

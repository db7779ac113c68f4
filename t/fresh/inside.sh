#!/bin/bash
# Inside the fresh Debian root of make test-fresh (.ci/test-fresh.sh), as
# root, from the clone of the commit under test. Never run it on a
# machine you care about: it installs and removes packages, starts
# Debian's nginx and PostgreSQL services and writes under /etc/nginx.
#
#   1. make demo: the README's first command, where nothing is installed;
#      the card JSON must come out;
#   2. make deb;
#   3. Debian's nginx and PostgreSQL services started as on a server, in
#      a network namespace of their own (ports 80 and 5432 of that
#      namespace only);
#   4. t/fresh/10-deps-services.t: make deps with those services running
#      (in the root's own network namespace: it downloads);
#   5. in the services' network namespace: t/fresh/20-package.t (contents
#      and metadata), 30-runbook.t (every runbook command of README.md),
#      40-make-install.t.

set -euo pipefail

cd "$(dirname "$0")/../.."
REPO=$(pwd)

# the mark .ci/test-fresh.sh leaves in the roots it bootstraps
if [ ! -f /etc/ocdz-fresh-root ]; then
    echo "inside.sh: not a root made by make test-fresh: refused" >&2
    exit 1
fi

t0=$(date +%s)
step() { printf '\n==> %s (%d s)\n' "$*" $(( $(date +%s) - t0 )); }
run() { printf '$ %s\n' "$*"; "$@"; }

echo "Debian $(cat /etc/debian_version), $(dpkg-query -W | wc -l) packages," \
     "nginx: $(command -v nginx || echo none), psql: $(command -v psql || echo none)"

step "make demo, on a Debian root that has nothing installed"
run make demo 2>&1 | tee /root/demo.log

step "the card JSON came out"
perl -MJSON::PP -e '
    local $/;
    my $log = <STDIN>;
    my ($json) = $log =~ /^==> revealing it[^\n]*\n(\{.*?\n\})\n/ms
        or die "no card JSON in the demo output\n";
    my $card = JSON::PP->new->utf8->decode($json);
    die "the card JSON is not a success\n" unless $card->{success};
    die "no card code\n" unless length($card->{cardCode} // "");
    die "no top-up id\n" unless ($card->{topupId} // "") =~ /^[0-9a-f]{24}$/;
    print "card JSON: success, top-up $card->{topupId}, a card code of ",
        length $card->{cardCode}, " characters, transaction ",
        $card->{transactionNumber}, "\n";
' </root/demo.log

step "make deb"
run make deb 2>&1 | tail -n 25
deb=$(ls "$REPO"/build/deb/libnginx-mod-http-ocdz_*.deb)
echo "built: $deb ($(stat -c %s "$deb") bytes)"

step "Debian's nginx and PostgreSQL services, running as on a server"
# A booted server's invoke-rc.d runs what maintainer scripts ask (e.g.
# nginx's reload trigger); without an init system it refuses all. From
# here on, a policy-rc.d allowing every action stands in for one.
printf '#!/bin/sh\nexit 0\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
# their own network namespace: Debian's ports (80, 5432) clash with
# nothing of the machine running this test
unshare --net /bin/sh -c '
    ip link set lo up
    service postgresql start
    service nginx start
'
netns=/proc/$(cat /run/nginx.pid)/ns/net
export OCDZ_FRESH_NETNS=$netns OCDZ_FRESH_DEB=$deb
run nsenter --net="$netns" curl -sS -o /dev/null -w 'nginx answers %{http_code} on port 80\n' http://127.0.0.1/
(cd / && run runuser -u postgres -- psql -X -tA -c 'SELECT version()')

cd t
step "make deps with the services running"
run prove -v -I lib fresh/10-deps-services.t

step "the package, the runbook, make install (in the services' network namespace)"
run nsenter --net="$netns" prove -v -I lib fresh/20-package.t \
    fresh/30-runbook.t fresh/40-make-install.t

step "stopping the services"
run service nginx stop
run service postgresql stop

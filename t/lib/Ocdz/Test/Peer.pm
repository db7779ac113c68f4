package Ocdz::Test::Peer;

# The HTTP peer of the outbox tests: t/lib/webhook_receiver.py as a
# webhook receiver or an SMS gateway stub, on a free loopback port with
# a directory of its own (its requests.jsonl, its mode file), stopped at
# the end of the test.

use v5.36;
use Exporter qw(import);
use Ocdz::Test::Env qw(repo_root);
use Ocdz::Test::Files qw(tmpdir slurp);
use Ocdz::Test::Proc qw(spawn wait_until free_port);

our @EXPORT_OK = qw(webhook_peer);

my @PIDS;

END { kill 'TERM', $_ for grep { $_ } @PIDS }

# Starts one and waits until it listens. Options: cert, key (HTTPS),
# timeout (s, default 10). Returns { port, dir, pid, listening }.
sub webhook_peer (%o) {
    my $port = free_port();
    my $dir = tmpdir();
    my @tls = $o{cert} ? ($o{cert}, $o{key}) : ();
    my $pid = spawn(['/usr/bin/python3',
                     repo_root() . '/t/lib/webhook_receiver.py', $port, $dir,
                     @tls], log => "$dir/peer.log");
    push @PIDS, $pid;
    my $up = wait_until(sub { slurp("$dir/peer.log") =~ /listening/ },
                        timeout => $o{timeout} // 10);
    return { port => $port, dir => $dir, pid => $pid, listening => $up };
}

1;

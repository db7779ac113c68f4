use v5.36;
use Test::More;
use Ocdz::Test qw(:all);
use Ocdz::Test::Peer qw(webhook_peer);
use Ocdz::Card qw(:all);
require_module();

# How the outbox's leases and outcomes commit (ocdz_outbox_sync_commit):
# with synchronous_commit off by default, as the poller's writes, so that
# a busy sender does not make the reveals wait on WAL flushes; with the
# connection's own setting when the sysadmin asks for it.

# synchronous_commit on, unlike the harness's default: "off" must come
# from the outbox's own statements
my $env = card_env(pg => { log_statement => 'none',
                           settings => { synchronous_commit => 'on' } });
my $pg = $env->{pg};
my $dir = $env->{dir};

# Every outbox row the module's role changes records the
# synchronous_commit its transaction will commit with.
$pg->psql(<<'SQL');
CREATE TABLE public.commits (id bigserial, state text, sc text);
CREATE FUNCTION public.record_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF session_user = 'ocdz_module' THEN
        INSERT INTO public.commits (state, sc)
        VALUES (NEW.state, current_setting('synchronous_commit'));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER record_commit AFTER UPDATE ON ocdz.outbox
    FOR EACH ROW EXECUTE FUNCTION public.record_commit();
SQL

my $receiver = webhook_peer();
my ($rport, $rdir) = @$receiver{qw(port dir)};
ok($receiver->{listening}, 'receiver listening');
replace_file("$rdir/mode", 'ok');
write_file("$dir/wh.secret", 'whsec_' . random_hex(16), 0600);

sub commits {
    my %seen;
    for my $r ($pg->hashes('SELECT state, sc, count(*) AS n '
                           . 'FROM public.commits GROUP BY 1, 2')) {
        $seen{ $r->{state} }{ $r->{sc} } += $r->{n};
    }
    $pg->psql('TRUNCATE public.commits');
    return \%seen;
}

for my $mode (['default', '', 'off'],
              ['ocdz_outbox_sync_commit on', 'ocdz_outbox_sync_commit on;',
               'on'],
              ['ocdz_outbox_sync_commit off, not prepared',
               "ocdz_outbox_sync_commit off;\n    ocdz_db_prepared off;",
               'off'])
{
    my ($name, $extra, $want) = @$mode;
    $pg->psql('TRUNCATE public.commits');
    my $ngx = card_nginx($env, http => <<"EOF");
    ocdz_outbox on;
    ocdz_outbox_interval 200ms;
    ocdz_webhook_url http://127.0.0.1:$rport/hook;
    ocdz_webhook_secret_file %%DIR%%/wh.secret;
    $extra
EOF
    my ($id) = new_card($env);
    ok(wait_until(sub {
        !$pg->value("SELECT count(*) FROM ocdz.outbox WHERE topup_id = "
                    . sql_quote($id) . " AND state IN ('pending', 'sending')")
    }, timeout => 10), "$name: the webhook sent, email and SMS skipped");
    $ngx->stop;

    my $c = commits();
    ok($c->{sending}, "$name: leases seen");
    ok($c->{sent} && $c->{skipped}, "$name: outcomes seen");
    my @other = map { my $s = $_; map { "$s: $_ ($c->{$s}{$_})" }
                      grep { $_ ne $want } keys %{ $c->{$s} } } sort keys %$c;
    ok(!@other, "$name: every lease and outcome commits with "
                . "synchronous_commit $want") or diag explain $c;
}

done_testing;

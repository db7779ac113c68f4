/*
 * ocdz-card: the operator's tool for stored card records.
 *
 *   encrypt    seal a card code read from standard input, print the record
 *   store      the same, written into ocdz.orders.card_enc
 *   reencrypt  move every stored card to the v1 format and current key
 *
 * Blocking libpq and stdio are fine here: this is not nginx. The card
 * code is read from standard input only (never argv, which other users
 * can see), with read(2) so that no stdio buffer keeps a copy, and is
 * never printed. Keys and codes are wiped after use.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ocdz_crypto.h"
#include "ocdz_text.h"
#include "ocdz_template.h"


#define OCDZ_CARD_OK          0
#define OCDZ_CARD_FAILED      1
#define OCDZ_CARD_USAGE       2

#define OCDZ_KEY_FILE_MAX     256     /* 64 hex digits and white space */
#define OCDZ_INPUT_MAX        1024    /* what we read from stdin at most */
#define OCDZ_PASSWORD_MAX     1024    /* as ocdz_db_password_file */
#define OCDZ_BATCH_DEFAULT    100
#define OCDZ_BATCH_MAX        10000


typedef enum {
    OCDZ_CMD_NONE = 0,
    OCDZ_CMD_ENCRYPT,
    OCDZ_CMD_STORE,
    OCDZ_CMD_REENCRYPT
} ocdz_cmd_e;


typedef struct {
    ocdz_cmd_e            cmd;
    const char           *cmd_name;
    ocdz_keyring_t        ring;
    const char           *db;
    const char           *password_file;
    const char           *topup_id;
    long                  batch;
    unsigned              batch_set:1;
    unsigned              dry_run:1;
    unsigned              force:1;
    unsigned              verbose:1;
} ocdz_card_conf_t;


typedef struct {
    unsigned long         converted;
    unsigned long         current;
    unsigned long         failed;
    unsigned long         changed;
    unsigned long         remaining;
} ocdz_card_stats_t;


static void usage(FILE *f);
static int usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static void fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int parse_args(int argc, char **argv, ocdz_card_conf_t *conf);
static int add_key(ocdz_keyring_t *ring, const char *spec,
    int *ncurrent);
static int read_code(unsigned char *code, size_t size, size_t *len);
static int seal_code(ocdz_cipher_t *c, const ocdz_card_conf_t *conf,
    char *rec, size_t rec_size);
static int read_password(const char *path, char *pw, size_t size);
static PGconn *db_connect(const char *conninfo, const char *password_file);
static PGresult *db_exec(PGconn *conn, const char *sql, int nparams,
    const char *const *params, ExecStatusType want);
static int db_count(PGconn *conn, const char *sql, const char *prefix,
    unsigned long *n);
static int cmd_encrypt(ocdz_cipher_t *c, ocdz_card_conf_t *conf);
static int cmd_store(ocdz_cipher_t *c, ocdz_card_conf_t *conf);
static int store_check(PGconn *conn, ocdz_card_conf_t *conf);
static int cmd_reencrypt(ocdz_cipher_t *c, ocdz_card_conf_t *conf);
static int reencrypt_batch(PGconn *conn, ocdz_cipher_t *c,
    ocdz_card_conf_t *conf, const char *prefix, char *last,
    ocdz_card_stats_t *st, int *done);
static const char *format_name(ocdz_format_e format);


static int cmd_template(int argc, char **argv);


static const char  *progname = "ocdz-card";


int
main(int argc, char **argv)
{
    int                rc;
    struct rlimit      rl;
    ocdz_cipher_t     *c;
    ocdz_card_conf_t   conf;

    /* a core dump would hold keys and perhaps a card code */
    rl.rlim_cur = 0;
    rl.rlim_max = 0;
    (void) setrlimit(RLIMIT_CORE, &rl);

    memset(&conf, 0, sizeof(conf));

    /* no key, no card: the built-in texts a sysadmin starts from */
    if (argc >= 2 && strcmp(argv[1], "template") == 0) {
        return cmd_template(argc, argv);
    }

    rc = parse_args(argc, argv, &conf);
    if (rc != OCDZ_CARD_OK || conf.cmd == OCDZ_CMD_NONE) {
        ocdz_keyring_wipe(&conf.ring);
        return rc;
    }

    c = ocdz_cipher_new();
    if (c == NULL) {
        fail("cannot set up AES-256-GCM (OpenSSL)");
        ocdz_keyring_wipe(&conf.ring);
        return OCDZ_CARD_FAILED;
    }

    switch (conf.cmd) {

    case OCDZ_CMD_ENCRYPT:
        rc = cmd_encrypt(c, &conf);
        break;

    case OCDZ_CMD_STORE:
        rc = cmd_store(c, &conf);
        break;

    default:
        rc = cmd_reencrypt(c, &conf);
        break;
    }

    ocdz_cipher_free(c);
    ocdz_keyring_wipe(&conf.ring);

    return rc;
}


static void
usage(FILE *f)
{
    fprintf(f,
"Usage:\n"
"  ocdz-card encrypt   -k ID:KEYFILE[:current]... --topup-id ID\n"
"  ocdz-card store     -k ID:KEYFILE[:current]... --topup-id ID\n"
"                      --db CONNINFO [--password-file FILE] [--force]\n"
"  ocdz-card reencrypt -k ID:KEYFILE[:current]... --db CONNINFO\n"
"                      [--password-file FILE] [--batch N] [--dry-run]\n"
"                      [--verbose]\n"
"  ocdz-card template  mail-subject|mail-text|mail-html|sms en|fr|ar\n"
"  ocdz-card --help\n"
"\n"
"  encrypt    read a card code (one line) from standard input and print\n"
"             its record, sealed with the current key and bound to the\n"
"             order's top-up id\n"
"  store      the same, written into ocdz.orders.card_enc of that order\n"
"             (refuses to replace a stored card without --force)\n"
"  reencrypt  rewrite every stored card that is not a v1 record under the\n"
"             current key (the guide's Node.js/PHP/Python records, records\n"
"             under older keys), N rows per transaction, so that an old\n"
"             key can be retired; unreadable rows are reported and left\n"
"  template   print a built-in message template, the text to start from\n"
"             for nginx's ocdz_mail_template or ocdz_sms_template file\n"
"\n"
"Options:\n"
"  -k, --key ID:KEYFILE[:current]\n"
"                     a key of the ring: ID is 1-32 of A-Z a-z 0-9 _ -,\n"
"                     KEYFILE holds 64 hex digits (32 bytes); repeat for\n"
"                     older keys; with several keys mark exactly one\n"
"                     :current (new records are sealed with it)\n"
"  -t, --topup-id ID  the order's top-up id: 24 lower-case hex digits\n"
"  -d, --db CONNINFO  libpq connection string or URI (no password in it:\n"
"                     other users see the command line)\n"
"  -p, --password-file FILE\n"
"                     the database password, read from FILE as nginx reads\n"
"                     ocdz_db_password_file (the whole file, white space\n"
"                     around it ignored); else libpq's own: ~/.pgpass\n"
"  -b, --batch N      rows per transaction (1-%d, default %d)\n"
"  -n, --dry-run      reencrypt: open and check every row, write nothing\n"
"  -f, --force        store: replace a card already stored\n"
"  -v, --verbose      reencrypt: a line per order converted\n"
"  -h, --help         this text\n"
"\n"
"The card code is never taken from the command line and never printed.\n"
"Exit status: 0 done, 1 failed (or rows left over), 2 usage error.\n",
            OCDZ_BATCH_MAX, OCDZ_BATCH_DEFAULT);
}


static int
usage_error(const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "%s: ", progname);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\nTry '%s --help'.\n", progname);

    return OCDZ_CARD_USAGE;
}


static void
fail(const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "%s: ", progname);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
}


static int
parse_args(int argc, char **argv, ocdz_card_conf_t *conf)
{
    int          opt, rc, nkeys, ncurrent, prev;
    char        *end;
    const char  *cmd, *bad;

    static const struct option  options[] = {
        { "key",      required_argument, NULL, 'k' },
        { "topup-id", required_argument, NULL, 't' },
        { "db",       required_argument, NULL, 'd' },
        { "password-file", required_argument, NULL, 'p' },
        { "batch",    required_argument, NULL, 'b' },
        { "dry-run",  no_argument,       NULL, 'n' },
        { "force",    no_argument,       NULL, 'f' },
        { "verbose",  no_argument,       NULL, 'v' },
        { "help",     no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    if (argc < 2) {
        return usage_error("no command: encrypt, store, reencrypt or "
                           "template");
    }

    cmd = argv[1];

    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0
        || strcmp(cmd, "help") == 0)
    {
        usage(stdout);
        return OCDZ_CARD_OK;
    }

    if (strcmp(cmd, "encrypt") == 0) {
        conf->cmd = OCDZ_CMD_ENCRYPT;

    } else if (strcmp(cmd, "store") == 0) {
        conf->cmd = OCDZ_CMD_STORE;

    } else if (strcmp(cmd, "reencrypt") == 0) {
        conf->cmd = OCDZ_CMD_REENCRYPT;

    } else {
        return usage_error("unknown command \"%s\": encrypt, store, "
                           "reencrypt or template", cmd);
    }

    conf->cmd_name = cmd;
    conf->batch = OCDZ_BATCH_DEFAULT;
    nkeys = 0;
    ncurrent = 0;

    opterr = 0;
    optind = 1;

    for ( ;; ) {
        prev = optind;
        opt = getopt_long(argc - 1, argv + 1, ":k:t:d:p:b:nfvh", options,
                          NULL);

        if (opt == -1) {
            break;
        }

        switch (opt) {

        case 'k':
            rc = add_key(&conf->ring, optarg, &ncurrent);
            if (rc != OCDZ_CARD_OK) {
                conf->cmd = OCDZ_CMD_NONE;
                return rc;
            }
            nkeys++;
            break;

        case 't':
            conf->topup_id = optarg;
            break;

        case 'd':
            conf->db = optarg;
            break;

        case 'p':
            conf->password_file = optarg;
            break;

        case 'b':
            errno = 0;
            conf->batch = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0'
                || conf->batch < 1 || conf->batch > OCDZ_BATCH_MAX)
            {
                conf->cmd = OCDZ_CMD_NONE;
                return usage_error("--batch wants a number from 1 to %d",
                                   OCDZ_BATCH_MAX);
            }
            conf->batch_set = 1;
            break;

        case 'n':
            conf->dry_run = 1;
            break;

        case 'f':
            conf->force = 1;
            break;

        case 'v':
            conf->verbose = 1;
            break;

        case 'h':
            usage(stdout);
            conf->cmd = OCDZ_CMD_NONE;
            return OCDZ_CARD_OK;

        default:
            conf->cmd = OCDZ_CMD_NONE;

            /* the element in error: the one just passed, or the short
             * option cluster still being read */
            bad = (optind > prev) ? argv[optind] : argv[optind + 1];

            if (bad != NULL && strncmp(bad, "--", 2) == 0) {
                return usage_error("%s option %.*s", opt == ':'
                                   ? "a value is missing after"
                                   : "unknown", (int) strcspn(bad, "="),
                                   bad);
            }

            return usage_error("%s option -%c", opt == ':'
                               ? "a value is missing after" : "unknown",
                               optopt);
        }
    }

    rc = OCDZ_CARD_OK;

    if (optind < argc - 1) {
        /* a card code pasted here would end up in shell history */
        rc = usage_error("unexpected argument; %s reads the card code from "
                         "standard input only", progname);

    } else if (nkeys == 0) {
        rc = usage_error("no key: give -k ID:KEYFILE");

    } else if (nkeys > 1 && ncurrent == 0) {
        rc = usage_error("%d keys and none marked current: give the one "
                         "to seal with as -k ID:KEYFILE:current", nkeys);

    } else if (ncurrent > 1) {
        rc = usage_error("%d keys marked current: mark exactly one",
                         ncurrent);

    } else if (conf->cmd != OCDZ_CMD_REENCRYPT && conf->topup_id == NULL) {
        rc = usage_error("%s needs --topup-id", cmd);

    } else if (conf->cmd == OCDZ_CMD_REENCRYPT && conf->topup_id != NULL) {
        rc = usage_error("reencrypt takes no --topup-id");

    } else if (conf->topup_id != NULL
               && !ocdz_topup_id_stored(conf->topup_id,
                                        strlen(conf->topup_id)))
    {
        /* not echoed: it might be a card code typed in the wrong place */
        rc = usage_error("invalid top-up id: 24 lower-case hex digits");

    } else if (conf->cmd != OCDZ_CMD_ENCRYPT && conf->db == NULL) {
        rc = usage_error("%s needs --db", cmd);

    } else if (conf->cmd == OCDZ_CMD_ENCRYPT && conf->db != NULL) {
        rc = usage_error("encrypt takes no --db: use store");

    } else if (conf->cmd == OCDZ_CMD_ENCRYPT && conf->password_file != NULL)
    {
        rc = usage_error("encrypt takes no --password-file");

    } else if (conf->cmd != OCDZ_CMD_REENCRYPT
               && (conf->batch_set || conf->dry_run || conf->verbose))
    {
        rc = usage_error("--batch, --dry-run and --verbose are for "
                         "reencrypt");

    } else if (conf->cmd != OCDZ_CMD_STORE && conf->force) {
        rc = usage_error("--force is for store");
    }

    if (rc != OCDZ_CARD_OK) {
        conf->cmd = OCDZ_CMD_NONE;
    }

    return rc;
}


/* ID:KEYFILE[:current] */
static int
add_key(ocdz_keyring_t *ring, const char *spec, int *ncurrent)
{
    int            fd, current, rc;
    char           path[PATH_MAX], err[256];
    size_t         id_len, path_len, n;
    ssize_t        r;
    const char    *colon;
    struct stat    sb;
    unsigned char  key[OCDZ_KEY_LEN];
    char           text[OCDZ_KEY_FILE_MAX + 1];

    colon = strchr(spec, ':');
    if (colon == NULL || colon == spec || colon[1] == '\0') {
        return usage_error("-k wants ID:KEYFILE or ID:KEYFILE:current");
    }

    id_len = (size_t) (colon - spec);
    if (!ocdz_key_id_valid(spec, id_len)) {
        return usage_error("invalid key id \"%.*s\": 1 to %d of A-Z a-z "
                           "0-9 _ -", (int) id_len, spec, OCDZ_KEY_ID_MAX);
    }

    path_len = strlen(colon + 1);
    current = 0;

    if (path_len > 8 && strcmp(colon + 1 + path_len - 8, ":current") == 0) {
        current = 1;
        path_len -= 8;
    }

    if (path_len >= sizeof(path)) {
        return usage_error("key file name too long");
    }

    memcpy(path, colon + 1, path_len);
    path[path_len] = '\0';

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        fail("cannot open key file %s: %s", path, strerror(errno));
        return OCDZ_CARD_FAILED;
    }

    if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
        fail("key file %s is not a regular file", path);
        close(fd);
        return OCDZ_CARD_FAILED;
    }

    if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        fprintf(stderr, "%s: warning: key file %s can be read by group or "
                "others (chmod 600)\n", progname, path);
    }

    n = 0;

    for ( ;; ) {
        r = read(fd, text + n, sizeof(text) - n);

        if (r == -1 && errno == EINTR) {
            continue;
        }

        if (r <= 0) {
            break;
        }

        n += (size_t) r;

        if (n == sizeof(text)) {
            break;
        }
    }

    close(fd);

    if (r == -1) {
        ocdz_wipe(text, sizeof(text));
        fail("cannot read key file %s: %s", path, strerror(errno));
        return OCDZ_CARD_FAILED;
    }

    if (n > OCDZ_KEY_FILE_MAX) {
        ocdz_wipe(text, sizeof(text));
        fail("key file %s: too long for a key (64 hex digits)", path);
        return OCDZ_CARD_FAILED;
    }

    rc = ocdz_key_decode(text, n, key, err, sizeof(err));
    ocdz_wipe(text, sizeof(text));

    if (rc != OCDZ_OK) {
        fail("key file %s: %s", path, err);
        return OCDZ_CARD_FAILED;
    }

    rc = ocdz_keyring_add(ring, spec, id_len, key, current, err,
                          sizeof(err));
    ocdz_wipe(key, sizeof(key));

    if (rc != OCDZ_OK) {
        return usage_error("key %.*s: %s", (int) id_len, spec, err);
    }

    *ncurrent += current;

    return OCDZ_CARD_OK;
}


/*
 * One line from standard input, with its newline (LF or CRLF) removed.
 * From a terminal the line is read without echo.
 */
static int
read_code(unsigned char *code, size_t size, size_t *len)
{
    int             tty, echo_off, rc;
    size_t          i, n;
    ssize_t         r;
    struct termios  saved, t;
    unsigned char   buf[OCDZ_INPUT_MAX + 1];

    *len = 0;
    tty = isatty(STDIN_FILENO);
    echo_off = 0;

    if (tty) {
        fprintf(stderr, "Card code (not shown): ");
        fflush(stderr);

        if (tcgetattr(STDIN_FILENO, &saved) == 0) {
            t = saved;
            t.c_lflag &= ~(tcflag_t) ECHO;
            echo_off = (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0);
        }
    }

    n = 0;

    for ( ;; ) {
        r = read(STDIN_FILENO, buf + n, sizeof(buf) - n);

        if (r == -1 && errno == EINTR) {
            continue;
        }

        if (r <= 0) {
            break;
        }

        n += (size_t) r;

        /* a terminal gives a line a read: stop at the first one */
        if (n == sizeof(buf) || (tty && memchr(buf, '\n', n) != NULL)) {
            break;
        }
    }

    if (echo_off) {
        (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    }

    if (tty) {
        fputc('\n', stderr);
    }

    rc = OCDZ_CARD_FAILED;

    if (r == -1) {
        fail("cannot read standard input: %s", strerror(errno));
        goto done;
    }

    if (n == sizeof(buf)) {
        fail("card code too long: at most %d bytes", OCDZ_PLAIN_MAX);
        goto done;
    }

    if (n > 0 && buf[n - 1] == '\n') {
        n--;

        if (n > 0 && buf[n - 1] == '\r') {
            n--;
        }
    }

    for (i = 0; i < n; i++) {
        if (buf[i] < 0x20 || buf[i] == 0x7f) {
            fail("the card code is one line without control characters");
            goto done;
        }
    }

    if (n == 0) {
        fail("empty card code");
        goto done;
    }

    if (n > OCDZ_PLAIN_MAX || n > size) {
        fail("card code too long: at most %d bytes", OCDZ_PLAIN_MAX);
        goto done;
    }

    memcpy(code, buf, n);
    *len = n;
    rc = OCDZ_CARD_OK;

done:

    ocdz_wipe(buf, sizeof(buf));

    return rc;
}


static int
seal_code(ocdz_cipher_t *c, const ocdz_card_conf_t *conf, char *rec,
    size_t rec_size)
{
    int            rc;
    size_t         len, n;
    unsigned char  code[OCDZ_PLAIN_MAX];

    if (read_code(code, sizeof(code), &len) != OCDZ_CARD_OK) {
        return OCDZ_CARD_FAILED;
    }

    rc = ocdz_seal(c, &conf->ring, conf->topup_id, strlen(conf->topup_id),
                   code, len, rec, rec_size, &n);
    ocdz_wipe(code, sizeof(code));

    if (rc != OCDZ_OK) {
        fail("cannot encrypt: %s", ocdz_rc_str(rc));
        return OCDZ_CARD_FAILED;
    }

    return OCDZ_CARD_OK;
}


static int
cmd_encrypt(ocdz_cipher_t *c, ocdz_card_conf_t *conf)
{
    char  rec[OCDZ_RECORD_MAX + 1];

    if (seal_code(c, conf, rec, sizeof(rec)) != OCDZ_CARD_OK) {
        return OCDZ_CARD_FAILED;
    }

    if (printf("%s\n", rec) < 0 || fflush(stdout) != 0) {
        fail("cannot write standard output: %s", strerror(errno));
        return OCDZ_CARD_FAILED;
    }

    return OCDZ_CARD_OK;
}


static int
cmd_store(ocdz_cipher_t *c, ocdz_card_conf_t *conf)
{
    int          rc;
    char         rec[OCDZ_RECORD_MAX + 1];
    PGconn      *conn;
    PGresult    *res;
    const char  *params[2];

    /* check the order first: no code typed in for nothing */
    conn = db_connect(conf->db, conf->password_file);
    if (conn == NULL) {
        return OCDZ_CARD_FAILED;
    }

    rc = OCDZ_CARD_FAILED;
    params[0] = conf->topup_id;

    if (store_check(conn, conf) != OCDZ_CARD_OK
        || seal_code(c, conf, rec, sizeof(rec)) != OCDZ_CARD_OK)
    {
        goto done;
    }

    params[1] = rec;

    res = db_exec(conn, conf->force
                  ? "UPDATE ocdz.orders SET card_enc = $2 WHERE topup_id = $1"
                  : "UPDATE ocdz.orders SET card_enc = $2 "
                    "WHERE topup_id = $1 AND card_enc IS NULL",
                  2, params, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto done;
    }

    if (strcmp(PQcmdTuples(res), "1") == 0) {
        PQclear(res);
        printf("stored the card of order %s (key %s)\n", conf->topup_id,
               conf->ring.keys[conf->ring.current].id);
        rc = OCDZ_CARD_OK;
        goto done;
    }

    PQclear(res);

    /* deleted or given a card since the check */
    (void) store_check(conn, conf);

done:

    PQfinish(conn);

    return rc;
}


/* the order exists and, unless --force, has no card yet */
static int
store_check(PGconn *conn, ocdz_card_conf_t *conf)
{
    int        rc;
    PGresult  *res;

    res = db_exec(conn, "SELECT card_enc IS NOT NULL FROM ocdz.orders "
                  "WHERE topup_id = $1", 1, &conf->topup_id,
                  PGRES_TUPLES_OK);
    if (res == NULL) {
        return OCDZ_CARD_FAILED;
    }

    rc = OCDZ_CARD_FAILED;

    if (PQntuples(res) == 0) {
        fail("no order with top-up id %s", conf->topup_id);

    } else if (!conf->force && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        fail("order %s already has a card: --force replaces it",
             conf->topup_id);

    } else {
        rc = OCDZ_CARD_OK;
    }

    PQclear(res);

    return rc;
}


static int
cmd_reencrypt(ocdz_cipher_t *c, ocdz_card_conf_t *conf)
{
    int                 rc, done;
    char                prefix[OCDZ_KEY_ID_MAX + 16];
    char                last[OCDZ_TOPUP_ID_MAX + 1];
    PGconn             *conn;
    ocdz_card_stats_t   st;

    memset(&st, 0, sizeof(st));
    last[0] = '\0';

    /* what a current record starts with */
    snprintf(prefix, sizeof(prefix), "%s.%s.", OCDZ_RECORD_PREFIX,
             conf->ring.keys[conf->ring.current].id);

    conn = db_connect(conf->db, conf->password_file);
    if (conn == NULL) {
        return OCDZ_CARD_FAILED;
    }

    rc = OCDZ_CARD_FAILED;

    if (db_count(conn, "SELECT count(*) FROM ocdz.orders "
                 "WHERE card_enc IS NOT NULL "
                 "AND left(card_enc, length($1)) = $1",
                 prefix, &st.current) != OCDZ_CARD_OK)
    {
        goto done;
    }

    do {
        if (reencrypt_batch(conn, c, conf, prefix, last, &st, &done)
            != OCDZ_CARD_OK)
        {
            goto summary;
        }
    } while (!done);

    if (db_count(conn, "SELECT count(*) FROM ocdz.orders "
                 "WHERE card_enc IS NOT NULL "
                 "AND left(card_enc, length($1)) <> $1",
                 prefix, &st.remaining) != OCDZ_CARD_OK)
    {
        goto summary;
    }

    rc = OCDZ_CARD_OK;

summary:

    printf("%s: %lu, already current: %lu, failed: %lu\n",
           conf->dry_run ? "would convert" : "converted",
           st.converted, st.current, st.failed);

    if (st.changed) {
        printf("changed by someone else meanwhile, left alone: %lu\n",
               st.changed);
    }

    if (rc == OCDZ_CARD_OK && !conf->dry_run
        && st.remaining > st.failed)
    {
        /* rows locked by the module (SKIP LOCKED) or written meanwhile */
        printf("still not current: %lu (in use while this ran: run it "
               "again)\n", st.remaining - st.failed);
        rc = OCDZ_CARD_FAILED;
    }

    if (st.failed) {
        rc = OCDZ_CARD_FAILED;
    }

done:

    PQfinish(conn);

    return rc;
}


/*
 * One transaction: claim up to --batch rows after the cursor that are
 * not current, convert each, move the cursor past all of them (so rows
 * that fail are not claimed again), commit.
 */
static int
reencrypt_batch(PGconn *conn, ocdz_cipher_t *c, ocdz_card_conf_t *conf,
    const char *prefix, char *last, ocdz_card_stats_t *st, int *done)
{
    int                rc, ok, i, nrows;
    char               batch[32];
    char               rec[OCDZ_RECORD_MAX + 1];
    size_t             plen, plen2, old_len, rec_len, n;
    PGresult          *res, *upd;
    const char        *tid, *old, *params[3];
    ocdz_card_stats_t  bst;
    ocdz_open_info_t   info;
    unsigned char      plain[OCDZ_PLAIN_MAX], check[OCDZ_PLAIN_MAX];

    *done = 0;
    memset(&bst, 0, sizeof(bst));
    snprintf(batch, sizeof(batch), "%ld", conf->batch);

    res = db_exec(conn, conf->dry_run ? "BEGIN READ ONLY" : "BEGIN", 0,
                  NULL, PGRES_COMMAND_OK);
    if (res == NULL) {
        return OCDZ_CARD_FAILED;
    }

    PQclear(res);

    params[0] = prefix;
    params[1] = last;
    params[2] = batch;

    res = db_exec(conn, conf->dry_run
                  ? "SELECT topup_id, card_enc FROM ocdz.orders "
                    "WHERE card_enc IS NOT NULL "
                    "AND left(card_enc, length($1)) <> $1 "
                    "AND topup_id > $2 "
                    "ORDER BY topup_id LIMIT $3"
                  : "SELECT topup_id, card_enc FROM ocdz.orders "
                    "WHERE card_enc IS NOT NULL "
                    "AND left(card_enc, length($1)) <> $1 "
                    "AND topup_id > $2 "
                    "ORDER BY topup_id LIMIT $3 "
                    "FOR UPDATE SKIP LOCKED",
                  3, params, PGRES_TUPLES_OK);
    if (res == NULL) {
        goto failed;
    }

    nrows = PQntuples(res);

    for (i = 0; i < nrows; i++) {
        tid = PQgetvalue(res, i, 0);
        old = PQgetvalue(res, i, 1);
        old_len = (size_t) PQgetlength(res, i, 1);

        /* the cursor moves past this row whatever happens to it */
        n = strlen(tid);
        if (n > OCDZ_TOPUP_ID_MAX) {
            fail("a top-up id longer than %d characters: schema changed?",
                 OCDZ_TOPUP_ID_MAX);
            PQclear(res);
            goto failed;
        }

        memcpy(last, tid, n + 1);

        rc = ocdz_open(c, &conf->ring, tid, n, old, old_len, plain,
                       sizeof(plain), &plen, &info);
        if (rc != OCDZ_OK) {
            fail("order %s: cannot open its card (%s record%s%s): %s",
                 tid, format_name(info.format),
                 info.key_id[0] ? ", key " : "", info.key_id,
                 ocdz_rc_str(rc));
            bst.failed++;
            continue;
        }

        rc = ocdz_seal(c, &conf->ring, tid, n, plain, plen, rec,
                       sizeof(rec), &rec_len);

        /* read it back before it replaces the only copy */
        ok = (rc == OCDZ_OK
              && ocdz_open(c, &conf->ring, tid, n, rec, rec_len, check,
                           sizeof(check), &plen2, NULL) == OCDZ_OK
              && plen2 == plen && memcmp(check, plain, plen) == 0);

        ocdz_wipe(plain, sizeof(plain));
        ocdz_wipe(check, sizeof(check));

        if (!ok) {
            fail("order %s: cannot re-encrypt its card: %s", tid,
                 ocdz_rc_str(rc == OCDZ_OK ? OCDZ_ERR_CRYPTO : rc));
            bst.failed++;
            continue;
        }

        if (conf->dry_run) {
            if (conf->verbose) {
                printf("order %s: would convert (%s record, key %s)\n",
                       tid, format_name(info.format), info.key_id);
            }

            bst.converted++;
            continue;
        }

        params[0] = tid;
        params[1] = old;
        params[2] = rec;

        upd = db_exec(conn, "UPDATE ocdz.orders SET card_enc = $3 "
                      "WHERE topup_id = $1 AND card_enc = $2",
                      3, params, PGRES_COMMAND_OK);
        if (upd == NULL) {
            PQclear(res);
            goto failed;
        }

        if (strcmp(PQcmdTuples(upd), "1") == 0) {
            if (conf->verbose) {
                printf("order %s: converted (%s record, key %s)\n",
                       tid, format_name(info.format), info.key_id);
            }

            bst.converted++;

        } else {
            bst.changed++;
        }

        PQclear(upd);
    }

    PQclear(res);

    res = db_exec(conn, conf->dry_run ? "ROLLBACK" : "COMMIT", 0, NULL,
                  PGRES_COMMAND_OK);
    if (res == NULL) {
        return OCDZ_CARD_FAILED;
    }

    PQclear(res);

    /* counted only once committed */
    st->converted += bst.converted;
    st->failed += bst.failed;
    st->changed += bst.changed;

    *done = (nrows == 0);

    return OCDZ_CARD_OK;

failed:

    ocdz_wipe(plain, sizeof(plain));
    res = PQexec(conn, "ROLLBACK");
    PQclear(res);

    return OCDZ_CARD_FAILED;
}


/*
 * The password file of ocdz_db_password_file, read the way nginx reads
 * it: a regular file of at most OCDZ_PASSWORD_MAX bytes, no NUL byte,
 * white space around the password ignored, a warning when group or
 * others may read it.
 */
static int
read_password(const char *path, char *pw, size_t size)
{
    int          fd, rc;
    char        *start, *end;
    size_t       n;
    ssize_t      r;
    struct stat  sb;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        fail("cannot open password file %s: %s", path, strerror(errno));
        return OCDZ_CARD_FAILED;
    }

    rc = OCDZ_CARD_FAILED;

    if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
        fail("password file %s is not a regular file", path);
        goto done;
    }

    if (sb.st_size > OCDZ_PASSWORD_MAX) {
        fail("password file %s is too large (%lld bytes, at most %d)",
             path, (long long) sb.st_size, OCDZ_PASSWORD_MAX);
        goto done;
    }

    if (sb.st_mode & (S_IRGRP | S_IROTH)) {
        fprintf(stderr, "%s: warning: password file %s can be read by "
                "group or others (chmod 600)\n", progname, path);
    }

    n = 0;

    for ( ;; ) {
        r = read(fd, pw + n, size - 1 - n);

        if (r == -1 && errno == EINTR) {
            continue;
        }

        if (r <= 0) {
            break;
        }

        n += (size_t) r;

        if (n == size - 1) {
            break;
        }
    }

    if (r == -1) {
        fail("cannot read password file %s: %s", path, strerror(errno));
        goto done;
    }

    if (n > OCDZ_PASSWORD_MAX) {
        fail("password file %s is too large (at most %d bytes)", path,
             OCDZ_PASSWORD_MAX);
        goto done;
    }

    if (memchr(pw, '\0', n) != NULL) {
        fail("password file %s contains a NUL byte", path);
        goto done;
    }

    start = pw;
    end = pw + n;

    while (start < end && (*start == ' ' || *start == '\t'
                           || *start == '\r' || *start == '\n'))
    {
        start++;
    }

    while (end > start && (end[-1] == ' ' || end[-1] == '\t'
                           || end[-1] == '\r' || end[-1] == '\n'))
    {
        end--;
    }

    if (start == end) {
        fail("password file %s is empty", path);
        goto done;
    }

    n = (size_t) (end - start);
    memmove(pw, start, n);
    pw[n] = '\0';

    rc = OCDZ_CARD_OK;

done:

    close(fd);

    if (rc != OCDZ_CARD_OK) {
        ocdz_wipe(pw, size);
    }

    return rc;
}


static PGconn *
db_connect(const char *conninfo, const char *password_file)
{
    int                       n;
    char                      pw[OCDZ_PASSWORD_MAX + 2];
    PGconn                   *conn;
    PQconninfoOption         *opts, *o;
    const char               *keys[4], *values[4];

    /* a password in argv is visible to every user of the machine */
    opts = PQconninfoParse(conninfo, NULL);
    if (opts != NULL) {
        for (o = opts; o->keyword != NULL; o++) {
            if (strcmp(o->keyword, "password") == 0 && o->val != NULL
                && o->val[0] != '\0')
            {
                fprintf(stderr, "%s: warning: a password in --db is "
                        "visible to other users: use --password-file\n",
                        progname);
            }
        }

        PQconninfoFree(opts);
    }

    n = 0;
    keys[n] = "dbname";
    values[n++] = conninfo;

    /* after dbname: it wins over what the connection string holds */
    if (password_file != NULL) {
        if (read_password(password_file, pw, sizeof(pw)) != OCDZ_CARD_OK) {
            return NULL;
        }

        keys[n] = "password";
        values[n++] = pw;
    }

    keys[n] = "fallback_application_name";
    values[n++] = progname;
    keys[n] = NULL;
    values[n] = NULL;

    conn = PQconnectdbParams(keys, values, 1);

    if (password_file != NULL) {
        ocdz_wipe(pw, sizeof(pw));
    }

    if (conn == NULL) {
        fail("cannot connect to the database: out of memory");
        return NULL;
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "%s: cannot connect to the database: %s%s",
                progname, PQerrorMessage(conn),
                PQconnectionNeedsPassword(conn)
                ? "(give the password with --password-file)\n" : "");
        PQfinish(conn);
        return NULL;
    }

    return conn;
}


static PGresult *
db_exec(PGconn *conn, const char *sql, int nparams,
    const char *const *params, ExecStatusType want)
{
    PGresult  *res;

    res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != want) {
        fprintf(stderr, "%s: database: %s", progname,
                res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        return NULL;
    }

    return res;
}


static int
db_count(PGconn *conn, const char *sql, const char *prefix,
    unsigned long *n)
{
    PGresult  *res;

    res = db_exec(conn, sql, 1, &prefix, PGRES_TUPLES_OK);
    if (res == NULL) {
        return OCDZ_CARD_FAILED;
    }

    *n = strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);

    return OCDZ_CARD_OK;
}


static const char *
format_name(ocdz_format_e format)
{
    switch (format) {

    case OCDZ_FORMAT_V1:
        return "v1";

    case OCDZ_FORMAT_GUIDE_HEX:
        return "guide Node.js/PHP";

    case OCDZ_FORMAT_GUIDE_B64:
        return "guide Python";

    default:
        return "unknown";
    }
}


/*
 * ocdz-card template KIND LANG: the built-in template on stdout, as
 * ocdz_tpl_builtin() gives it; a one-line kind (subject, SMS) gets a
 * final newline, which the template parser drops again.
 */

static int
cmd_template(int argc, char **argv)
{
    int              rc;
    size_t           i, lang;
    ocdz_buf_t       b;
    ocdz_tpl_kind_e  kind;

    static const struct {
        const char       *name;
        ocdz_tpl_kind_e   kind;
    } kinds[] = {
        { "mail-subject", OCDZ_TPL_MAIL_SUBJECT },
        { "mail-text", OCDZ_TPL_MAIL_TEXT },
        { "mail-html", OCDZ_TPL_MAIL_HTML },
        { "sms", OCDZ_TPL_SMS_TEXT }
    };

    static const char  *langs[OCDZ_LANG_N] = { "en", "fr", "ar" };

    if (argc != 4) {
        return usage_error("template wants a kind (mail-subject, mail-text, "
                           "mail-html or sms) and a language (en, fr or "
                           "ar)");
    }

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(argv[2], kinds[i].name) == 0) {
            break;
        }
    }

    if (i == sizeof(kinds) / sizeof(kinds[0])) {
        return usage_error("unknown template \"%s\": mail-subject, "
                           "mail-text, mail-html or sms", argv[2]);
    }

    kind = kinds[i].kind;

    for (lang = 0; lang < OCDZ_LANG_N; lang++) {
        if (strcmp(argv[3], langs[lang]) == 0) {
            break;
        }
    }

    if (lang == OCDZ_LANG_N) {
        return usage_error("unknown language \"%s\": en, fr or ar",
                           argv[3]);
    }

    ocdz_buf_init(&b, &ocdz_alloc_std, 0);

    rc = ocdz_tpl_builtin(kind, (ocdz_lang_e) lang, &b);

    if (rc != OCDZ_MSG_OK) {
        ocdz_buf_free(&b);
        fail("cannot build the %s template", argv[2]);
        return OCDZ_CARD_FAILED;
    }

    if ((kind == OCDZ_TPL_MAIL_SUBJECT || kind == OCDZ_TPL_SMS_TEXT)
        && (b.len == 0 || b.data[b.len - 1] != '\n'))
    {
        ocdz_buf_add(&b, "\n", 1);
    }

    if (b.error
        || fwrite(b.data, 1, b.len, stdout) != b.len
        || fflush(stdout) != 0)
    {
        ocdz_buf_free(&b);
        fail("cannot write the template");
        return OCDZ_CARD_FAILED;
    }

    ocdz_buf_free(&b);

    return OCDZ_CARD_OK;
}

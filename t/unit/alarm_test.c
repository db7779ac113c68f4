/*
 * Unit tests of ocdz_alarm: a failure logged once when it starts, its
 * repeats counted and summed up at most once a minute, its end once with
 * the duration and what was refused meanwhile.
 */

#include <string.h>

#include "ocdz_alarm.h"
#include "tap.h"


int
main(void)
{
    int           i, lines;
    char          buf[32], big[OCDZ_ALARM_DETAIL_MAX + 50];
    ocdz_alarm_t  a;

    memset(&a, 0, sizeof(a));

    is_int(ocdz_alarm_clear(&a, 10), OCDZ_ALARM_LOG_NONE,
           "clear before any raise: nothing to log");

    is_int(ocdz_alarm_raise(&a, 1000, "Connection refused"),
           OCDZ_ALARM_LOG_START, "first raise: start");
    ok(a.active, "active");
    is_str(a.detail, "Connection refused", "detail kept");
    is_int(a.count, 1, "count 1");

    /* one a second for a minute: no line */
    lines = 0;
    for (i = 1; i < 60; i++) {
        if (ocdz_alarm_raise(&a, 1000 + i * 1000, "again")
            != OCDZ_ALARM_LOG_NONE)
        {
            lines++;
        }
    }
    is_int(lines, 0, "59 repeats within a minute: no line");
    is_int(a.repeats, 59, "the repeats counted");

    ocdz_alarm_refused(&a, 3);
    ocdz_alarm_refused(&a, 4);

    is_int(ocdz_alarm_raise(&a, 61000, "later"), OCDZ_ALARM_LOG_REPEAT,
           "a minute after the start: one repeat line");
    is_int(a.reported, 60, "the repeat line reports 60 repeats");
    is_int(a.repeats, 0, "and counts again from 0");
    is_str(a.detail, "later", "the latest detail");

    /* one a second for ten minutes: ten lines of 60 */
    lines = 0;
    for (i = 1; i <= 600; i++) {
        if (ocdz_alarm_raise(&a, 61000 + i * 1000, "x")
            == OCDZ_ALARM_LOG_REPEAT)
        {
            lines++;
            is_int(a.reported, 60, "each reports 60");
        }
    }
    is_int(lines, 10, "ten minutes of repeats: ten lines");

    is_int(ocdz_alarm_raise(&a, 1000, "clock back"), OCDZ_ALARM_LOG_NONE,
           "a clock gone back logs nothing");

    is_int(ocdz_alarm_clear(&a, 10000 + 661000), OCDZ_ALARM_LOG_END,
           "clear: end");
    ok(!a.active, "inactive");
    is_int(a.duration, 670000, "duration since the start");
    is_int(a.refused, 7, "refused meanwhile");
    is_int(a.count, 662, "occurrences in all");
    is_int(ocdz_alarm_clear(&a, 700000), OCDZ_ALARM_LOG_NONE,
           "a second clear: nothing");

    ocdz_alarm_refused(&a, 5);
    is_int(a.refused, 7, "refusals while inactive are not counted");

    is_int(ocdz_alarm_raise(&a, 800000, NULL), OCDZ_ALARM_LOG_START,
           "a new outage starts again");
    is_int(a.refused, 0, "its counters start at zero");
    is_int(a.count, 1, "count 1 again");
    is_int(ocdz_alarm_clear(&a, 800000), OCDZ_ALARM_LOG_END,
           "end at the same ms");
    is_int(a.duration, 0, "duration 0");

    /* detail cut between UTF-8 characters */
    memset(big, 'a', sizeof(big));
    big[OCDZ_ALARM_DETAIL_MAX - 1] = (char) 0xd8;
    big[OCDZ_ALARM_DETAIL_MAX] = (char) 0xb9;
    big[sizeof(big) - 1] = '\0';
    ocdz_alarm_raise(&a, 0, big);
    is_int(strlen(a.detail), OCDZ_ALARM_DETAIL_MAX - 1,
           "long detail cut before a split character");

    is_int(ocdz_alarm_curl_kind(60), OCDZ_ALARM_API_TLS, "curl 60: TLS");
    is_int(ocdz_alarm_curl_kind(35), OCDZ_ALARM_API_TLS, "curl 35: TLS");
    is_int(ocdz_alarm_curl_kind(6), OCDZ_ALARM_API_DNS, "curl 6: DNS");
    is_int(ocdz_alarm_curl_kind(7), OCDZ_ALARM_API_REFUSED,
           "curl 7: refused");
    is_int(ocdz_alarm_curl_kind(28), OCDZ_ALARM_API_TIMEOUT,
           "curl 28: timeout");
    is_int(ocdz_alarm_curl_kind(56), OCDZ_ALARM_NONE,
           "curl 56 (receive error): one call's");
    is_int(ocdz_alarm_curl_kind(-1), OCDZ_ALARM_NONE, "nonsense: none");

    is_str(ocdz_alarm_kind_str(OCDZ_ALARM_DB_DOWN), "database unavailable",
           "kind name");
    is_str(ocdz_alarm_kind_str(OCDZ_ALARM_COUNT), "", "no such kind: \"\"");

    is_str(ocdz_alarm_duration_str(buf, sizeof(buf), 250), "250ms", "250ms");
    is_str(ocdz_alarm_duration_str(buf, sizeof(buf), 9400), "9s", "9s");
    is_str(ocdz_alarm_duration_str(buf, sizeof(buf), 125000), "2m5s",
           "2m5s");
    is_str(ocdz_alarm_duration_str(buf, sizeof(buf), 3720000), "1h2m",
           "1h2m");
    is_str(ocdz_alarm_duration_str(buf, 3, 125000), "2m", "cut to size");

    return done_testing();
}

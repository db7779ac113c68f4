/*
 * A minimal TAP producer for the unit tests of the pure C cores, read by
 * prove. Each test binary ends with done_testing(), whose exit status is
 * the number of failures.
 */

#ifndef _OCDZ_TAP_H_INCLUDED_
#define _OCDZ_TAP_H_INCLUDED_


#include <stdio.h>
#include <string.h>


static int  tap_run;
static int  tap_failed;


static int
tap_ok(int cond, const char *file, int line, const char *name)
{
    tap_run++;

    if (cond) {
        printf("ok %d - %s\n", tap_run, name);
        return 1;
    }

    tap_failed++;
    printf("not ok %d - %s\n#   at %s line %d\n", tap_run, name, file, line);
    return 0;
}


#define ok(cond, name)  tap_ok((cond) ? 1 : 0, __FILE__, __LINE__, name)

#define is_int(got, expected, name)                                          \
    do {                                                                     \
        long long  got_ = (long long) (got);                                 \
        long long  exp_ = (long long) (expected);                            \
        if (!ok(got_ == exp_, name)) {                                       \
            printf("#   got %lld, expected %lld\n", got_, exp_);             \
        }                                                                    \
    } while (0)

#define is_str(got, expected, name)                                          \
    do {                                                                     \
        const char  *got_ = (got);                                           \
        const char  *exp_ = (expected);                                      \
        if (!ok(got_ != NULL && strcmp(got_, exp_) == 0, name)) {            \
            printf("#   got '%s', expected '%s'\n",                          \
                   got_ ? got_ : "(null)", exp_);                            \
        }                                                                    \
    } while (0)


static int
done_testing(void)
{
    printf("1..%d\n", tap_run);
    return tap_failed > 255 ? 255 : tap_failed;
}


#endif /* _OCDZ_TAP_H_INCLUDED_ */

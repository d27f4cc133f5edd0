/* check.h - the harness of the C tests of the core (test_*.c here): no framework, TAP out.
 *
 * Every CHECK* is one test: it prints "ok N - name" or "not ok N - name" followed by a
 * "# file:line: ..." line that says what was expected and what came instead. check_done()
 * prints the plan "1..N" and returns the exit status (1 when a check failed). The plan comes
 * last, so a program that crashes leaves no plan and tools/tap_summary.lua counts the run as
 * failed. Names are printf formats:
 *
 *     CHECK(t != NULL, "zeros (2, 3) allocates");
 *     CHECK_NEAR(got, 4.0, 1e-6, "d/dx at x = %d", i);
 *     CHECK_CONTAINS(fs_error(), "(2, 3)", "the error names the shape");
 *     return check_done();
 */
#ifndef FS_CHECK_H
#define FS_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int check_count, check_failures;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static bool check_line(bool ok, const char *name, ...)
{
    check_count++;
    if (!ok)
        check_failures++;
    printf("%sok %d - ", ok ? "" : "not ", check_count);
    va_list ap;
    va_start(ap, name);
    vprintf(name, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout); /* a crash after this line keeps it */
    return ok;
}

/* The "#" line under a failed check. */
static void check_why(const char *file, int line, const char *fmt, ...)
{
    printf("# %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

#define CHECK(cond, ...)                                                                      \
    (check_line((cond), __VA_ARGS__)                                      \
         ? true : (check_why(__FILE__, __LINE__, "expected %s", #cond), false))

/* |a - b| <= tol (both as double; NaN never passes). */
#define CHECK_NEAR(a, b, tol, ...)                                                            \
    do {                                                                                      \
        double check_a_ = (a), check_b_ = (b);                                                \
        if (!check_line(fabs(check_a_ - check_b_) <= (tol), __VA_ARGS__)) \
            check_why(__FILE__, __LINE__, "%s = %.9g, expected %.9g (tolerance %g)", #a,      \
                      check_a_, check_b_, (double)(tol));                                     \
    } while (0)

#define CHECK_INT(a, b, ...)                                                                  \
    do {                                                                                      \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                       \
        if (!check_line(check_a_ == check_b_, __VA_ARGS__))               \
            check_why(__FILE__, __LINE__, "%s = %lld, expected %lld", #a, check_a_, check_b_); \
    } while (0)

/* The string s contains part (s NULL fails). */
#define CHECK_CONTAINS(s, part, ...)                                                          \
    do {                                                                                      \
        const char *check_s_ = (s), *check_p_ = (part);                                       \
        if (!check_line(check_s_ && strstr(check_s_, check_p_), __VA_ARGS__))                  \
            check_why(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"",                   \
                      check_s_ ? check_s_ : "(null)", check_p_);                              \
    } while (0)

/* n floats equal bit for bit (memcmp: +0 and -0 differ, equal NaNs pass). */
#define CHECK_SAME_FLOATS(a, b, n, ...)                                                       \
    do {                                                                                      \
        const float *check_a_ = (a), *check_b_ = (b);                                         \
        long long check_n_ = (long long)(n), check_i_ = 0;                                    \
        while (check_i_ < check_n_ &&                                                         \
               memcmp(check_a_ + check_i_, check_b_ + check_i_, sizeof(float)) == 0)         \
            check_i_++;                                                                       \
        if (!check_line(check_i_ == check_n_, __VA_ARGS__))               \
            check_why(__FILE__, __LINE__, "element %lld of %lld differs: %.9g vs %.9g",       \
                      check_i_, check_n_, check_a_[check_i_], check_b_[check_i_]);            \
    } while (0)

static int check_done(void)
{
    printf("1..%d\n", check_count);
    if (check_failures)
        printf("# %d of %d checks failed\n", check_failures, check_count);
    fflush(stdout);
    return check_failures ? 1 : 0;
}

#endif

/*
 * A minimal test harness: each test is a function registered in main() with
 * RUN(name); CHECK* record a failure with file, line and values and carry on.
 * The program prints one line per test and exits non-zero if any failed.
 * SHARED_DIR() returns the shared data folder ($SHARED, else ../shared) and
 * aborts the whole program when it is missing, so no test skips silently.
 */
#ifndef YOLOD_TESTLIB_H
#define YOLOD_TESTLIB_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int test_failures_ = 0;     /* failures in the running test */
static int tests_passed_ = 0;
static int tests_failed_ = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__,        \
                    __LINE__, #cond);                                        \
            test_failures_++;                                                \
        }                                                                    \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                   \
    do {                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_) {                                                      \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n",     \
                    __FILE__, __LINE__, #a, #b, a_, b_);                     \
            test_failures_++;                                                \
        }                                                                    \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                \
    do {                                                                     \
        double a_ = (double)(a), b_ = (double)(b);                           \
        if (!(fabs(a_ - b_) <= (tol))) {                                     \
            fprintf(stderr, "  %s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", \
                    __FILE__, __LINE__, #a, #b, (double)(tol), a_, b_);      \
            test_failures_++;                                                \
        }                                                                    \
    } while (0)

#define CHECK_OK(expr)                                                       \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        if (rc_ != 0) {                                                      \
            fprintf(stderr, "  %s:%d: %s returned %d\n", __FILE__, __LINE__, \
                    #expr, rc_);                                             \
            test_failures_++;                                                \
        }                                                                    \
    } while (0)

#define RUN(fn)                                                              \
    do {                                                                     \
        test_failures_ = 0;                                                  \
        fn();                                                                \
        if (test_failures_ == 0) {                                           \
            printf("ok   %s\n", #fn);                                        \
            tests_passed_++;                                                 \
        } else {                                                             \
            printf("FAIL %s\n", #fn);                                        \
            tests_failed_++;                                                 \
        }                                                                    \
        fflush(stdout);                                                      \
    } while (0)

/* Prints the totals line the test runner adds up; returns the exit status. */
#define TEST_SUMMARY()                                                       \
    (printf("%d passed, %d failed\n", tests_passed_, tests_failed_),         \
     tests_failed_ ? 1 : 0)

static inline const char *shared_dir(void)
{
    static char path[4096];
    const char *env = getenv("SHARED");
    struct stat st;

    snprintf(path, sizeof path, "%s", env && *env ? env : "../shared");
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "FATAL: shared data folder '%s' not found; set SHARED=DIR\n", path);
        exit(2);
    }
    return path;
}

/* Builds "<shared>/<rel>" in a rotating static buffer. */
static inline const char *shared_path(const char *rel)
{
    static char bufs[8][8192];
    static int next = 0;
    char *buf = bufs[next++ & 7];
    const char *dir = shared_dir();

    if (strlen(dir) + strlen(rel) + 2 > sizeof bufs[0]) {
        fprintf(stderr, "FATAL: path too long: %s/%s\n", dir, rel);
        exit(2);
    }
    sprintf(buf, "%s/%s", dir, rel);
    return buf;
}

/* Reads a whole file; aborts the program if it is missing. */
static inline void *read_file_or_die(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    long n;
    void *buf;

    if (!f) {
        fprintf(stderr, "FATAL: cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "FATAL: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

#endif /* YOLOD_TESTLIB_H */

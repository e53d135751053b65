/*
 * peak: measures this CPU's arithmetic ceiling, the yardstick for how close
 * a model's run comes to what the cores can do.
 *
 * fp32: vfmadd231ps on the widest vectors the CPU runs (AVX-512, else
 * AVX2). int8: vpdpbusd, u8 x s8 products summed into int32 (AVX-512 VNNI,
 * else AVX-VNNI, else absent). Every variant the CPU supports is timed; the
 * ceiling is the widest one.
 *
 * Counting: 2 operations per multiply-add, as `yolod bench` counts a model's
 * FLOPs (2 x multiply-accumulates of its convolutions). One fp32 FMA lane is
 * 2 FLOPs, so a 512-bit FMA is 32. One vpdpbusd 32-bit lane does 4
 * multiply-adds, 8 ops, so a 512-bit vpdpbusd is 128.
 *
 * Built for x86-64-v2. The vector loops carry their ISA in a target
 * attribute and run only when __builtin_cpu_supports reports the feature
 * (libgcc also checks that the OS saves the vector registers).
 *
 * Usage: peak [--json] [THREADS...]   (default: 1 and every online CPU)
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Independent accumulators per loop. Keeping the pipes full takes latency x
 * pipes chains in flight, about 4 cycles x 2 FMA pipes = 8 on recent x86
 * cores (an estimate: check the vendor's latency tables for a new CPU). 12
 * leaves a margin and still fits the 16 ymm registers of AVX2 with the two
 * operands.
 */
#define ACCUMULATORS 12

typedef double (*peak_loop)(long iterations);

/*
 * Defines a loop of ACCUMULATORS independent chains of `op`; folding them into
 * one stored value keeps the compiler from dropping any chain.
 */
#define DEFINE_LOOP(name, isa, vec, set1, op, fold, ops_per_instruction)          \
    __attribute__((target(isa))) static double name(long iterations)             \
    {                                                                              \
        vec acc[ACCUMULATORS], a = set1(1), b = set1(1);                           \
        float first;                                                               \
                                                                                   \
        for (int k = 0; k < ACCUMULATORS; k++)                                     \
            acc[k] = set1(k);                                                      \
        for (long i = 0; i < iterations; i++) {                                    \
            _Pragma("GCC unroll 12") for (int k = 0; k < ACCUMULATORS; k++)        \
                acc[k] = op(acc[k], a, b);                                         \
            __asm__ volatile("" : "+v"(a)); /* no hoisting across iterations */    \
        }                                                                          \
        for (int k = 1; k < ACCUMULATORS; k++)                                     \
            acc[0] = fold(acc[0], acc[k]);                                         \
        memcpy(&first, &acc[0], sizeof first);                                     \
        sink = first;                                                              \
        return (double)iterations * ACCUMULATORS * (ops_per_instruction);          \
    }

static volatile double sink;

/* acc + a * b with a = b = 0.001: no overflow to inf and no denormals. */
#define FMA512(acc, a, b) _mm512_fmadd_ps(a, b, acc)
#define FMA256(acc, a, b) _mm256_fmadd_ps(a, b, acc)
#define SET512_PS(v) _mm512_set1_ps(1e-3f * (float)(v))
#define SET256_PS(v) _mm256_set1_ps(1e-3f * (float)(v))
/* Integer accumulators wrap around; the timing does not depend on values. */
#define DPB512(acc, a, b) _mm512_dpbusd_epi32(acc, a, b)
#define DPB256(acc, a, b) _mm256_dpbusd_avx_epi32(acc, a, b)
#define SET512_EPI(v) _mm512_set1_epi32(0x01010101 * (int)((v) % 2 + 1))
#define SET256_EPI(v) _mm256_set1_epi32(0x01010101 * (int)((v) % 2 + 1))

DEFINE_LOOP(fma_avx512, "avx512f", __m512, SET512_PS, FMA512, _mm512_add_ps, 16 * 2)
DEFINE_LOOP(fma_avx2, "avx2,fma", __m256, SET256_PS, FMA256, _mm256_add_ps, 8 * 2)
DEFINE_LOOP(vnni_avx512, "avx512f,avx512vnni", __m512i, SET512_EPI, DPB512, _mm512_add_epi32,
            16 * 4 * 2)
DEFINE_LOOP(vnni_avx, "avx2,avxvnni", __m256i, SET256_EPI, DPB256, _mm256_add_epi32, 8 * 4 * 2)

struct variant {
    const char *kind; /* "fp32" or "int8" */
    const char *isa;
    peak_loop loop;
    int supported;
};

static double clock_seconds(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Operations per second of `threads` threads each running the loop at once:
 * by the wall clock, and by each thread's own CPU time. The CPU-time rate is
 * the ceiling of the cores themselves, unaffected by other processes taking
 * turns on them; the wall-clock rate falls when they do.
 */
static void time_parallel(peak_loop loop, int threads, long iterations, double *wall_rate,
                          double *cpu_rate)
{
    double ops = 0, rate = 0, start = clock_seconds(CLOCK_MONOTONIC);

#pragma omp parallel num_threads(threads) reduction(+ : ops, rate)
    {
        double cpu_start = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
        double done = loop(iterations);

        ops += done;
        rate += done / (clock_seconds(CLOCK_THREAD_CPUTIME_ID) - cpu_start);
    }
    *wall_rate = ops / (clock_seconds(CLOCK_MONOTONIC) - start);
    *cpu_rate = rate;
}

/*
 * Best of 5 trials of about 0.1 s each. The best, not the median, because
 * other processes on the machine only ever slow a trial down.
 */
static void measure(peak_loop loop, int threads, double *wall_best, double *cpu_best)
{
    long iterations = 1 << 16;

    while (iterations < (1L << 40)) {
        double start = clock_seconds(CLOCK_MONOTONIC);

        time_parallel(loop, threads, iterations, wall_best, cpu_best);
        if (clock_seconds(CLOCK_MONOTONIC) - start > 0.05)
            break;
        iterations *= 2;
    }
    *wall_best = *cpu_best = 0;
    for (int trial = 0; trial < 5; trial++) {
        double wall, cpu;

        time_parallel(loop, threads, iterations, &wall, &cpu);
        if (wall > *wall_best)
            *wall_best = wall;
        if (cpu > *cpu_best)
            *cpu_best = cpu;
    }
}

static int parse_threads(int argc, char **argv, int *threads, int *count, int *json)
{
    *count = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        long v;

        if (strcmp(argv[i], "--json") == 0) {
            *json = 1;
            continue;
        }
        v = strtol(argv[i], &end, 10);
        if (*argv[i] == '\0' || *end != '\0' || v < 1 || v > 1024 || *count == 16) {
            fprintf(stderr, "peak: invalid argument '%s' (expected --json or up to 16 thread "
                            "counts from 1 to 1024)\n", argv[i]);
            return -1;
        }
        threads[(*count)++] = (int)v;
    }
    if (*count == 0) {
        threads[(*count)++] = 1;
        if (omp_get_num_procs() > 1)
            threads[(*count)++] = omp_get_num_procs();
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct variant variants[] = {
        {"fp32", "avx512", fma_avx512, __builtin_cpu_supports("avx512f")},
        {"fp32", "avx2", fma_avx2, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")},
        {"int8", "avx512vnni", vnni_avx512,
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni")},
        {"int8", "avxvnni", vnni_avx, __builtin_cpu_supports("avxvnni")},
    };
    int nvariants = (int)(sizeof variants / sizeof variants[0]);
    int threads[16], nthreads, json = 0;
    const char *ceiling_isa[2] = {NULL, NULL}; /* fp32, int8: first supported = widest */

    if (parse_threads(argc, argv, threads, &nthreads, &json) != 0)
        return 2;
    for (int v = 0; v < nvariants; v++) {
        int kind = strcmp(variants[v].kind, "int8") == 0;

        if (variants[v].supported && !ceiling_isa[kind])
            ceiling_isa[kind] = variants[v].isa;
    }

    if (json)
        printf("{\"counting\":\"2 ops per multiply-add\",\"fp32_isa\":%s%s%s,\"int8_isa\":%s%s%s,"
               "\"results\":[",
               ceiling_isa[0] ? "\"" : "", ceiling_isa[0] ? ceiling_isa[0] : "null",
               ceiling_isa[0] ? "\"" : "", ceiling_isa[1] ? "\"" : "",
               ceiling_isa[1] ? ceiling_isa[1] : "null", ceiling_isa[1] ? "\"" : "");
    else
        printf("%-5s %-11s %7s %14s %14s\n", "kind", "isa", "threads", "G ops/s (CPU)",
               "G ops/s (wall)");

    int first = 1;

    for (int v = 0; v < nvariants; v++) {
        struct variant *var = &variants[v];
        int kind = strcmp(var->kind, "int8") == 0;
        int ceiling = ceiling_isa[kind] && strcmp(ceiling_isa[kind], var->isa) == 0;

        if (!var->supported) {
            if (!json)
                printf("%-5s %-11s %7s %14s\n", var->kind, var->isa, "-", "absent");
            continue;
        }
        for (int t = 0; t < nthreads; t++) {
            double wall, cpu;

            measure(var->loop, threads[t], &wall, &cpu);
            if (json)
                printf("%s{\"kind\":\"%s\",\"isa\":\"%s\",\"threads\":%d,\"gops\":%.1f,"
                       "\"wall_gops\":%.1f,\"ceiling\":%s}",
                       first ? "" : ",", var->kind, var->isa, threads[t], cpu / 1e9, wall / 1e9,
                       ceiling ? "true" : "false");
            else
                printf("%-5s %-11s %7d %14.1f %14.1f  %s\n", var->kind, var->isa, threads[t],
                       cpu / 1e9, wall / 1e9, ceiling ? "ceiling" : "");
            fflush(stdout);
            first = 0;
        }
    }
    if (json)
        printf("]}\n");
    else
        printf("G ops/s (CPU) sums each thread's operations over its own CPU time: the\n"
               "ceiling. A lower wall-clock figure means other processes shared the cores.\n");
    return 0;
}

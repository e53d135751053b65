/*
 * Run-time choice of the kernel table from CPU features.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static const yd_kernel_table table_avx512 = {"avx512", 16, yd_f32_conv_nchwc16__avx512};
static const yd_kernel_table table_avx2 = {"avx2", 8, yd_f32_conv_nchwc8__avx2};
static const yd_kernel_table table_scalar = {"scalar", 8, yd_f32_conv_nchwc8__scalar};

static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const yd_kernel_table *yd_kernels_get(const char *name)
{
    if (strcmp(name, "avx512") == 0)
        return cpu_has_avx512() ? &table_avx512 : NULL;
    if (strcmp(name, "avx2") == 0)
        return cpu_has_avx2() ? &table_avx2 : NULL;
    if (strcmp(name, "scalar") == 0)
        return &table_scalar;
    return NULL;
}

const yd_kernel_table *yd_kernels_select(void)
{
    const char *forced = getenv("YOLOD_ISA");
    const yd_kernel_table *table;

    if (forced && *forced) {
        table = yd_kernels_get(forced);
        if (table)
            return table;
    }
    if (cpu_has_avx512())
        return &table_avx512;
    if (cpu_has_avx2())
        return &table_avx2;
    return &table_scalar;
}

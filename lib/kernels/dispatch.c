/*
 * Run-time choice of the kernel table from CPU features.
 */
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

static const yd_kernel_table table_avx512 = {
    "avx512", 16, yd_f32_conv_nchwc16__avx512, yd_s8_conv_nchwc16__avx512vnni, yd_u8_quantize__avx512,
    yd_f32_dot__avx512, yd_f64_dot__avx512, yd_f32_winograd_nchwc16__avx512,
    yd_s8_winograd_nchwc16__avx512vnni, yd_f32_unpack_planar_nchwc16__avx512, 0,
};
/* AVX-512 without VNNI (Skylake-SP): fp32 kernels only, int8 by reference. */
static const yd_kernel_table table_avx512_no_vnni = {
    "avx512", 16, yd_f32_conv_nchwc16__avx512, yd_s8_conv__scalar, yd_u8_quantize__avx512,
    yd_f32_dot__avx512, yd_f64_dot__avx512, yd_f32_winograd_nchwc16__avx512, NULL,
    yd_f32_unpack_planar_nchwc16__avx512, 1,
};
/* AVX2 with 256-bit VNNI (Alder Lake and later client cores): the AVX2
 * fp32 kernels, and int8 with vpdpbusd on ymm. */
static const yd_kernel_table table_avxvnni = {
    "avxvnni", 8, yd_f32_conv_nchwc8__avx2, yd_s8_conv_nchwc8__avxvnni, yd_u8_quantize__avx2,
    yd_f32_dot__avx2, yd_f64_dot__avx2, yd_f32_winograd_nchwc8__avx2, NULL, NULL, 0,
};
/* Without VNNI, int16 multiply-adds do no more per instruction than fp32
 * FMAs, and fp32 has Winograd. int8 yolov8n ran 1.4 to 1.7 times slower. */
static const yd_kernel_table table_avx2 = {
    "avx2", 8, yd_f32_conv_nchwc8__avx2, yd_s8_conv_nchwc8__avx2, yd_u8_quantize__avx2,
    yd_f32_dot__avx2, yd_f64_dot__avx2, yd_f32_winograd_nchwc8__avx2, NULL, NULL, 1,
};
/* The reference: direct convolution everywhere, no Winograd. */
static const yd_kernel_table table_scalar = {
    "scalar", 8, yd_f32_conv_nchwc8__scalar, yd_s8_conv__scalar, yd_u8_quantize__scalar,
    yd_f32_dot__scalar, yd_f64_dot__scalar, NULL, NULL, NULL, 0,
};

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

/* Tests CPUID leaf 7, subleaf 1, EAX bit 4 (AVX-VNNI), which gcc 12's
 * __builtin_cpu_supports does not know. */
static int cpu_has_avxvnni(void)
{
    unsigned int eax, ebx, ecx, edx;

    if (!cpu_has_avx2() || !__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx))
        return 0;
    return (eax >> 4) & 1;
}

const yd_kernel_table *yd_kernels_get(const char *name)
{
    if (strcmp(name, "avx512") == 0) {
        if (!cpu_has_avx512())
            return NULL;
        return __builtin_cpu_supports("avx512vnni") ? &table_avx512 : &table_avx512_no_vnni;
    }
    if (strcmp(name, "avxvnni") == 0)
        return cpu_has_avxvnni() ? &table_avxvnni : NULL;
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
        yd_log(YD_LOG_WARN, "ignoring YOLOD_ISA=%s: expected scalar, avx2, avxvnni or avx512, and one "
               "this CPU runs", forced);
    }
    if (cpu_has_avx512())
        return yd_kernels_get("avx512");
    if (cpu_has_avxvnni())
        return &table_avxvnni;
    if (cpu_has_avx2())
        return &table_avx2;
    return &table_scalar;
}

/*
 * The .yolod model file: one little-endian, mmap-able file holding an
 * imported graph, its convolution weights in their stored precision
 * (fp32, fp16 or int8 with scales), the class names and the provenance of
 * the variant. docs/model-file.md describes the format byte by byte.
 *
 * Every byte is covered by a CRC-32C (Castagnoli): one over the header, one
 * over everything after it. A CRC-32 detects every error confined to 32
 * consecutive bits, so any single changed byte is caught.
 */
#ifndef YOLOD_MODEL_FILE_H
#define YOLOD_MODEL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "yolod.h"

/* The format version this build writes; it reads every 1.x file. */
#define YD_MODEL_FILE_VERSION_MAJOR 1
#define YD_MODEL_FILE_VERSION_MINOR 0

/* 0x89 'Y' 'O' 'L' 'O' 'D' '\r' '\n': see docs/model-file.md for why. */
#define YD_MODEL_FILE_MAGIC "\x89YOLOD\r\n"
#define YD_MODEL_FILE_MAGIC_SIZE 8

/* Where a variant comes from and how it was made; strings are UTF-8. */
typedef struct yd_model_provenance {
    char source_name[256];      /* file name of the ONNX export, no folders */
    char source_sha256[65];     /* hex SHA-256 of that file, or "" */
    char variant[64];           /* "fp32", "fp16", "int8", ... */
    char settings[512];         /* compression settings, "key=value" words */
    char calibration_sha256[65]; /* hex digest of the calibration set, or "" */
    double map50_95;            /* COCO mAP50-95 measured by eval; NaN if unknown */
    double map50;               /* COCO mAP50; NaN if unknown */
    int64_t created;            /* Unix time, seconds */
    char yolod_version[32];     /* version of the yolod that wrote the file */
    int format_major;           /* format version of the file read; the writer ignores both */
    int format_minor;
} yd_model_provenance;

/* Empties every string and sets both mAP fields to NaN. */
void yd_model_provenance_init(yd_model_provenance *provenance);

/* Returns 1 when data starts with the .yolod magic, else 0. */
int yd_model_file_sniff(const void *data, size_t size);

/*
 * Returns 1 when the file at path starts with the .yolod magic, 0 when it
 * does not (including files shorter than the magic), or YD_ERR_IO when it
 * cannot be opened or read or is not a regular file. Every model load
 * passes here first, so a FIFO is rejected without waiting for a writer.
 */
int yd_model_file_sniff_path(const char *path, yd_error *err);

/*
 * Writes graph, class_names (graph->nc strings) and provenance to path.
 * Dead nodes and the values only they use are left out, so the loaded graph
 * contains the live nodes in the same order. Each convolution is stored in its
 * conv.precision: FP32 and FP16 from conv.weight (FP16 rounded to nearest
 * even), INT8 from conv.qweight, conv.weight_scale, input_scale and
 * input_zero, which must be set. The file is written to a temporary file in
 * the same folder, synced and renamed over path, so a reader sees the old
 * file or the new one, never a partial one.
 * Errors: YD_ERR_INVALID_ARGUMENT (a graph the format cannot hold),
 * YD_ERR_IO, YD_ERR_NO_MEMORY.
 */
int yd_model_file_save(const char *path, const yd_graph *graph, char *const *class_names,
                       const yd_model_provenance *provenance, yd_error *err);

/*
 * Validates a whole .yolod image in memory and builds its graph: the nodes,
 * values and head as saved, weights converted to fp32 in conv.weight (INT8
 * convolutions also get conv.qweight, conv.weight_scale and the input
 * quantization), no plan and no packed weights. Any output pointer may be
 * NULL to skip it. With graph NULL the weights are neither read nor
 * checked, so reading only the provenance is quick. On success the caller owns *graph
 * (yd_graph_free) and *class_names (graph->nc strings, yd_names_free).
 * Errors: YD_ERR_MODEL_FORMAT for a foreign, truncated, corrupted or
 * inconsistent file, YD_ERR_MODEL_UNSUPPORTED for a newer major version or
 * unknown required flags, YD_ERR_NO_MEMORY. Messages do not name the file.
 */
int yd_model_file_parse(const void *data, size_t size, yd_graph **graph, char ***class_names,
                        yd_model_provenance *provenance, yd_error *err);

/*
 * Maps the file at path read-only and runs yd_model_file_parse() on it.
 * Only YD_ERR_IO messages name the file.
 */
int yd_model_file_load(const char *path, yd_graph **graph, char ***class_names,
                       yd_model_provenance *provenance, yd_error *err);

/* Incremental SHA-256 (FIPS 180-4). */
typedef struct yd_sha256 {
    uint32_t state[8];
    uint64_t length;    /* bytes hashed so far */
    uint8_t block[64];
    size_t used;        /* bytes waiting in block */
} yd_sha256;

void yd_sha256_init(yd_sha256 *sha);
void yd_sha256_update(yd_sha256 *sha, const void *data, size_t size);
void yd_sha256_final(yd_sha256 *sha, uint8_t digest[32]);

/* Writes the 64 lowercase hex digits of a digest and a NUL into hex. */
void yd_sha256_hex(const uint8_t digest[32], char hex[65]);

/* Hashes a whole file; hex receives 64 hex digits and a NUL. Errors: YD_ERR_IO. */
int yd_sha256_file(const char *path, char hex[65], yd_error *err);

/* CRC-32C (Castagnoli, reflected, init and final xor 0xFFFFFFFF) of data. */
uint32_t yd_crc32c(const void *data, size_t size);

/* IEEE 754 binary16 conversions; float to half rounds to nearest even. */
uint16_t yd_fp16_from_float(float value);
float yd_fp16_to_float(uint16_t half);

#endif /* YOLOD_MODEL_FILE_H */
